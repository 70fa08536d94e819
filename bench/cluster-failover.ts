// Failover runs of the cluster benchmark (bench/cluster.ts): three instances, a steady
// paced load over the failover devices' queues from this process, kill -9 of the
// instance holding relay 0. Each SEND's body is its call time (CLOCK_MONOTONIC ms), so
// once the load is over the messages read back from the relay (GET/ACK as the recipient,
// in order) say when each was sent; the pushes (opened with the device's keys, their
// entries with the queue's notifier secret) say which message IDs were pushed, and when.
//   failover s   kill → the first push of a relay-0 message SENT after the kill
//   lost         per relay-0 queue, acknowledged messages after the newest one pushed
import { openPush } from '../src/ntf/payload.ts';
import type { ApnsRecordedPush, ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { openMessage, openMeta, RelayClient } from '../src/relay/client.ts';
import { round, sleep } from './lib.ts';
import type { Cluster, Device, Instance } from './cluster-rig.ts';
import { crypto, hex, hrMs } from './ntf-rig.ts';

/** SENDs/s over all failover queues. */
export const FAILOVER_RATE = 150;
const BEFORE_KILL_MS = 3000;
/** Load kept up this long after relay 0's first push following its takeover. */
const AFTER_TAKEOVER_MS = 2000;
/** Bound on kill → takeover → a push from relay 0 again. */
const TAKEOVER_WAIT_MS = 40_000;
/** After the load: pushes still coming are waited for until none came for QUIET_MS (at most SETTLE_MS). */
const QUIET_MS = 2000;
const SETTLE_MS = 15_000;
/** The failover figure's target, for the table. */
export const FAILOVER_TARGET_S = 15;

/** The failover devices' pushes: per device, each message ID's first arrival. */
class PushLog {
  readonly pushed: Map<string, number>[];
  private readonly byToken = new Map<string, number>();
  lastAt = 0;
  badPushes = 0;

  constructor(
    apns: ApnsTestServer,
    private readonly devices: Device[],
  ) {
    this.pushed = devices.map(() => new Map());
    devices.forEach((d, i) => this.byToken.set(d.tokenHex, i));
    apns.on('push', (p) => this.push(p));
  }

  private push(p: ApnsRecordedPush): void {
    const i = this.byToken.get(p.token);
    if (i === undefined || p.headers['apns-push-type'] !== 'alert') return;
    const t = hrMs();
    this.lastAt = t;
    const d = this.devices[i]!;
    const c = openPush(crypto, d.secret, Buffer.from(p.payload.d as string, 'base64url'));
    if (c?.kind !== 'message') return void this.badPushes++;
    for (const e of c.entries) {
      const meta = openMeta(crypto, d.q.ntf!.rcvNtfDhSecret, e);
      if (!meta) this.badPushes++;
      else if (!this.pushed[i]!.has(hex(meta.msgId))) this.pushed[i]!.set(hex(meta.msgId), t);
    }
  }

  /** The first push at relay `relay`'s devices after `t`, or undefined. */
  firstAfter(relay: number, t: number): number | undefined {
    let first: number | undefined;
    this.devices.forEach((d, i) => {
      if (d.relay !== relay) return;
      for (const at of this.pushed[i]!.values()) if (at > t && (first === undefined || at < first)) first = at;
    });
    return first;
  }

  clear(): void {
    for (const m of this.pushed) m.clear();
  }
}

/** SENDs paced at FAILOVER_RATE round robin over the devices, until stopped. */
class Load {
  sent = 0;
  errors = 0;
  firstError: string | undefined;
  /** Per device, the call times of the SENDs the relay acknowledged. */
  readonly acknowledged: Set<number>[];
  private running = true;
  private readonly done: Promise<void>;
  private inFlight = 0;

  constructor(
    private readonly devices: Device[],
    private readonly relays: RelayClient[],
  ) {
    this.acknowledged = devices.map(() => new Set());
    this.done = this.run();
  }

  private async run(): Promise<void> {
    const t0 = hrMs();
    while (this.running) {
      const due = Math.floor(((hrMs() - t0) * FAILOVER_RATE) / 1000);
      for (; this.sent < due; this.sent++) this.sendOne(this.sent % this.devices.length);
      await sleep(5);
    }
    while (this.inFlight > 0) await sleep(5);
  }

  private sendOne(i: number): void {
    const d = this.devices[i]!;
    const at = hrMs();
    const body = new Uint8Array(new Float64Array([at]).buffer);
    this.inFlight++;
    this.relays[d.relay]!.send(d.q.sndId, body, { notify: true }).then(
      () => {
        this.inFlight--;
        this.acknowledged[i]!.add(at);
      },
      (e: unknown) => {
        this.inFlight--;
        this.errors++;
        this.firstError ??= e instanceof Error ? e.message : String(e);
      },
    );
  }

  stop(): Promise<void> {
    this.running = false;
    return this.done;
  }
}

/** A queue's messages, oldest first, taken off the relay (GET, ACK): message ID and SEND call time. */
async function readAll(c: RelayClient, d: Device): Promise<{ id: string; sentAt: number }[]> {
  const out: { id: string; sentAt: number }[] = [];
  for (;;) {
    const m = await c.get(d.q.rcvId, d.q.rcvAuth.privateKey);
    if (!m) return out;
    const plain = openMessage(crypto, d.q.rcvDhSecret, m);
    if (!plain) throw new Error('a message did not open');
    out.push({ id: hex(m.msgId), sentAt: new Float64Array(plain.body.slice().buffer)[0]! });
    await c.ack(d.q.rcvId, d.q.rcvAuth.privateKey, m.msgId);
  }
}

export interface FailoverRun {
  victim: string;
  /** Kill → relay 0's lease held by another instance. */
  leaseMovedS: number | null;
  /** Kill → the first push of a relay-0 message sent after the kill (null: none came). */
  failoverS: number | null;
  /** Relay-0 messages acknowledged by the relay whose wake-up never came. */
  lost: number;
  /** Relay-0 messages acknowledged in the run. */
  acknowledged: number;
  /** The same for the other relays' queues (no instance of theirs was killed). */
  otherRelaysLost: number;
  sendErrors: number;
  firstSendError?: string;
  badPushes: number;
}

export class Failover {
  private readonly log: PushLog;
  private relays: RelayClient[] = [];

  constructor(
    private readonly cluster: Cluster,
    apns: ApnsTestServer,
    private readonly devices: Device[],
  ) {
    this.log = new PushLog(apns, devices);
  }

  async connect(): Promise<void> {
    this.relays = await Promise.all(this.cluster.relays.map((r) => RelayClient.connect(r.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 })));
  }

  close(): void {
    for (const c of this.relays) c.close();
  }

  /** One run on a balanced cluster of three; the killed instance is left dead for the caller to start again. */
  async run(): Promise<{ result: FailoverRun; victim: Instance }> {
    const { cluster, log } = this;
    log.clear();
    const load = new Load(this.devices, this.relays);
    let killedAt = 0;
    let leaseMovedAt: number | undefined;
    try {
      await sleep(BEFORE_KILL_MS);
      const owner = (await cluster.holders()).get(0);
      const victim = cluster.instanceOf(owner);
      if (!victim) throw new Error(`relay 0 held by ${owner ?? 'nobody'}, not one of the instances`);
      killedAt = hrMs();
      await victim.kill9();
      await cluster
        .until(
          'relay 0 served again',
          async () => {
            if (leaseMovedAt === undefined) {
              const o = (await cluster.holders()).get(0);
              if (o !== undefined && o !== owner) leaseMovedAt = hrMs();
            }
            return leaseMovedAt !== undefined && log.firstAfter(0, leaseMovedAt) !== undefined;
          },
          TAKEOVER_WAIT_MS,
        )
        .then(() => sleep(AFTER_TAKEOVER_MS))
        // not served again in time: the figures say so (null failover, messages lost)
        .catch(() => cluster.check());
      await load.stop();
      const settleEnd = hrMs() + SETTLE_MS;
      while (hrMs() - log.lastAt < QUIET_MS && hrMs() < settleEnd) await sleep(100);
      const r = await this.tally(load, killedAt);
      const leaseMovedS = leaseMovedAt === undefined ? null : round((leaseMovedAt - killedAt) / 1000, 2);
      return { result: { victim: victim.name, leaseMovedS, ...r }, victim };
    } finally {
      await load.stop();
    }
  }

  /** Every failover queue read empty; lost and the failover time from what was pushed. */
  private async tally(load: Load, killedAt: number) {
    let lost = 0;
    let acknowledged = 0;
    let otherRelaysLost = 0;
    let first = Infinity;
    await Promise.all(
      this.devices.map(async (d, i) => {
        const msgs = await readAll(this.relays[d.relay]!, d);
        const pushed = this.log.pushed[i]!;
        let newest = -1;
        msgs.forEach((m, k) => {
          const at = pushed.get(m.id);
          if (at === undefined) return;
          newest = k;
          if (d.relay === 0 && m.sentAt >= killedAt) first = Math.min(first, at);
        });
        const ack = load.acknowledged[i]!;
        const missed = msgs.slice(newest + 1).filter((m) => ack.has(m.sentAt)).length;
        if (d.relay === 0) {
          lost += missed;
          acknowledged += ack.size;
        } else otherRelaysLost += missed;
      }),
    );
    return {
      failoverS: Number.isFinite(first) ? round((first - killedAt) / 1000, 2) : null,
      lost,
      acknowledged,
      otherRelaysLost,
      sendErrors: load.errors,
      ...(load.firstError ? { firstSendError: load.firstError } : {}),
      badPushes: this.log.badPushes,
    };
  }
}
