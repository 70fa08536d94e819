// The notification-server cluster benchmark's rig (bench/cluster.ts): three relays
// (`hush relay start`), up to three notification servers (`hush ntf start`, PostgreSQL
// store, so each is a cluster member) on one fresh schema, sharing identity.key and
// service.key; and the devices: tokens registered and verified, one queue each with a
// subscription, the queues spread over the relays round robin.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { sharedKey } from '../src/core/keys.ts';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { NtfClient } from '../src/ntf/client.ts';
import { ntfFiles } from '../src/ntf/config.ts';
import { openPush } from '../src/ntf/payload.ts';
import { RelayClient } from '../src/relay/client.ts';
import { freePort } from '../src/server/testkit/free-port.ts';
import { newQueue, type Queue } from '../test/helpers.ts';
import { metric, metricsText, until } from './lib.ts';
import { crypto, hex, initNtfDir, initRelayDir, NTF_ACTIVE, startServer, type Rig, type ServerProcess } from './ntf-rig.ts';
import { NO_CREATION_LIMITS_ENV } from './relay.ts';

export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const RELAYS = 3;
export const INSTANCES = 3;

/** One `hush ntf start` cluster member on its own directory and fixed ports (its instance ID is host name:port). */
export class Instance {
  proc: ChildProcess | undefined;
  pid = 0;
  address = '';
  /** Why it exited when nobody killed it: fails the section. */
  crashed: string | undefined;
  private killing = false;

  constructor(
    private readonly rig: Rig,
    readonly name: string,
    readonly dir: string,
    readonly port: number,
    readonly metricsPort: number,
    private readonly env: Record<string, string>,
  ) {}

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    this.killing = false;
    const s = await startServer(this.rig.children, 'ntf', this.dir, {
      ...this.env,
      HUSH_NTF_PORT: String(this.port),
      HUSH_NTF_METRICS_PORT: String(this.metricsPort),
    });
    this.proc = s.proc;
    this.pid = s.pid;
    this.address = s.address;
    s.proc.once('exit', (code, signal) => {
      if (!this.killing) this.crashed = `${this.name} exited (${code ?? signal})`;
    });
  }

  async kill9(): Promise<void> {
    const p = this.proc!;
    this.killing = true;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async metrics(): Promise<string> {
    try {
      return await metricsText(this.metricsPort);
    } catch (e) {
      throw new Error(this.crashed ?? `${this.name} /metrics: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

export class Cluster {
  readonly relays: ServerProcess[] = [];
  readonly instances: Instance[] = [];
  readonly schema = `hush_bench_cluster_${hex(crypto.randomBytes(4))}`;
  private readonly admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
  private relayExit: string | undefined;

  constructor(private readonly rig: Rig) {}

  /** The relays running and the instances' directories made (none started). */
  async init(): Promise<void> {
    const { children, base, apns, teamKey } = this.rig;
    await Promise.all(
      Array.from({ length: RELAYS }, async (_, i) => {
        const dir = path.join(base, `relay${i}`);
        await initRelayDir(children, dir);
        const r = await startServer(children, 'relay', dir, {
          HUSH_RELAY_PORT: '0',
          HUSH_RELAY_METRICS_PORT: '0',
          // nobody reads the sustained runs' messages: room for them
          HUSH_RELAY_QUEUE_QUOTA: '1000000',
          ...NO_CREATION_LIMITS_ENV,
        });
        r.proc.once('exit', (code, signal) => (this.relayExit ??= `relay ${i} exited (${code ?? signal})`));
        this.relays[i] = r;
      }),
    );
    const env = { HUSH_NTF_STORE: 'postgres', HUSH_NTF_DATABASE_URL: PG_URL, HUSH_NTF_DATABASE_SCHEMA: this.schema };
    for (let i = 0; i < INSTANCES; i++) {
      const dir = path.join(base, `ntf${i + 1}`);
      await initNtfDir(children, dir, apns, teamKey);
      if (i > 0) for (const f of [ntfFiles(dir).identity, ntfFiles(dir).serviceKey]) fs.copyFileSync(path.join(this.instances[0]!.dir, path.basename(f)), f);
      this.instances.push(new Instance(this.rig, `ntf${i + 1}`, dir, await freePort(), await freePort(), env));
    }
  }

  /** Throws if a process died that nobody killed. */
  check(): void {
    const crash = this.relayExit ?? this.instances.find((x) => x.crashed)?.crashed;
    if (crash) throw new Error(crash);
  }

  /** `until`, failing at once when a process died. */
  until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
    return until(
      what,
      () => {
        this.check();
        return f();
      },
      timeoutMs,
    );
  }

  running = () => this.instances.filter((x) => x.running);

  /** Relay index → owner of its lease (instance ID), for the leases not expired. */
  async holders(): Promise<Map<number, string>> {
    const rows = (
      await this.admin.query<{ name: string; owner: string }>(
        `SELECT name, owner FROM ${pg.escapeIdentifier(this.schema)}.leases WHERE name LIKE 'relay:%' AND expires_at > now()`,
      )
    ).rows;
    const out = new Map<number, string>();
    for (const r of rows) {
      const i = this.relays.findIndex((x) => `relay:${x.address}` === r.name);
      if (i >= 0) out.set(i, r.owner);
    }
    return out;
  }

  /** The instance an owner (host name:port) names. */
  instanceOf = (owner: string | undefined) => (owner === undefined ? undefined : this.instances.find((x) => owner.endsWith(`:${x.port}`)));

  /**
   * Waits until every relay is held by a running instance, the running instances hold
   * them as evenly as can be, and each has linked what it holds.
   */
  async balanced(timeoutMs = 60_000): Promise<void> {
    const running = this.running();
    await this.until(
      `relays spread over ${running.length} instance(s)`,
      async () => {
        const h = await this.holders();
        if (h.size < RELAYS) return false;
        const counts = running.map((x) => [...h.values()].filter((o) => this.instanceOf(o) === x).length);
        if (counts.reduce((a, b) => a + b, 0) < RELAYS || Math.max(...counts) - Math.min(...counts) > 1) return false;
        const texts = await Promise.all(running.map((x) => x.metrics()));
        return texts.every((t, k) => metric(t, 'hush_ntf_relays_held') === counts[k] && metric(t, 'hush_ntf_relay_links{state="up"}') === counts[k]);
      },
      timeoutMs,
    );
  }

  /** Kills what is left, drops the schema. */
  async close(): Promise<void> {
    await this.rig.children.killAll();
    await this.admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(this.schema)} CASCADE`).catch(() => {});
    await this.admin.end();
  }
}

/** PostgreSQL's server processes on this machine (Linux; none found elsewhere): their CPU is reported apart. */
export function postgresPids(): number[] {
  const comm = (pid: string) => {
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      return undefined; // gone meanwhile
    }
  };
  try {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && comm(d) === 'postgres').map(Number);
  } catch {
    return [];
  }
}

// ---- devices ----

export interface Device {
  tokenHex: string;
  /** What the phone opens its pushes with. */
  secret: Uint8Array;
  relay: number;
  q: Queue;
}

const CONNECTIONS = 8;
const IN_FLIGHT = 8;

/**
 * `n` devices registered at `ntf` (TNEW, the verification push opened, TVFY), each with one
 * queue at relay i mod RELAYS and a subscription to it; resolves once `ntf` shows `activeTotal`
 * subscriptions ACTIVE (those made before included).
 */
export async function makeDevices(cluster: Cluster, ntf: Instance, rig: Rig, n: number, activeTotal: number): Promise<Device[]> {
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => NtfClient.connect(ntf.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 })));
  const relayClients = await Promise.all(cluster.relays.map((r) => RelayClient.connect(r.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 })));
  try {
    const devices: Device[] = [];
    let next = 0;
    const worker = async (c: NtfClient) => {
      while (next < n) {
        const i = next++;
        const token = crypto.randomBytes(32);
        const tokenHex = hex(token);
        const tknAuth: KeyPair = crypto.x25519KeyPair();
        const tknDh = crypto.x25519KeyPair();
        const verification = rig.router.waitVerification(tokenHex, 30_000);
        verification.catch(() => {}); // awaited below; TNEW may fail first
        const { tokenId, srvDhKey } = await c.registerToken({ provider: 'apns', token }, tknAuth, tknDh.publicKey);
        const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
        const v = openPush(crypto, secret, Buffer.from(await verification, 'base64url'));
        if (v?.kind !== 'verification') throw new Error('verification push did not open');
        await c.verifyToken(tokenId, tknAuth.privateKey, v.code);
        const relay = i % RELAYS;
        const q = await newQueue(relayClients[relay]!, true);
        await c.createSubscription(tokenId, tknAuth.privateKey, cluster.relays[relay]!.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
        devices[i] = { tokenHex, secret, relay, q };
      }
    };
    await Promise.all(clients.flatMap((c) => Array.from({ length: IN_FLIGHT }, () => worker(c))));
    await cluster.until('subscriptions ACTIVE', async () => metric(await ntf.metrics(), NTF_ACTIVE) >= activeTotal, 60_000);
    return devices;
  } finally {
    for (const c of [...clients, ...relayClients]) c.close();
  }
}
