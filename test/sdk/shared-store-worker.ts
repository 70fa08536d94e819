// One of the two processes of test/sdk/shared-store.test.ts: Bob's client on
// a FileStore another process uses too. Runs its script (argv[2]) round by
// round: take the store (open, or reload after a suspend), do the round's
// operations, give the store up (suspend or close). Talks to the test over
// IPC: it asks for its turn and for Alice's messages (with the pushes they
// made), and reports what it sent and every message event it got.
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { HushClient } from '../../src/sdk/client.ts';
import { FileStore } from '../../src/sdk/store/file.ts';

export type Op = 'send' | 'recv' | 'online';
export interface Round {
  ops: Op[];
  release: 'suspend' | 'close';
}
export interface WorkerConfig {
  id: string;
  file: string;
  relay: string;
  ntfServer: string;
  /** Alice's contact ID at Bob. */
  contactId: string;
  rounds: Round[];
}
export type ToTest =
  | { type: 'want' | 'took' | 'released' | 'message' | 'done' }
  | { type: 'event' | 'sent' | 'sendFailed'; text: string }
  | { type: 'fail'; what: string };
export type FromTest = { type: 'go' } | { type: 'message'; text: string; pushes: unknown[] };

const cfg = JSON.parse(process.argv[2]!) as WorkerConfig;
const tell = (m: ToTest) => process.send!(m);
let answer: ((m: FromTest) => void) | undefined;
process.on('message', (m: FromTest) => answer?.(m));
const ask = (m: ToTest) => new Promise<FromTest>((r) => ((answer = r), tell(m)));

const got = new Map<string, () => void>();
let client: HushClient | undefined;

async function take(): Promise<HushClient> {
  if (client) {
    await client.reload({ timeoutMs: 60_000 });
    return client;
  }
  const c = await HushClient.open({
    store: await FileStore.open(cfg.file),
    closeStore: true,
    relays: [cfg.relay],
    ntfServer: cfg.ntfServer,
    webSocket: nodeWebSocket(),
    timeoutMs: 10_000,
    lockTimeoutMs: 60_000,
  });
  c.on('message', (m) => {
    tell({ type: 'event', text: m.text });
    got.get(m.text)?.();
  });
  c.on('lockLost', (e) => tell({ type: 'fail', what: `lock lost: ${e.message}` }));
  return (client = c);
}

/** Resolves when this process got `text` as an event, or after `ms`. */
const arrival = (text: string, ms: number) =>
  new Promise<void>((r) => {
    const timer = setTimeout(r, ms);
    got.set(text, () => (clearTimeout(timer), r()));
  });

for (const [i, round] of cfg.rounds.entries()) {
  await ask({ type: 'want' });
  const c = await take();
  tell({ type: 'took' });
  for (const [j, op] of round.ops.entries()) {
    if (op === 'send') {
      const text = `from-${cfg.id}-${i}-${j}`;
      await c.send(cfg.contactId, text).then(
        () => tell({ type: 'sent', text }),
        () => tell({ type: 'sendFailed', text }),
      );
    } else {
      if (op === 'online') await c.start();
      const m = (await ask({ type: 'message' })) as Extract<FromTest, { type: 'message' }>;
      if (op === 'online') await arrival(m.text, 5_000);
      else for (const p of m.pushes) await c.handlePush(p as Record<string, unknown>, { deadlineMs: 10_000 });
    }
  }
  if (round.release === 'suspend') await c.suspend({ timeoutMs: 5_000 });
  else {
    await c.close();
    client = undefined;
  }
  tell({ type: 'released' });
}
await client?.close();
tell({ type: 'done' });
process.disconnect();
