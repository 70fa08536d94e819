// Relay subscriber: one connection per relay (pinned by the fingerprint in its
// address) carrying every subscription the server has there. On connect it
// identifies as the server's service (NSUBS): every queue it ever subscribed
// is subscribed again by that one command, so a restart of either side costs
// O(1) commands per relay. New subscriptions wait a short batching window and
// go out as NSUBs in blocks. A quiet link is PINGed and a dead one closed
// (keepalive); a lost connection is retried with exponential backoff and
// jitter, and meanwhile its ACTIVE subscriptions read as INACTIVE. Each NMSG is
// acknowledged (NACK) only once the store has made it durable, so the relay
// sends again whatever a dead link or a killed server lost.
// Relay addresses come from clients: only relays with a live (not terminal)
// subscription are dialled, only where the relay policy admits the address
// (checked again on what a host name resolves to), and a link is closed once
// its last live subscription goes.
// In a cluster (docs/ntf-cluster.md) a member links only the relays whose
// lease it holds (`holds`), and a subscription it does not know of is checked
// in the database before the relay is told to stop notifying it.
import type { Logger } from 'pino';
import { parseAddress } from '../core/address.ts';
import { latin1, latin1Bytes } from '../core/encoding.ts';
import type { KeepaliveOptions } from '../core/client.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import { nodeWebSocket } from '../node/websocket.ts';
import { RelayClient, RelayCommandError, type RelayEvent } from '../relay/client.ts';
import { guardedLookup, type AddressPolicy } from '../server/address-guard.ts';
import { TERMINAL_SUB_STATUSES } from './protocol.ts';
import type { NtfStore, SubRecord } from './store/store.ts';
import type { Timers } from './timers.ts';

export interface SubscriberOptions {
  crypto: CryptoSuite;
  serviceKey: KeyPair;
  /** Which relay addresses may be dialled. */
  policy: AddressPolicy;
  /** A link not dialled because the policy refused its address or what its host name resolved to. */
  onRefused?(): void;
  store: NtfStore;
  log: Logger;
  /** An NMSG for a subscription: recorded in the store before this returns. */
  onNotification(sub: SubRecord, nmsg: { nonce: Uint8Array; sealedMeta: Uint8Array }): void;
  /** Background changes to persist. */
  changed(): void;
  /** Resolves once every change made so far is durable (the store's flush). */
  durable(): Promise<void>;
  /** The round trip of each answered PING on a relay link. */
  onProbe?(rttMs: number): void;
  keepalive?: Partial<KeepaliveOptions>;
  now: () => number;
  batchWindowMs?: number;
  /** NSUBs in flight per relay (below the relay's pending limit). */
  batchSize?: number;
  /** Reconnect delay: doubles from backoffMs (250) to maxBackoffMs (30 s), with jitter; a refused relay waits the most at once. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Runs the reconnect delays. */
  timers: Timers;
  /** Whether this server subscribes at `relay` (a cluster member: it holds the relay's lease); default all. */
  holds?(relay: string): boolean;
  /** Another connection of the service took the relay over (ENDS); without it the link retries later. */
  onTakenOver?(relay: string): void;
  /** Whether a subscription unknown here is really gone (not only made by another member, not seen here yet). */
  confirmGone?(relay: string, notifierId: string): Promise<boolean>;
}

export class RelaySubscriber {
  private readonly links = new Map<string, RelayLink>();
  /** Relays whose link is checked for live subscriptions in the next microtask. */
  private readonly idleChecks = new Set<string>();
  private closed = false;

  constructor(readonly opts: SubscriberOptions) {}

  /** Connects to every relay the store has live subscriptions at (that this server holds). */
  start(): void {
    for (const relay of [...this.opts.store.relays()]) if (this.holds(relay) && this.live(relay)) this.link(relay);
  }

  private holds(relay: string): boolean {
    return this.opts.holds?.(relay) ?? true;
  }

  /** A new subscription: NSUB in the next batch; left NEW for the holder of a relay held elsewhere. */
  add(sub: SubRecord): void {
    if (!this.holds(sub.relay)) return;
    this.opts.store.setSubStatus(sub.subId, 'PENDING');
    this.link(sub.relay).queue(sub);
  }

  /** This server now holds `relay`: linked, and NSUBS takes every subscription there. */
  take(relay: string): void {
    if (this.live(relay)) this.link(relay);
  }

  /** Another server holds `relay` now: the link is closed, nothing is unsubscribed. */
  giveUp(relay: string): void {
    this.links.get(relay)?.close();
    this.links.delete(relay);
  }

  /** A subscription the store has deleted: the relay stops notifying it (NUNS); a link left with no live one is closed. */
  remove(sub: SubRecord): void {
    const l = this.links.get(sub.relay);
    if (!l) return;
    void l.unsubscribe(latin1Bytes(sub.notifierId)).then(() => this.dropIfIdle(sub.relay));
  }

  /** A subscription that is not terminal (END, DELETED, AUTH) at `relay`. */
  private live(relay: string): boolean {
    for (const s of this.opts.store.subsOfRelay(relay)) if (!TERMINAL_SUB_STATUSES.has(s.status)) return true;
    return false;
  }

  /** Closes the link to `relay` once no live subscription is left there; checked once for a block of events. */
  private dropIfIdle(relay: string): void {
    if (this.idleChecks.has(relay)) return;
    this.idleChecks.add(relay);
    queueMicrotask(() => {
      this.idleChecks.delete(relay);
      const l = this.links.get(relay);
      if (!l || this.live(relay)) return;
      l.close();
      this.links.delete(relay);
      this.opts.log.info({ event: 'relay_link_closed', reason: 'no subscriptions' });
    });
  }

  connected(relay: string): boolean {
    return this.links.get(relay)?.connected ?? false;
  }

  /** Links by state: up (subscribed), connecting, down (waiting to retry). */
  linkStates(): Record<LinkState, number> {
    const n: Record<LinkState, number> = { up: 0, connecting: 0, down: 0 };
    for (const l of this.links.values()) n[l.state]++;
    return n;
  }

  /**
   * The longest time (ms) a link with ACTIVE subscriptions has not been up; 0
   * when all are. A relay never subscribed at (an address a client made up,
   * one the policy refuses) is not an outage of this server.
   */
  longestDown(): number {
    const now = this.opts.now();
    let max = 0;
    for (const [relay, l] of this.links)
      if (l.downSince !== undefined && now - l.downSince > max && this.hasActive(relay)) max = now - l.downSince;
    return max;
  }

  private hasActive(relay: string): boolean {
    for (const s of this.opts.store.subsOfRelay(relay)) if (s.status === 'ACTIVE') return true;
    return false;
  }

  /** ACTIVE subscriptions at relays that are disconnected now. */
  inactive(): number {
    let n = 0;
    for (const [relay, l] of this.links)
      if (!l.connected) for (const s of this.opts.store.subsOfRelay(relay)) if (s.status === 'ACTIVE') n++;
    return n;
  }

  private link(relay: string): RelayLink {
    let l = this.links.get(relay);
    if (!l) {
      l = new RelayLink(relay, this.opts, () => this.dropIfIdle(relay));
      this.links.set(relay, l);
      if (!this.closed) l.connect();
    }
    return l;
  }

  /** Resolves once every relay link has finished its current (re)subscription. */
  async settled(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.settled()));
  }

  close(): void {
    this.closed = true;
    for (const l of this.links.values()) l.close();
  }
}

export type LinkState = 'up' | 'connecting' | 'down';

class RelayLink {
  private client: RelayClient | undefined;
  /** NMSGs received, acknowledged once the store has them. */
  private acks: { client: RelayClient; notifierId: Uint8Array; nonce: Uint8Array }[] = [];
  private connecting = false;
  /** When the link stopped being up (ms, the subscriber's clock); undefined while up. */
  downSince: number | undefined;
  private waiting: SubRecord[] = [];
  private batchTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: unknown;
  private failures = 0;
  private closed = false;
  /** NSUBS answered on this.client: until then its subscriptions are not live. */
  private ready = false;
  private work: Promise<void> = Promise.resolve();

  constructor(
    readonly relay: string,
    private readonly o: SubscriberOptions,
    /** Some subscription went terminal: the link may have none live left. */
    private readonly ended: () => void,
  ) {
    this.downSince = o.now();
  }

  /** Connected and resubscribed (NSUBS answered). */
  get connected(): boolean {
    return this.ready && (this.client?.connected ?? false);
  }

  get state(): LinkState {
    return this.connected ? 'up' : this.connecting ? 'connecting' : 'down';
  }

  async connect(): Promise<void> {
    const { log, crypto, serviceKey, store, policy } = this.o;
    this.connecting = true;
    // A literal is dialled without a lookup: checked here; a host name is checked on what it resolves to.
    const address = parseAddress(this.relay);
    let refused = !address.ok || policy.refusesHost(address.value.host);
    const lookup = guardedLookup((host, addresses) => {
      refused = !policy.admits(host, addresses);
      return !refused;
    });
    try {
      if (refused) throw new Error('refused by the relay policy');
      const client = await RelayClient.connect(this.relay, {
        crypto,
        webSocket: nodeWebSocket({ lookup }),
        timeoutMs: 30_000,
        ...(this.o.keepalive ? { keepalive: this.o.keepalive } : {}),
        ...(this.o.onProbe ? { onPing: this.o.onProbe } : {}),
        onEvent: (e) => this.event(client, e),
        onClose: (why) => this.lost(client, why),
      });
      if (this.closed) return client.close();
      // set before NSUBS is answered: NMSGs the relay kept may follow the answer in the same block
      this.client = client;
      const count = await client.subscribeService(serviceKey);
      if (client !== this.client) return; // lost meanwhile; a reconnect is under way
      this.ready = true;
      this.connecting = false;
      this.downSince = undefined;
      this.failures = 0;
      // Subscriptions the service does not cover yet, and all of them if the relay lost track.
      const subs = [...store.subsOfRelay(this.relay)];
      const active = subs.filter((s) => s.status === 'ACTIVE').length;
      const redo = subs.filter((s) => s.status === 'NEW' || s.status === 'PENDING' || (count < active && s.status === 'ACTIVE'));
      log.info({ event: 'relay_connected', services: count, resubscribe: redo.length });
      this.waiting = redo; // every waiting subscription is PENDING, so in `redo` already
      this.flushSoon(0);
    } catch (e) {
      this.client?.close();
      this.client = undefined;
      this.ready = false;
      this.connecting = false;
      if (this.closed) return;
      // refused: the address will not change, nor (for a while) what its name resolves to, so no quick retries
      const retryMs = this.retry(refused);
      if (!refused) return log.warn({ event: 'relay_connect_failed', err: e instanceof Error ? e.message : String(e), retryMs });
      this.o.onRefused?.();
      log.warn({ event: 'relay_refused', retryMs });
    }
  }

  /** Schedules a reconnect, at the longest delay at once with `atMost`; returns the delay (ms). */
  private retry(atMost = false): number | undefined {
    if (this.closed || this.retryTimer) return undefined;
    const max = this.o.maxBackoffMs ?? 30_000;
    const base = atMost ? max : Math.min(max, (this.o.backoffMs ?? 250) * 2 ** this.failures++);
    const ms = Math.round(base * (0.5 + Math.random() / 2));
    this.retryTimer = this.o.timers.set(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, ms);
    return ms;
  }

  private lost(client: RelayClient, why: string): void {
    if (client !== this.client) return;
    this.client = undefined;
    this.ready = false;
    this.downSince ??= this.o.now();
    this.o.log.warn({ event: 'relay_disconnected', reason: why, retryMs: this.retry() });
  }

  /** NUNS on the current connection; a link that is down has nothing to stop (see the stray NMSG case in event()). */
  async unsubscribe(notifierId: Uint8Array): Promise<void> {
    const client = this.client;
    if (!client || !this.ready) return;
    try {
      await client.unsubscribeNotifier(notifierId);
    } catch {
      // AUTH: the relay already had no such subscription here; a lost link: same as down.
    }
  }

  /**
   * NACKs wait for a store flush called after their NMSGs were recorded: the
   * NMSGs of one block are taken together (a microtask runs after the whole
   * block), and later ones start their own flush. A connection lost meanwhile
   * drops its NACKs: the relay sends those NMSGs again.
   */
  private acknowledge(client: RelayClient, notifierId: Uint8Array, nonce: Uint8Array): void {
    this.acks.push({ client, notifierId, nonce });
    if (this.acks.length > 1) return;
    queueMicrotask(() => {
      const acks = this.acks;
      this.acks = [];
      this.o.durable().then(
        () => {
          for (const a of acks) if (a.client.connected) a.client.acknowledgeNotification(a.notifierId, a.nonce).catch(() => {});
        },
        // Not durable: never acknowledged, the relay keeps them.
        (err) => this.o.log.error({ event: 'store_flush_failed', err: String(err) }),
      );
    });
  }

  queue(sub: SubRecord): void {
    this.waiting.push(sub);
    this.flushSoon(this.o.batchWindowMs ?? 10);
  }

  private flushSoon(ms: number): void {
    // Not before NSUBS is answered: connect() then takes every PENDING subscription
    // itself, and one sent meanwhile would go twice.
    if (this.batchTimer || !this.ready) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.work = this.work.then(() => this.subscribeWaiting());
    }, ms);
  }

  /** NSUBs for the waiting subscriptions, a batch at a time. */
  private async subscribeWaiting(): Promise<void> {
    const { store } = this.o;
    const size = this.o.batchSize ?? 1000;
    while (this.waiting.length > 0) {
      const client = this.client;
      if (!client) return; // kept waiting for the next connection
      const batch = this.waiting.splice(0, size).filter((s) => store.sub(s.subId) === s);
      const results = await Promise.allSettled(
        batch.map((s) => client.subscribeNotifier(latin1Bytes(s.notifierId), latin1Bytes(s.ntfAuthKey))),
      );
      const retried = new Map<string, number>();
      results.forEach((r, i) => {
        const s = batch[i]!;
        if (r.status === 'fulfilled') return store.setSubStatus(s.subId, 'ACTIVE');
        if (r.reason instanceof RelayCommandError && r.reason.error === 'AUTH') {
          store.setSubStatus(s.subId, 'AUTH');
          return this.ended();
        }
        this.waiting.push(s); // BUSY or connection trouble: again later
        const why = r.reason instanceof RelayCommandError ? r.reason.error : 'connection';
        retried.set(why, (retried.get(why) ?? 0) + 1);
      });
      if (retried.size > 0) this.o.log.warn({ event: 'nsub_retry', ...Object.fromEntries(retried) });
      this.o.changed();
      if (results.some((r) => r.status === 'rejected' && !(r.reason instanceof RelayCommandError))) return;
    }
  }

  private event(client: RelayClient, e: RelayEvent): void {
    if (client !== this.client) return; // a replaced connection
    const { store } = this.o;
    if (e.type === 'ENDS') {
      // Another connection of this service took over: let it, and come back later (or when the lease is ours again).
      this.o.log.warn({ event: 'relay_service_taken_over' });
      client.close();
      this.o.onTakenOver?.(this.relay);
      return;
    }
    const notifierId = latin1(e.entityId);
    const sub = store.subOfNotifier(this.relay, notifierId);
    if (!sub) {
      // Deleted while the link was down, so its NUNS never went: send it now. Not acknowledged:
      // one another member made and this one has not seen yet comes again.
      if (e.type !== 'NMSG') return;
      const gone = this.o.confirmGone ? this.o.confirmGone(this.relay, notifierId) : Promise.resolve(true);
      void gone.then(
        (yes) => {
          if (yes && !store.subOfNotifier(this.relay, notifierId) && client.connected) client.unsubscribeNotifier(e.entityId).catch(() => {});
        },
        () => {},
      );
      return;
    }
    switch (e.type) {
      case 'NMSG':
        this.o.onNotification(sub, e);
        this.acknowledge(client, e.entityId, e.nonce);
        return;
      case 'END':
        store.setSubStatus(sub.subId, 'END');
        break;
      case 'DELD':
        store.setSubStatus(sub.subId, 'DELETED');
        break;
      default:
        return;
    }
    this.o.changed();
    this.ended();
  }

  async settled(): Promise<void> {
    while (this.batchTimer || this.waiting.length > 0 || (this.client && !this.ready)) {
      if (!this.client) return;
      await new Promise((r) => setTimeout(r, 5));
      await this.work;
    }
    await this.work;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.batchTimer);
    if (this.retryTimer) this.o.timers.clear(this.retryTimer);
    this.client?.close();
    this.client = undefined;
    this.ready = false;
  }
}
