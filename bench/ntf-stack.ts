// The notification-server benchmark's stack (bench/ntf.ts, figures 1, 2, 3, 5): a relay and a
// notification server as processes and the devices' connections to them; figure 5
// (registrations), then the queues and subscriptions the SEND runs use.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { sharedKey } from '../src/core/keys.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { NtfClient } from '../src/ntf/client.ts';
import { openPush } from '../src/ntf/payload.ts';
import { RelayClient } from '../src/relay/client.ts';
import { type Children, metric, metricsText, percentile, round, sleep, stop, table } from './lib.ts';
import { NO_CREATION_LIMITS_ENV } from './relay.ts';
import {
  cpuPct,
  cpuSnap,
  collectGarbage,
  crypto,
  fmt,
  hex,
  hrMs,
  initNtfDir,
  initRelayDir,
  ms,
  NTF_ACTIVE,
  pctStr,
  phase,
  startServer,
  type Report,
  type Rig,
  type ServerProcess,
} from './ntf-rig.ts';
import { key, type PushRouter, type SubQueue } from './ntf-router.ts';

const REG_TOKENS = 6000;
const REG_CONNECTIONS = 20;
const REG_PER_CONNECTION = 16;
/** No registration starts after this long (a stuck server must not hold the section). */
const REG_DEADLINE_MS = 60_000;

export const SUB_TOKENS = 2000;
export const SUBS_PER_TOKEN = 3;
/** Queues created (then subscriptions) this many at a time. */
const CHUNK = 500;

export class Stack {
  /** The processes whose CPU the measurements report. */
  readonly procs: Record<string, number>;
  readonly clients: NtfClient[] = [];
  relayClient: RelayClient | undefined;
  sender: ChildProcess | undefined;

  constructor(
    readonly relay: ServerProcess,
    readonly ntf: ServerProcess,
  ) {
    this.procs = { ntf: ntf.pid, relay: relay.pid, bench: process.pid };
  }

  closeClients(): void {
    this.relayClient?.close();
    this.relayClient = undefined;
    for (const c of this.clients.splice(0)) c.close();
  }

  /** Stops the SEND driver, the clients and the servers (so the raw HTTP/2 client does not share the cores with them). */
  async stop(children: Children): Promise<void> {
    if (this.sender) {
      this.sender.send({ t: 'exit' });
      await stop(this.sender);
    }
    this.closeClients();
    await children.killAll();
  }
}

export async function startStack({ children, base, apns, teamKey }: Rig): Promise<Stack> {
  const relayDir = path.join(base, 'relay');
  const ntfDir = path.join(base, 'ntf');
  await initRelayDir(children, relayDir);
  const relay = await startServer(children, 'relay', relayDir, {
    HUSH_RELAY_PORT: '0',
    HUSH_RELAY_METRICS_PORT: '0',
    HUSH_RELAY_QUEUE_QUOTA: '1000000',
    ...NO_CREATION_LIMITS_ENV,
  });
  await initNtfDir(children, ntfDir, apns, teamKey);
  const ntf = await startServer(children, 'ntf', ntfDir, { HUSH_NTF_PORT: '0', HUSH_NTF_METRICS_PORT: '0' });
  return new Stack(relay, ntf);
}

// ---- 5. registrations ----

export interface Registered {
  tokenHex: string;
  tokenId: Uint8Array;
  tknAuth: KeyPair;
  secret: Uint8Array;
}

function devices() {
  return Array.from({ length: REG_TOKENS }, () => {
    const token = crypto.randomBytes(32);
    const tknAuth = crypto.x25519KeyPair();
    const tknDh = crypto.x25519KeyPair();
    // A phone holds its keys ready: imported into OpenSSL here (node:crypto caches the key
    // object per key), before the clock starts, so the devices' key set-up is not timed.
    crypto.x25519(tknAuth.privateKey, tknDh.publicKey);
    crypto.x25519(tknDh.privateKey, tknAuth.publicKey);
    return { token, tokenHex: hex(token), tknAuth, tknDh };
  });
}

async function registrations(stack: Stack, router: PushRouter) {
  const devs = devices();
  const done: Registered[] = [];
  const lat: number[] = [];
  let next = 0;
  let failures = 0;
  let firstError: unknown;
  const deadline = hrMs() + REG_DEADLINE_MS;
  const worker = async (c: NtfClient) => {
    for (;;) {
      const i = next++;
      if (i >= devs.length || hrMs() > deadline) return;
      const d = devs[i]!;
      const t = hrMs();
      try {
        const verification = router.waitVerification(d.tokenHex, 30_000);
        verification.catch(() => {}); // awaited below; TNEW may fail first
        const { tokenId, srvDhKey } = await c.registerToken({ provider: 'apns', token: d.token }, d.tknAuth, d.tknDh.publicKey);
        const secret = sharedKey(crypto, d.tknDh.privateKey, srvDhKey, 'ntf token')!;
        const v = openPush(crypto, secret, Buffer.from(await verification, 'base64url'));
        if (!v || v.kind !== 'verification') throw new Error('verification push did not open');
        await c.verifyToken(tokenId, d.tknAuth.privateKey, v.code);
        lat.push(hrMs() - t);
        done.push({ tokenHex: d.tokenHex, tokenId, tknAuth: d.tknAuth, secret });
      } catch (e) {
        failures++;
        firstError ??= e;
      }
    }
  };
  collectGarbage();
  const a = cpuSnap(stack.procs);
  await Promise.all(stack.clients.flatMap((c) => Array.from({ length: REG_PER_CONNECTION }, () => worker(c))));
  const b = cpuSnap(stack.procs);
  phase('registrations', a.t, b.t);
  if (done.length === 0) throw firstError ?? new Error('no registration completed');
  lat.sort((x, y) => x - y);
  return {
    perS: (done.length * 1000) / (b.t - a.t),
    done,
    failures,
    firstError: firstError === undefined ? undefined : String(firstError),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    elapsedMs: b.t - a.t,
    cpu: cpuPct(a, b),
    ntfActiveTokens: metric(await metricsText(stack.ntf.metricsPort), 'hush_ntf_tokens{status="ACTIVE"}'),
  };
}

/** Figure 5: REG_CONNECTIONS device connections register REG_TOKENS tokens; returns the registered ones. */
export async function registrationPhase(stack: Stack, router: PushRouter, report: Report): Promise<Registered[]> {
  for (let i = 0; i < REG_CONNECTIONS; i++)
    stack.clients.push(await NtfClient.connect(stack.ntf.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 }));
  const reg = await registrations(stack, router);
  report.noteOther(reg.cpu);
  Object.assign(report.figures, {
    registrations_per_s: round(reg.perS),
    registration_p50_ms: ms(reg.p50),
    registration_p99_ms: ms(reg.p99),
    registration_failures: reg.failures,
  });
  console.log(
    `5. Registrations: ${REG_TOKENS} tokens (provider apns), ${REG_CONNECTIONS} connections × ${REG_PER_CONNECTION} in flight; ` +
      `TNEW → verification push at the APNs test server → openPush → TVFY OK (target ≥ 2,000/s)`,
  );
  console.log(
    table(
      ['', 'registrations/s', 'p50 ms', 'p99 ms', 'failed', 'CPU'],
      [['TNEW+TVFY', fmt(reg.perS), ms(reg.p50), ms(reg.p99), reg.failures, pctStr(reg.cpu)]],
    ) + '\n',
  );
  if (reg.firstError) console.log(`first failure: ${reg.firstError}`);
  report.notes.registrations = {
    tokens: REG_TOKENS,
    connections: REG_CONNECTIONS,
    inFlightPerConnection: REG_PER_CONNECTION,
    elapsedMs: Math.round(reg.elapsedMs),
    activeTokensAtServer: reg.ntfActiveTokens,
    cpuPct: reg.cpu,
    note: 'device keys (tknAuth, tknDh) made and imported into OpenSSL before the clock starts; the devices run in the benchmark process, beside the APNs test server',
  };
  return reg.done;
}

// ---- queues and subscriptions ----

/**
 * The first SUB_TOKENS registered tokens subscribe SUBS_PER_TOKEN relay queues each (NEW with
 * notifier keys, then SNEW), and the router learns them; returns the queues, a token's consecutive.
 */
export async function subscribe(stack: Stack, router: PushRouter, registered: Registered[], report: Report): Promise<SubQueue[]> {
  const setupStart = performance.now();
  const relayClient = await RelayClient.connect(stack.relay.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 });
  stack.relayClient = relayClient;
  const subTokens = registered.slice(0, SUB_TOKENS);
  if (subTokens.length < SUB_TOKENS) throw new Error(`only ${subTokens.length} tokens registered`);
  const queues: SubQueue[] = [];
  const subs: { tk: Registered; notifierId: Uint8Array; ntfAuth: KeyPair }[] = [];
  for (let from = 0; from < SUB_TOKENS * SUBS_PER_TOKEN; from += CHUNK) {
    await Promise.all(
      Array.from({ length: Math.min(CHUNK, SUB_TOKENS * SUBS_PER_TOKEN - from) }, async (_, k) => {
        const index = from + k;
        const tk = subTokens[Math.floor(index / SUBS_PER_TOKEN)]!;
        const rcvAuth = crypto.x25519KeyPair();
        const rcvDh = crypto.x25519KeyPair();
        const ntfAuth = crypto.x25519KeyPair();
        const ntfDh = crypto.x25519KeyPair();
        const ids = await relayClient.newQueue(rcvAuth, rcvDh.publicKey, { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: ntfDh.publicKey });
        const q: SubQueue = { index, sndId: ids.sndId, rcvNtfDhSecret: sharedKey(crypto, ntfDh.privateKey, ids.ntf!.srvNtfDhKey, 'relay notifier')! };
        queues[index] = q;
        subs[index] = { tk, notifierId: ids.ntf!.notifierId, ntfAuth };
        let t = router.tokens.get(tk.tokenHex);
        if (!t) router.tokens.set(tk.tokenHex, (t = { secret: tk.secret, queues: new Map() }));
        t.queues.set(key(ids.ntf!.notifierId), q);
      }),
    );
  }
  const { clients } = stack;
  for (let from = 0; from < subs.length; from += CHUNK * 2) {
    await Promise.all(
      subs.slice(from, from + CHUNK * 2).map((s, k) =>
        clients[(from + k) % clients.length]!.createSubscription(s.tk.tokenId, s.tk.tknAuth.privateKey, stack.relay.address, s.notifierId, s.ntfAuth.privateKey),
      ),
    );
  }
  const subsDeadline = performance.now() + 30_000;
  while (metric(await metricsText(stack.ntf.metricsPort), NTF_ACTIVE) < subs.length) {
    if (performance.now() > subsDeadline) throw new Error('subscriptions not ACTIVE within 30 s');
    await sleep(50);
  }
  router.lastNonce = new Array<string>(queues.length).fill('');
  report.notes.setup = {
    tokensWithSubscriptions: SUB_TOKENS,
    subscriptionsPerToken: SUBS_PER_TOKEN,
    queues: queues.length,
    setupMs: Math.round(performance.now() - setupStart),
  };
  return queues;
}
