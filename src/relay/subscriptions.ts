// Who is subscribed to what on a relay: each queue's recipient (SUB) with its
// delivery window, each notifier's NSUB, each service's NSUBS. The one place
// that changes these maps, and sends the events a change brings (END, ENDS,
// DELD, MSG); sessions and the server only call it.
import { equalBytes, latin1, latin1Bytes } from '../core/encoding.ts';
import { DELIVERY_WINDOW, type RelayResponse } from './protocol.ts';
import type { KeptQueue, QueueStore, StoredMessage } from './store/store.ts';

/** A connection that holds subscriptions: gets their events. */
export interface Subscriber {
  event(entityId: Uint8Array, r: RelayResponse): void;
  /** At its outbound cap: deliveries wait (the messages stay queued) until it has caught up and calls resume(). */
  congested(): boolean;
}

/** What one connection holds, so its subscriptions go with it when it closes. */
interface Held {
  rcv: Set<string>;
  ntf: Set<string>;
  service: Uint8Array | undefined;
  /** Queues whose deliveries, and queues whose kept NMSG, wait for the connection to catch up. */
  stalled: Set<string>;
  owed: Set<string>;
}

export interface SubscriptionDeps {
  store: QueueStore;
  /** A stored message as its recipient gets it (MSG). */
  seal(q: KeptQueue, m: StoredMessage): RelayResponse;
  delivered(): void;
  /** A service's subscription moved to another connection (its previous one got ENDS). */
  serviceTakenOver?(): void;
}

const EMPTY = new Uint8Array(0);

export class Subscriptions {
  /** Per queue (rcvId): its subscriber, and the msgId keys delivered and awaiting ACK, oldest first. */
  private readonly recipients = new Map<string, { subscriber: Subscriber; sent: string[] }>();
  private readonly notifiers = new Map<string, Subscriber>();
  private readonly services = new Map<string, Subscriber>();
  private readonly held = new Map<Subscriber, Held>();

  constructor(private readonly deps: SubscriptionDeps) {}

  private of(s: Subscriber): Held {
    let h = this.held.get(s);
    if (!h) this.held.set(s, (h = { rcv: new Set(), ntf: new Set(), service: undefined, stalled: new Set(), owed: new Set() }));
    return h;
  }

  /** SUB: the queue's previous subscriber gets END; a repeated SUB delivers the unacknowledged message again. */
  subscribeRecipient(q: KeptQueue, s: Subscriber): void {
    const k = q.rcv;
    const other = this.recipients.get(k)?.subscriber;
    if (other && other !== s) {
      this.held.get(other)?.rcv.delete(k);
      other.event(q.rcvId, { type: 'END' });
    }
    this.recipients.set(k, { subscriber: s, sent: [] });
    this.of(s).rcv.add(k);
  }

  isRecipient(q: KeptQueue, s: Subscriber): boolean {
    return this.recipients.get(q.rcv)?.subscriber === s;
  }

  /**
   * An ACK of the oldest message in the subscriber's window frees a place in
   * it, also when it comes from another connection (after a GET there). True if so.
   */
  acked(q: KeptQueue, msgId: Uint8Array): boolean {
    const sent = this.recipients.get(q.rcv)?.sent;
    if (sent?.[0] !== latin1(msgId)) return false;
    sent.shift();
    return true;
  }

  /** DEL: the queue's subscription ends; a subscriber on another connection gets DELD. */
  dropRecipient(q: KeptQueue, by: Subscriber): void {
    const k = q.rcv;
    const sub = this.recipients.get(k)?.subscriber;
    if (!sub) return;
    this.recipients.delete(k);
    this.held.get(sub)?.rcv.delete(k);
    if (sub !== by) sub.event(q.rcvId, { type: 'DELD' });
  }

  /** Fills the subscriber's delivery window: up to DELIVERY_WINDOW messages ahead of its ACKs, oldest first. */
  deliver(q: KeptQueue): void {
    const k = q.rcv;
    const r = this.recipients.get(k);
    if (!r) return;
    while (r.sent.length < DELIVERY_WINDOW) {
      const m = this.deps.store.messageAt(q.rcvId, r.sent.length);
      if (!m) return;
      if (r.subscriber.congested()) return void this.of(r.subscriber).stalled.add(k);
      r.sent.push(latin1(m.msgId));
      r.subscriber.event(q.rcvId, this.deps.seal(q, m));
      this.deps.delivered();
    }
  }

  /** A kept NMSG for a notifier at its cap: it waits for resume(), as deliveries do. */
  holdNotification(q: KeptQueue, s: Subscriber): void {
    this.of(s).owed.add(q.rcv);
  }

  /**
   * The connection caught up: the deliveries that waited for it go now (as far
   * as it keeps up); returns the queues whose kept NMSG it is still owed.
   */
  resume(s: Subscriber): KeptQueue[] {
    const h = this.held.get(s);
    if (!h) return [];
    const { store } = this.deps;
    const stalled = [...h.stalled];
    const owed = [...h.owed];
    h.stalled.clear();
    h.owed.clear();
    for (const k of stalled) {
      const q = store.byRecipient(latin1Bytes(k));
      if (q) this.deliver(q);
    }
    return owed.flatMap((k) => {
      const q = store.byRecipient(latin1Bytes(k));
      return q && this.notifierSubscriber(q) === s ? [q] : [];
    });
  }

  /** Expired messages leave the front of a subscriber's window: it would wait for ACKs that cannot succeed. */
  releaseExpiredInFlight(): void {
    const { store } = this.deps;
    for (const [k, { sent }] of this.recipients) {
      if (!sent.length) continue;
      const q = store.byRecipient(latin1Bytes(k));
      const head = q && store.peekMessage(q.rcvId);
      const headKey = head && latin1(head.msgId);
      if (sent[0] === headKey) continue;
      while (sent.length > 0 && sent[0] !== headKey) sent.shift();
      if (q) this.deliver(q);
    }
  }

  /** The subscriber that gets NMSGs of a queue: its own NSUB, else its service's NSUBS. */
  notifierSubscriber(q: KeptQueue): Subscriber | undefined {
    const n = q.notifier;
    if (!n) return undefined;
    return this.notifiers.get(n.id) ?? (n.service !== undefined ? this.services.get(n.service) : undefined);
  }

  /** NSUB: the previous subscriber gets END; on a connection holding a service, the queue joins that service. */
  subscribeNotifier(q: KeptQueue, s: Subscriber): void {
    const n = q.notifier!;
    const k = n.id;
    const current = this.notifierSubscriber(q);
    if (current && current !== s) {
      this.held.get(current)?.ntf.delete(k);
      current.event(n.notifierId, { type: 'END' });
    }
    const { store } = this.deps;
    const service = this.held.get(s)?.service;
    if (service) {
      // A service's queues are found through the service: one NSUBS resubscribes them all.
      this.notifiers.delete(k);
      if (!n.serviceId || !equalBytes(n.serviceId, service)) store.setService(q.rcvId, service);
    } else {
      if (n.serviceId) store.setService(q.rcvId, undefined);
      this.notifiers.set(k, s);
      this.of(s).ntf.add(k);
    }
  }

  /** NUNS from the queue's notifier subscriber: ends its NSUB, or takes the queue out of its service. */
  unsubscribeNotifier(q: KeptQueue, s: Subscriber): void {
    const k = q.notifier!.id;
    if (this.held.get(s)?.ntf.delete(k)) this.notifiers.delete(k);
    else this.deps.store.setService(q.rcvId, undefined);
  }

  /** Ends the notifier subscription of a queue (NDEL, DEL, NKEY replacing it) with DELD. */
  dropNotifier(q: KeptQueue): void {
    const n = q.notifier;
    if (!n) return;
    const s = this.notifierSubscriber(q);
    this.notifiers.delete(n.id);
    if (s) this.held.get(s)?.ntf.delete(n.id);
    s?.event(n.notifierId, { type: 'DELD' });
  }

  /** NSUBS: the service's previous connection gets ENDS; returns the service's queues. */
  subscribeService(serviceId: Uint8Array, s: Subscriber): KeptQueue[] {
    const k = latin1(serviceId);
    const previous = this.services.get(k);
    const queues = this.deps.store.queuesOfService(serviceId);
    if (previous && previous !== s) {
      this.of(previous).service = undefined;
      previous.event(EMPTY, { type: 'ENDS', count: queues.length });
      this.deps.serviceTakenOver?.();
    }
    // A connection holds one service: switching keys releases the old one, whose entry would
    // otherwise outlive the connection and swallow its queues' NMSGs instead of keeping them.
    const h = this.of(s);
    const held = h.service && latin1(h.service);
    if (held && held !== k && this.services.get(held) === s) this.services.delete(held);
    this.services.set(k, s);
    h.service = serviceId;
    return queues;
  }

  /** After SOKS: an individual NSUB of a service queue, here or elsewhere, loses to the service subscription. */
  claimForService(q: KeptQueue, s: Subscriber): void {
    const nk = q.notifier!.id;
    const other = this.notifiers.get(nk);
    if (!other) return;
    this.notifiers.delete(nk);
    this.held.get(other)?.ntf.delete(nk);
    if (other !== s) other.event(q.notifier!.notifierId, { type: 'END' });
  }

  /** A closed connection's subscriptions end with it. */
  closed(s: Subscriber): void {
    const h = this.held.get(s);
    if (!h) return;
    this.held.delete(s);
    for (const k of h.rcv) if (this.recipients.get(k)?.subscriber === s) this.recipients.delete(k);
    for (const k of h.ntf) if (this.notifiers.get(k) === s) this.notifiers.delete(k);
    if (h.service && this.services.get(latin1(h.service)) === s) this.services.delete(latin1(h.service));
  }
}
