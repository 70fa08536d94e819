// Online reception (docs/sdk.md §4.4): every receive queue SUBed on its relay's
// connection, each MSG handled, stored and ACKed as it comes; a dropped link to
// a relay that holds queues of mine is reconnected with backoff and its queues
// SUBed again. (A relay I only send to is reached again by the outbox.)
import { ConnectionError } from '../core/client.ts';
import { equalBytes } from '../core/encoding.ts';
import type { Timers } from '../ntf/timers.ts';
import type { RelayEvent } from '../relay/client.ts';
import { receiveOn } from './address.ts';
import { ackMessage, type InboxEvent } from './contacts.ts';
import { receivers, type Context } from './context.ts';
import type { Receiver } from './records.ts';

/** Delays before reconnecting, by attempt (each × 0.75–1.25), the last repeated. */
const RECONNECT_MS = [250, 500, 1000, 2000, 5000, 10_000, 30_000];

export interface OnlineHooks {
  /** Whether a message may be handled now (the client holds its store). */
  accepting(): boolean;
  /** A message was handled (stored and ACKed): what it meant. */
  received(event: InboxEvent): void;
}

export class Online {
  private active = false;
  private readonly reconnects = new Map<string, unknown>();

  constructor(
    private readonly ctx: Context,
    private readonly timers: Timers,
    private readonly hooks: OnlineHooks,
  ) {}

  get started(): boolean {
    return this.active;
  }

  /** SUBs every receive queue; from now on dropped links are reconnected. */
  start(): Promise<void> {
    this.active = true;
    return this.subscribe(receivers(this.ctx));
  }

  /** No more reconnects (the caller closes the connections). */
  stop(): void {
    this.active = false;
    for (const t of this.reconnects.values()) this.timers.clear(t);
    this.reconnects.clear();
  }

  async subscribe(list: Receiver[]): Promise<void> {
    const byRelay = new Map<string, Receiver[]>();
    for (const c of list) byRelay.set(c.rcv.relay, [...(byRelay.get(c.rcv.relay) ?? []), c]);
    await Promise.all(
      [...byRelay].map(async ([relay, queues]) => {
        try {
          const r = await this.ctx.relays.get(relay);
          await Promise.all(
            queues.map((c) =>
              r.subscribe(c.rcv.rcvId, c.rcv.rcvAuth.privateKey).catch((e) => {
                if (!(e instanceof ConnectionError)) this.ctx.fail('subscribing a queue failed', e);
              }),
            ),
          );
        } catch (e) {
          this.ctx.fail('connecting to a relay failed', e);
          this.reconnect(relay, 0);
        }
      }),
    );
  }

  /** A relay link dropped: reconnected if queues of mine are there. */
  relayClosed(relay: string): void {
    if (this.active && receivers(this.ctx).some((c) => c.rcv.relay === relay)) this.reconnect(relay, 0);
  }

  /** A MSG is handled under its queue's lock, stored, then ACKed; END and DELD need nothing. */
  relayEvent(relay: string, e: RelayEvent): void {
    const c = receivers(this.ctx).find((x) => x.rcv.relay === relay && equalBytes(x.rcv.rcvId, e.entityId));
    // Suspending: the message stays at the relay (not ACKed) for the store's next holder.
    if (!c || e.type !== 'MSG' || !this.hooks.accepting()) return;
    void this.ctx.locks
      .run(c.id, async () => {
        const r = await this.ctx.relays.get(relay);
        const event = await receiveOn(this.ctx, c, r, e);
        // Stored, so handled: a redelivery after a failed ACK is recognized (seen) and makes no second event.
        await ackMessage(r, c, e.msgId).catch((err) => this.ctx.fail('acknowledging a received message failed', err));
        return event;
      })
      .then((event) => event && this.hooks.received(event))
      .catch((err) => this.ctx.fail('handling a received message failed', err));
  }

  private reconnect(relay: string, attempt: number): void {
    if (!this.active || this.reconnects.has(relay)) return;
    const base = RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)]!;
    const timer = this.timers.set(async () => {
      this.reconnects.delete(relay);
      if (!this.active) return;
      try {
        await this.ctx.relays.get(relay);
      } catch {
        return this.reconnect(relay, attempt + 1);
      }
      await this.subscribe(receivers(this.ctx).filter((c) => c.rcv.relay === relay));
    }, base * (0.75 + Math.random() / 2));
    this.reconnects.set(relay, timer);
  }
}
