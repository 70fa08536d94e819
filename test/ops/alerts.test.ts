// The Prometheus alerting rules (deploy/prometheus/hush-alerts.yml) are valid
// and pass their unit tests (hush-alerts.test.yml), run by promtool (Debian's
// `prometheus` package; .ci/run installs it). Without promtool this fails
// under CI=true and is skipped, saying why, otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../process.ts';

const DIR = path.join(ROOT, 'deploy', 'prometheus');
const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: DIR, encoding: 'utf8', timeout: 60_000 });

const missing = promtool('--version').error ? 'promtool not found (apt-get install prometheus)' : undefined;
const skip = missing && process.env.CI !== 'true' ? `${missing}; under CI=true this fails` : false;

describe('Prometheus alerting rules', { skip }, () => {
  it('promtool is installed', () => assert.equal(missing, undefined));

  it('hush-alerts.yml is valid (promtool check rules)', () => {
    const r = promtool('check', 'rules', 'hush-alerts.yml');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS: \d+ rules found/);
  });

  it('every alert fires, and stays silent, as hush-alerts.test.yml says (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'hush-alerts.test.yml');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS/);
  });
});
