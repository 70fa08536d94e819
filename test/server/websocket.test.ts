// Every block a client sends is masked by it and unmasked by the server. ws
// does that in a JavaScript loop (~50 µs per 16 KB block here) unless the
// native bufferutil loads (~1.5 µs): a dependency the servers and the Node
// clients rely on for their block rate, so a broken install must not pass.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';

const require = createRequire(import.meta.url);

test('ws masks and unmasks blocks with the native bufferutil', () => {
  const native = require('bufferutil') as { mask: unknown; unmask: unknown };
  assert.equal(typeof native.mask, 'function');
  // ws's own module (not exported): the one its sender and receiver call
  const wsDir = path.dirname(require.resolve('ws'));
  const util = require(path.join(wsDir, 'lib', 'buffer-util.js')) as { mask: (...a: unknown[]) => void; unmask: (...a: unknown[]) => void };
  assert.match(util.mask.toString(), /bufferUtil\.mask/);
  assert.match(util.unmask.toString(), /bufferUtil\.unmask/);
  // and it masks right: XOR with the 4-byte key, applied twice is the identity
  const data = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const key = Buffer.from([1, 2, 3, 4]);
  const out = Buffer.alloc(100);
  util.mask(data, key, out, 0, 100);
  assert.equal(out[5], 5 ^ 2);
  util.unmask(out, key);
  assert.deepEqual(out, data);
});
