// Client-side code must bundle for browsers and React Native: nothing Node-only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from 'esbuild';

const CLIENT_ENTRIES = ['src/relay/client.ts', 'src/relay/protocol.ts', 'src/core/crypto/noble.ts', 'src/sdk/index.ts'];

test('client code bundles for the browser without Node built-ins', async () => {
  const result = await build({
    entryPoints: CLIENT_ENTRIES,
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    outdir: 'out',
    metafile: true,
    logLevel: 'silent',
  });
  assert.equal(result.errors.length, 0);
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(inputs.some((i) => i.includes('@noble')), 'bundle includes the noble crypto');
  for (const input of inputs) {
    assert.ok(!/node_modules\/(ws|pino|prom-client)\//.test(input), `server-only package in client bundle: ${input}`);
    assert.ok(!input.startsWith('node:'), `Node built-in in client bundle: ${input}`);
  }
});

test('a Node-only import in client code fails the bundle', async () => {
  await assert.rejects(
    build({ stdin: { contents: "import 'node:fs'" }, bundle: true, write: false, platform: 'browser', logLevel: 'silent' }),
  );
});
