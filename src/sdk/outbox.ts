// The outbox (docs/sdk.md §4.6): an envelope is stored in the same write as the
// ratchet step that sealed it, before it goes to the relay, and stays until the
// relay took it. What cannot go now (the relay down, the contact's queue full)
// is sent again later, in order, as the same envelope: a repeat that did arrive
// is a duplicate at the receiver, so nothing is lost and nothing shown twice.
import { CommandError } from '../core/command-client.ts';
import type { Timers } from '../ntf/timers.ts';
import { b64, save, type Context } from './context.ts';
import type { Contact, OutgoingMessage } from './records.ts';

export type MessageState = 'pending' | 'sent' | 'failed';

/** A sent message's state changed (the `messageStatus` event). */
export interface MessageStatus {
  contactId: string;
  messageId: string;
  kind: OutgoingMessage['kind'];
  state: MessageState;
  /** Why it failed (state failed). */
  error?: string;
}

/** How long the outbox keeps trying by default: then the message fails. */
export const DEFAULT_OUTBOX_TTL_MS = 2 * 24 * 3_600_000;
/** Delays between tries of a contact's waiting messages (each × 0.75–1.25), the last repeated. */
export const RETRY_MS = [1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000];

/** Refusals that may pass: a full queue, a busy or faulty relay. Any other refusal is final. */
const PASSING = new Set(['QUOTA', 'BUSY', 'INTERNAL', 'RATE']);
const passing = (e: unknown) => !(e instanceof CommandError) || PASSING.has(e.error);

export class Outbox {
  private readonly timers = new Map<string, { timer: unknown; relay: string }>();
  private running = true;

  constructor(
    private readonly ctx: Context,
    private readonly clock: Timers,
    private readonly ttlMs: number,
    private readonly status: (s: MessageStatus) => void,
  ) {}

  /** Stores `m` with the contact's advanced ratchet (and `also`) in one write, as the contact's last message out. */
  async add(contact: Contact, m: OutgoingMessage, also: Omit<Parameters<typeof save>[1], 'contacts' | 'outbox'> = {}): Promise<void> {
    const queue = this.ctx.outbox.get(contact.id) ?? [];
    this.ctx.outbox.set(contact.id, [...queue, m]);
    await save(this.ctx, { ...also, contacts: [contact], outbox: [m] });
    this.report(m, 'pending');
  }

  /** The contact's waiting messages, oldest first. */
  waiting(contactId: string): readonly OutgoingMessage[] {
    return this.ctx.outbox.get(contactId) ?? [];
  }

  /**
   * Sends the contact's waiting messages in order, under its lock, until one
   * cannot go now (tried again later) or none is left. Resolves with the
   * state of `messageId` (if given) once settled for now.
   */
  flush(contactId: string, messageId?: string): Promise<MessageState | undefined> {
    return this.ctx.locks.run(contactId, async () => {
      const c = this.ctx.contacts.get(contactId);
      if (!c) return undefined;
      let settled: MessageState | undefined; // messageId's, once sent or failed
      const finish = async (m: OutgoingMessage, state: 'sent' | 'failed', error?: string) => {
        await this.finish(c, m, state, error);
        if (m.id === messageId) settled = state;
      };
      for (let m = this.waiting(contactId)[0]; m; m = this.waiting(contactId)[0]) {
        if (this.ctx.now() - m.createdAt > this.ttlMs) {
          await finish(m, 'failed', `not taken by the relay within its time to live (${Math.round(this.ttlMs / 1000)} s)`);
          continue;
        }
        const to = m.to ?? c.snd!;
        try {
          // A first message goes unsigned to the queue in the link; the rest signed to the contact's queue.
          const auth = m.to ? {} : { sndAuthKey: c.snd!.sndAuthKey };
          await this.ctx.relays.with(to.relay, (r) => r.send(to.sndId, m!.envelope, { notify: m!.notify, ...auth }));
        } catch (e) {
          if (!passing(e)) {
            await finish(m, 'failed', `the relay refused it (${(e as CommandError).error})`);
            continue;
          }
          m.attempts++;
          await save(this.ctx, { outbox: [m] });
          this.retryLater(c, to.relay, m.attempts);
          break;
        }
        await finish(m, 'sent');
      }
      return messageId === undefined ? undefined : (settled ?? 'pending');
    });
  }

  /** A connection to `relay` opened: contacts waiting to send there try now, not at their timer. */
  relayUp(relay: string): void {
    for (const [id, t] of this.timers) if (t.relay === relay) this.tryNow(id);
  }

  /** Tries every contact's waiting messages now (the client went online). */
  flushAll(): void {
    this.running = true;
    for (const id of this.ctx.outbox.keys()) this.tryNow(id);
  }

  /** No more tries until flushAll() (the client went offline or closed). */
  stop(): void {
    this.running = false;
    for (const t of this.timers.values()) this.clock.clear(t.timer);
    this.timers.clear();
  }

  /** A deleted contact's messages go with it. */
  forget(contactId: string): OutgoingMessage[] {
    const t = this.timers.get(contactId);
    if (t) this.clock.clear(t.timer);
    this.timers.delete(contactId);
    const gone = this.waiting(contactId);
    this.ctx.outbox.delete(contactId);
    return [...gone];
  }

  private tryNow(contactId: string): void {
    const t = this.timers.get(contactId);
    if (t) this.clock.clear(t.timer);
    this.timers.delete(contactId);
    void this.flush(contactId).catch((e) => this.ctx.fail('sending waiting messages failed', e));
  }

  private retryLater(c: Contact, relay: string, attempts: number): void {
    if (!this.running || this.timers.has(c.id)) return;
    const base = RETRY_MS[Math.min(attempts - 1, RETRY_MS.length - 1)]!;
    const timer = this.clock.set(() => {
      this.timers.delete(c.id);
      this.tryNow(c.id);
    }, base * (0.75 + Math.random() / 2));
    this.timers.set(c.id, { timer, relay });
  }

  private async finish(c: Contact, m: OutgoingMessage, state: 'sent' | 'failed', error?: string): Promise<void> {
    const rest = this.waiting(c.id).filter((x) => x !== m);
    if (rest.length) this.ctx.outbox.set(c.id, rest);
    else this.ctx.outbox.delete(c.id);
    await save(this.ctx, { outboxDone: [m] });
    this.report(m, state, error);
  }

  private report(m: OutgoingMessage, state: MessageState, error?: string): void {
    this.status({ contactId: m.contactId, messageId: m.id, kind: m.kind, state, ...(error ? { error } : {}) });
  }
}

/** A new outgoing message's record (its envelope already sealed), after the contact's others; `to`: a first message's queue. */
export function outgoing(
  ctx: Context,
  contact: Contact,
  kind: OutgoingMessage['kind'],
  envelope: Uint8Array,
  notify: boolean,
  to?: OutgoingMessage['to'],
): OutgoingMessage {
  const seq = (ctx.outbox.get(contact.id)?.at(-1)?.seq ?? -1) + 1;
  return { id: b64(ctx.crypto.randomBytes(12)), contactId: contact.id, kind, seq, ...(to ? { to } : {}), envelope, notify, createdAt: ctx.now(), attempts: 0 };
}
