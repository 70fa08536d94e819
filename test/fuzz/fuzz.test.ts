// The fuzzer (`npm run fuzz`): a short run against real relay, notification
// server and push gateway processes must end with no crash, no hang and no bad
// reply; and its checks must see what they are there to see — a batch
// answered, bad blocks closed, a connection gone silent (a hang).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parseAddress } from '../../src/core/address.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { encodeCommand, RELAY_BLOCK_SIZE, RELAY_PROTOCOL, RELAY_VERSIONS } from '../../src/relay/protocol.ts';
import { Prng } from '../../fuzz/prng.ts';
import { blockInput } from '../../fuzz/frames.ts';
import { FuzzSession, type Target } from '../../fuzz/session.ts';
import { proxied, startRelay, tmpDir } from '../helpers.ts';
import { ROOT } from '../process.ts';

test('a short fuzz run: 5,000 inputs to the three server processes, no crash, no hang, no bad reply', { timeout: 180_000 }, async (t) => {
  const dir = tmpDir('hush-fuzz-test-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'fuzz.json');
  const args = ['--import', 'tsx', 'fuzz/run.ts', '--inputs', '5000', '--seconds', '120', '--seed', '42', '--out', out];
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, timeout: 170_000 }).catch((e) => {
    throw new Error(`fuzz run failed (${e.code}):\n${e.stdout}\n${e.stderr}`);
  });
  assert.match(stdout, /seed 42 \(reproduce with --seed 42\)/);
  const result = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.deepEqual([result.seed, result.inputs, result.crashes, result.hangs, result.badReplies], [42, 5000, 0, 0, 0]);
  for (const name of ['relay', 'ntf', 'gateway']) {
    const s = result.servers[name];
    assert.ok(s.inputs > 0, `${name} got inputs`);
    assert.equal(s.answered + s.closed, s.inputs, `every ${name} input answered or closed`);
    assert.ok(s.maxRssMB > 10, `${name} RSS sampled`);
  }
});

test('the checks: a batch answered, bad blocks closed, a connection gone silent a hang', { timeout: 60_000 }, async (t) => {
  const relay = await startRelay();
  t.after(() => relay.stop());
  const { proxy, address } = await proxied(relay.address);
  t.after(() => proxy.close());
  const a = parseAddress(address);
  assert.ok(a.ok);
  const ping = encodeCommand({ type: 'PING' });
  const target: Target = {
    name: 'relay',
    url: `ws://127.0.0.1:${a.value.port}/`,
    fingerprint: a.value.fingerprint,
    protocol: RELAY_PROTOCOL,
    versions: RELAY_VERSIONS,
    blockSize: RELAY_BLOCK_SIZE,
    ping,
    events: new Set(['MSG', 'NMSG', 'END', 'ENDS', 'DELD']),
    crypto: nodeCrypto,
    hangMs: 1000, // the bound a silent connection is given: the one wait on time here
  };
  const bad: string[] = [];
  const open = async () => {
    const s = await FuzzSession.open(target, (why) => bad.push(why));
    assert.ok(typeof s !== 'string', `handshake: ${s}`);
    return s;
  };
  const EMPTY = new Uint8Array(0);

  const s = await open();
  const items = [
    s.transmission(s.nextCorrId(), EMPTY, ping),
    s.transmission(s.nextCorrId(), new Uint8Array(24), encodeCommand({ type: 'SUB' })), // unsigned: NO_AUTH
    s.transmission(s.nextCorrId(), EMPTY, Uint8Array.of(3, 0x58, 0x59, 0x5a)), // an unknown tag: UNKNOWN
    Uint8Array.of(40, 1, 2), // no transmission at all: SYNTAX
  ];
  assert.deepEqual(await s.exchange(items), { outcome: 'answered', unanswered: 0 });

  // (a block whose random content still decodes is answered, item by item, with errors)
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 8; seed++) outcomes.add((await blockInput(await open(), new Prng(seed, 'block'))).outcome);
  assert.ok(outcomes.has('closed') && !outcomes.has('hang'), [...outcomes].join());

  assert.ok(proxy.blackhole() >= 1, 'the open session blackholed');
  assert.equal((await s.exchange([s.transmission(s.nextCorrId(), EMPTY, ping)])).outcome, 'hang');
  assert.deepEqual(bad, [], 'nothing malformed from the relay');
});
