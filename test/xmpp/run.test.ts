// `hush xmpp init` and `hush xmpp start` as an operator runs them: the config
// written, the app server a component of Prosody, /metrics and /healthz on
// its ops port, and /healthz failing once the XMPP server is gone.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { tmpDir } from '../helpers.ts';
import { until } from '../ntf/helpers.ts';
import { freePort, HushProcess } from '../process.ts';
import { prosodyMissing, startProsody } from './prosody.ts';

const skip = prosodyMissing && process.env.CI !== 'true' ? prosodyMissing : false;

test('hush xmpp init, start: a component of Prosody, healthy while connected', { skip, timeout: 60_000 }, async (t) => {
  const prosody = await startProsody();
  let prosodyUp = true;
  t.after(() => (prosodyUp ? prosody.stop() : undefined));
  const apns = await ApnsTestServer.start({ topics: ['chat.hush.xmpp'] });
  t.after(() => apns.close());
  const team = apns.keys.create();
  const dir = tmpDir('hush-xmpp-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const init = await new HushProcess(['xmpp', 'init', '--dir', dir]).result();
  assert.equal(init.code, 0, init.stderr);
  const file = path.join(dir, 'xmpp.json');
  fs.writeFileSync(path.join(dir, 'apns.p8'), team.privateKey);
  fs.writeFileSync(path.join(dir, 'apns-ca.pem'), apns.ca);
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const apnsConfig = { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile: path.join(dir, 'apns.p8'), topic: 'chat.hush.xmpp', caFile: path.join(dir, 'apns-ca.pem') };
  fs.writeFileSync(file, JSON.stringify({ ...config, servers: [prosody.component], apns: apnsConfig }));
  assert.notEqual((await new HushProcess(['xmpp', 'init', '--dir', dir]).result()).code, 0, 'init does not overwrite a config');

  const ops = await freePort();
  const proc = new HushProcess(['xmpp', 'start', '--dir', dir], { HUSH_XMPP_METRICS_PORT: String(ops), HUSH_LOG_LEVEL: 'warn' });
  t.after(() => proc.dispose());
  await proc.waitFor(/XMPP app server address: a component of push\.localhost/);
  const health = async () => {
    const r = await fetch(`http://127.0.0.1:${ops}/healthz`).catch(() => undefined);
    return r ? { status: r.status, body: (await r.json()) as { reason?: string } } : undefined;
  };
  await until('healthy: connected to Prosody', async () => (await health())?.status === 200, 15_000);
  const metrics = await (await fetch(`http://127.0.0.1:${ops}/metrics`)).text();
  assert.match(metrics, /^hush_xmpp_servers_online 1$/m);
  assert.match(metrics, /^hush_xmpp_registrations 0$/m);

  await prosody.stop();
  prosodyUp = false;
  const down = await until('unhealthy once Prosody is gone', async () => {
    const h = await health();
    return h?.status === 503 ? h : undefined;
  }, 15_000);
  assert.match(down.body.reason ?? '', /not connected to push\.localhost/);
});
