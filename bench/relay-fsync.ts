// Relay SEND throughput with the journal's fsync on or off: acknowledged SENDs
// per second against a real relay process (bench/relay.ts startRelayProcess)
// with a journal store in a fresh temp dir. Several sender connections on
// 127.0.0.1 keep a fixed number of SENDs in flight (closed loop, bench/lib.ts)
// to queues nobody reads; an OK means the relay's group commit covered the
// message (with fsync: its fdatasync finished). Bounded: SENDERS × WINDOW in
// flight, `seconds` measured after a warm-up, a drain timeout, the relay
// killed at the end.
//   node --import tsx bench/relay-fsync.ts   prints both figures
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { nodeCrypto } from '../src/node/crypto.ts';
import { Children, closedLoop, round } from './lib.ts';
import { BODY_BYTES, connect, newQueue, startRelayProcess, type FrameCounter } from './relay.ts';

const SENDERS = 4;
const QUEUES_PER_SENDER = 4;
/** SENDs in flight per sender connection. */
const WINDOW = 64;
const WARMUP_MS = 500;

export async function relaySendPerSecond(opts: { fsync: boolean; seconds?: number }): Promise<number> {
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-fsync-'));
  const counter: FrameCounter = { in: 0, out: 0 };
  const clients: Array<{ close(): void }> = [];
  try {
    const relay = await startRelayProcess(children, dir, { HUSH_RELAY_FSYNC: String(opts.fsync) });
    const rcv = await connect(relay.address, counter);
    clients.push(rcv);
    const queues = await Promise.all(Array.from({ length: SENDERS * QUEUES_PER_SENDER }, () => newQueue(rcv, false)));
    const senders = await Promise.all(Array.from({ length: SENDERS }, () => connect(relay.address, counter)));
    clients.push(...senders);
    const body = nodeCrypto.randomBytes(BODY_BYTES);
    let n = 0;
    const r = await closedLoop(
      (done) => {
        // queue i is sent to by sender i mod SENDERS only: each queue's SENDs stay in order
        const q = n++ % queues.length;
        senders[q % SENDERS]!.send(queues[q]!.sndId, body).then(
          () => done(),
          (e) => done(String(e)),
        );
      },
      { concurrency: SENDERS * WINDOW, warmupMs: WARMUP_MS, measureMs: (opts.seconds ?? 3) * 1000, drainMs: 10_000, peerPid: relay.pid },
    );
    if (r.errors > 0) throw new Error(`SEND failed: ${r.firstError}`);
    return r.perS;
  } finally {
    for (const c of clients) c.close();
    await children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const fsync of [false, true])
    console.log(`relay SEND/s, fsync ${fsync ? 'on' : 'off'}: ${round(await relaySendPerSecond({ fsync })).toLocaleString('en')}`);
}
