// Contacts: made by a one-time invitation, each side receiving on a queue on a
// relay of its own choice (docs/sdk.md §2), and the messages between them.
//
//   inviter                                   acceptor
//   NEW queue A; link = (relay A, sndId A, e2e key)
//                                    ──link──▶ NEW queue B, KEY B (key kB)
//              ◀── SEND A (unsigned): first envelope, hello{B, kB private, kA public}
//   KEY A (kA); SEND B (signed kB): ready ──▶
//   connected                                 connected
//
// A received message is handled, its new ratchet stored, and only then
// acknowledged: a crash in between means a redelivery, which the ratchet (and
// the list of recently seen message IDs) recognizes and drops.
import { parseAddress } from '../core/address.ts';
import { isValidPublicKey, sharedKey } from '../core/keys.ts';
import { CommandError } from '../core/command-client.ts';
import { openMessage, type RelayClient } from '../relay/client.ts';
import { b64, isCurrent, save, type Context } from './context.ts';
import { decodeContent, encodeContent, type CallMedia, type CallReply, type Content } from './content.ts';
import { decrypt, encrypt, initRatchet, readEnvelope, type Role } from './e2e.ts';
import type { KeyPair } from '../core/crypto/suite.ts';
import { formatInvitation, parseInvitation, type Invitation } from './invitation.ts';
import { outgoing, type Outbox } from './outbox.ts';
import { ADDRESS_ID, type Contact, type ContactState, type OutgoingMessage, type Profile, type Receiver } from './records.ts';

/** What a received message meant, for the app and for notifications. */
export type ChatEvent =
  | { type: 'message'; contactId: string; msgId: string; text: string; sentAt: number; receivedAt: number }
  /** Ringing until `expiresAt` (the relay's time it was sent + the caller's ring time); after it, a missed call. */
  | { type: 'call'; contactId: string; msgId: string; callId: string; media: CallMedia; sentAt: number; receivedAt: number; expiresAt: number }
  /** The contact answered or declined my call `callId`. */
  | { type: 'callReply'; contactId: string; msgId: string; callId: string; reply: CallReply }
  /** The contact is connected: the inviter got the acceptor's hello, or the acceptor the inviter's ready (or the requester the answer). */
  | { type: 'contact'; contactId: string; msgId: string; name: string };

/** A contact request came to my address: it waits for acceptContactRequest / rejectContactRequest. */
export type RequestEvent = { type: 'contactRequest'; requestId: string; name: string };

/** What a message on one of my queues meant: a chat event (a contact's queue) or a request (the address's). */
export type InboxEvent = ChatEvent | RequestEvent;

/** Handles one MSG from a receive queue of mine (a contact's or the address's). */
export type Handler = (ctx: Context, r: Receiver, relay: RelayClient, msg: { msgId: Uint8Array; sealed: Uint8Array }) => Promise<InboxEvent | undefined>;

/** Recently received message IDs kept per contact, to recognize redeliveries. */
const SEEN = 64;

export class ContactError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ContactError';
  }
}

function pickRelay(ctx: Context): string {
  const list = ctx.relayAddresses;
  if (list.length === 0) throw new ContactError('no relay configured');
  return list[Math.floor(Math.random() * list.length)]!;
}

/** What a relay's refusal of NEW means to the user; the CommandError stays the cause. */
const NEW_REFUSED: Record<string, string> = {
  PASSWORD: 'the relay needs a creation password: the one in its address is missing or wrong',
  RATE: 'the relay refuses new queues from here for now: try again later',
};

/** A new receive queue on one of my relays, and the contact record around it. */
export async function newContact(ctx: Context, role: Role, state: ContactState, profile: Profile): Promise<Contact> {
  const { crypto } = ctx;
  return {
    id: b64(crypto.randomBytes(12)),
    profileId: profile.id,
    name: '',
    myName: profile.name,
    state,
    createdAt: ctx.now(),
    rcv: await newQueue(ctx),
    e2e: { role, key: crypto.x25519KeyPair() },
    ntf: { enabled: ctx.settings.newContactNotifications !== false },
    unread: 0,
    lastNotifiedAt: 0,
    seen: [],
  };
}

/** A new receive queue on one of my relays. */
export async function newQueue(ctx: Context): Promise<Receiver['rcv']> {
  const { crypto } = ctx;
  const relay = pickRelay(ctx);
  const rcvAuth = crypto.x25519KeyPair();
  const rcvDh = crypto.x25519KeyPair();
  const ids = await ctx.relays.with(relay, (c) => c.newQueue(rcvAuth, rcvDh.publicKey)).catch((e: unknown) => {
    const refused = e instanceof CommandError ? NEW_REFUSED[e.error] : undefined;
    throw refused ? new ContactError(refused, { cause: e }) : e;
  });
  const rcvDhSecret = sharedKey(crypto, rcvDh.privateKey, ids.srvDhKey, 'relay recipient');
  if (!rcvDhSecret) throw new ContactError('the relay sent a bad key');
  return { relay, rcvId: ids.rcvId, sndId: ids.sndId, rcvAuth, rcvDhSecret };
}

export async function createInvitation(ctx: Context, profile: Profile): Promise<{ contact: Contact; link: string }> {
  const contact = await newContact(ctx, 'inviter', 'invited', profile);
  ctx.contacts.set(contact.id, contact);
  await save(ctx, { contacts: [contact] });
  const link = formatInvitation({ relay: contact.rcv.relay, sndId: contact.rcv.sndId, e2eKey: contact.e2e.key.publicKey });
  return { contact, link };
}

/**
 * Accepts a link: my queue, secured, stored with the hello in the outbox, then
 * `beforeHello` (which sets up its notifier, so that the inviter's answer wakes
 * a sleeping device), then the hello goes. A hello that cannot go now is sent
 * again later; one the relay refuses (the invitation was used or withdrawn)
 * deletes the contact.
 */
export async function acceptInvitation(
  ctx: Context,
  link: string,
  profile: Profile,
  outbox: Outbox,
  beforeHello: (c: Contact) => Promise<void>,
): Promise<Contact> {
  const inv = parseInvitation(link);
  if (!inv.ok) throw new ContactError(`not an invitation: ${inv.error}`);
  return firstMessage(ctx, inv.value, 'invitation', profile, outbox, beforeHello, (contact, replyKey) => {
    const sndAuth = ctx.crypto.x25519KeyPair();
    contact.snd = { relay: inv.value.relay, sndId: inv.value.sndId, sndAuthKey: sndAuth.privateKey };
    return {
      type: 'hello',
      name: contact.myName,
      replyRelay: contact.rcv.relay,
      replySndId: contact.rcv.sndId,
      replySndKey: replyKey.privateKey,
      sndAuthKey: sndAuth.publicKey,
    };
  });
}

/**
 * The acceptor's (or requester's) side: my queue, secured at once with a key I
 * give the other side in the first message; the contact stored with that
 * message in its outbox; then `before` (which sets up the notifier, so that
 * the answer wakes a sleeping device); then the first message goes, unsigned
 * (the other side's queue is not secured for me). One that cannot go now is
 * sent again later; one the relay refuses (the link was used or withdrawn)
 * deletes the contact.
 */
export async function firstMessage(
  ctx: Context,
  to: Invitation,
  kind: 'invitation' | 'contact address',
  profile: Profile,
  outbox: Outbox,
  before: (c: Contact) => Promise<void>,
  content: (c: Contact, replyKey: KeyPair) => Content,
): Promise<Contact> {
  const { crypto } = ctx;
  if (!isValidPublicKey(to.e2eKey)) throw new ContactError(`the ${kind} holds a bad key`);
  const request = kind === 'contact address';
  const contact = await newContact(ctx, 'acceptor', request ? 'requested' : 'accepted', profile);
  const ratchet = initRatchet(crypto, 'acceptor', contact.e2e.key, to.e2eKey, request ? 'e2e request' : 'e2e');
  if (!ratchet) throw new ContactError(`the ${kind} holds a bad key`);
  const replyKey = crypto.x25519KeyPair();
  await ctx.relays.with(contact.rcv.relay, (c) => c.secure(contact.rcv.rcvId, contact.rcv.rcvAuth.privateKey, replyKey.publicKey));
  const { envelope, ratchet: next } = encrypt(crypto, ratchet, encodeContent(content(contact, replyKey)), contact.e2e.key.publicKey);
  contact.e2e.ratchet = next;
  ctx.contacts.set(contact.id, contact);
  const m = outgoing(ctx, contact, request ? 'request' : 'hello', envelope, true, { relay: to.relay, sndId: to.sndId });
  await outbox.add(contact, m);
  await before(contact);
  if ((await outbox.flush(contact.id, m.id)) === 'failed') {
    await deleteContact(ctx, contact, outbox);
    throw new ContactError(request ? 'the contact address is no longer in use' : 'the invitation was used already or withdrawn');
  }
  return contact;
}

/**
 * Seals one content for a connected contact (under the contact's lock) and
 * puts it in the outbox, stored with the advanced ratchet: a message key is
 * never used twice, and the message is not lost if it cannot go now.
 */
export async function sealContent(
  ctx: Context,
  contact: Contact,
  content: Extract<Content, { type: 'text' | 'call' | 'call-reply' }>,
  notify: boolean,
  outbox: Outbox,
): Promise<OutgoingMessage> {
  if (contact.state !== 'ready') throw new ContactError('the contact is not connected yet');
  const { envelope, ratchet } = encrypt(ctx.crypto, contact.e2e.ratchet!, encodeContent(content));
  contact.e2e.ratchet = ratchet;
  const m = outgoing(ctx, contact, content.type, envelope, notify);
  await outbox.add(contact, m);
  return m;
}

function sendEnvelope(ctx: Context, snd: NonNullable<Contact['snd']>, envelope: Uint8Array, notify: boolean): Promise<unknown> {
  return ctx.relays.with(snd.relay, (c) => c.send(snd.sndId, envelope, { notify, sndAuthKey: snd.sndAuthKey }));
}

/**
 * Handles one MSG from the contact's receive queue (under the contact's lock);
 * once it resolves, the caller ACKs the message. Returns what it meant, or
 * undefined for a redelivery or a message that cannot be read (dropped,
 * reported through ctx.fail).
 */
export async function receive(
  ctx: Context,
  contact: Contact,
  relay: RelayClient,
  msg: { msgId: Uint8Array; sealed: Uint8Array },
): Promise<ChatEvent | undefined> {
  const opened = openEnvelope(ctx, contact, msg, 'a received message was dropped');
  if (!opened) return undefined;
  const { msgId, ts, envelope, drop } = opened;
  const ratchet =
    contact.state === 'invited'
      ? envelope.firstKey && initRatchet(ctx.crypto, 'inviter', contact.e2e.key, envelope.firstKey)
      : contact.e2e.ratchet;
  if (!ratchet) return drop(contact.state === 'invited' && envelope.firstKey ? 'the first message carries a bad key' : 'no key to open it with');
  const d = decrypt(ctx.crypto, ratchet, envelope);
  if (!d.ok) {
    if (d.error !== 'duplicate') return drop(d.error);
    remember(contact, msgId);
    await save(ctx, { contacts: [contact] });
    return undefined;
  }
  const content = decodeContent(d.content);
  let event: ChatEvent | undefined;
  const c = content.ok ? content.value : undefined;
  if (c?.type === 'hello' && contact.state === 'invited') {
    if (!parseAddress(c.replyRelay).ok) return drop('the hello names no valid relay');
    // A key of small order would secure my queue with a key whose authenticators anyone can make.
    if (!isValidPublicKey(c.sndAuthKey)) return drop('the hello carries a bad sender key');
    // Secure my queue with the acceptor's key, then send the ready on its queue;
    // only once both are done does the contact change and get stored. A failure
    // or a crash leaves the hello unacknowledged, to be handled again from the
    // start: KEY with the same key repeats harmlessly, and the ready — the same
    // name, sealed from the same ratchet — is byte for byte the same message, so
    // no message key ever seals two plaintexts.
    const snd = { relay: c.replyRelay, sndId: c.replySndId, sndAuthKey: c.replySndKey };
    const ready = encrypt(ctx.crypto, d.ratchet, encodeContent({ type: 'ready', name: contact.myName }));
    await relay.secure(contact.rcv.rcvId, contact.rcv.rcvAuth.privateKey, c.sndAuthKey);
    await sendEnvelope(ctx, snd, ready.envelope, true);
    // Only these fields: lifecycle work may have changed others (ntf) meanwhile.
    Object.assign(contact, { snd, name: c.name, state: 'ready' as const });
    contact.e2e.ratchet = ready.ratchet;
    event = { type: 'contact', contactId: contact.id, msgId, name: c.name };
  } else {
    contact.e2e.ratchet = d.ratchet; // an authentic message: its key is used up, whatever it says
    if (c?.type === 'ready' && contact.state === 'accepted') {
      contact.name = c.name;
      contact.state = 'ready';
      event = { type: 'contact', contactId: contact.id, msgId, name: c.name };
    } else if (c?.type === 'answer' && contact.state === 'requested') {
      // The owner's answer: its new queue for me, and a fresh key the chains start again from.
      if (!parseAddress(c.relay).ok) return drop('the answer names no valid relay');
      const fresh = initRatchet(ctx.crypto, 'acceptor', contact.e2e.key, c.e2eKey);
      if (!fresh) return drop('the answer carries a bad key');
      Object.assign(contact, { snd: { relay: c.relay, sndId: c.sndId, sndAuthKey: c.sndKey }, name: c.name, state: 'ready' as const });
      contact.e2e.ratchet = fresh;
      event = { type: 'contact', contactId: contact.id, msgId, name: c.name };
    } else if (c?.type === 'text' && contact.state === 'ready') {
      contact.unread++;
      event = { type: 'message', contactId: contact.id, msgId, text: c.text, sentAt: c.sentAt, receivedAt: ts };
    } else if (c?.type === 'call' && contact.state === 'ready') {
      contact.unread++;
      event = ringing(ctx, contact, { ...c, msgId, receivedAt: ts });
    } else if (c?.type === 'call-reply' && contact.state === 'ready') {
      event = { type: 'callReply', contactId: contact.id, msgId, callId: b64(c.callId), reply: c.reply };
    } else drop(content.ok ? `a ${content.value.type} message does not fit a contact in state ${contact.state}` : content.error);
  }
  remember(contact, msgId);
  await save(ctx, { contacts: [contact] });
  return event;
}

/**
 * The first steps with a MSG on a queue of mine: undefined for a redelivery
 * (its ID in `seen`) or one that does not open with the queue's key or hold an
 * envelope (dropped: reported as `dropped`, with why); else the envelope, and
 * `drop` for what the caller finds wrong with it.
 */
export function openEnvelope(ctx: Context, r: Receiver, msg: { msgId: Uint8Array; sealed: Uint8Array }, dropped: string) {
  const msgId = b64(msg.msgId);
  const drop = (why: string): undefined => void ctx.fail(dropped, new ContactError(why));
  if (r.seen.includes(msgId)) return undefined;
  const m = openMessage(ctx.crypto, r.rcv.rcvDhSecret, msg);
  if (!m) return drop('it does not open with the queue key');
  const env = readEnvelope(m.body);
  if (!env.ok) return drop(env.error);
  return { msgId, ts: m.ts, envelope: env.value, drop };
}

/** Calls kept ringing per contact, for the actions on their notifications. */
const RINGING = 8;

/** The call's event; a call still ringing is kept (for its answer or decline) until it expires. */
function ringing(
  ctx: Context,
  contact: Contact,
  c: Extract<Content, { type: 'call' }> & { msgId: string; receivedAt: number },
): Extract<ChatEvent, { type: 'call' }> {
  const event = {
    type: 'call' as const,
    contactId: contact.id,
    msgId: c.msgId,
    callId: b64(c.callId),
    media: c.media,
    sentAt: c.sentAt,
    receivedAt: c.receivedAt,
    expiresAt: c.receivedAt + c.ringMs,
  };
  const now = ctx.now();
  const calls = (contact.calls ?? []).filter((x) => x.expiresAt > now && x.id !== event.callId);
  if (event.expiresAt > now) calls.push({ id: event.callId, media: c.media, expiresAt: event.expiresAt });
  contact.calls = calls.slice(-RINGING);
  return event;
}

export const ackMessage = (relay: RelayClient, r: Receiver, msgId: Uint8Array) => relay.ack(r.rcv.rcvId, r.rcv.rcvAuth.privateKey, msgId);

export function remember(r: Receiver, msgId: string): void {
  keepLast(r.seen, msgId);
}

/** Adds an item to a list of the latest SEEN items. */
export function keepLast(list: string[], item: string): void {
  list.push(item);
  if (list.length > SEEN) list.splice(0, list.length - SEEN);
}

/**
 * GETs, handles and ACKs the contact's waiting messages until the queue is
 * empty or `deadline` passes (a device woken by a push). Each ACK goes with
 * the next GET in one block: one round trip per message. Stops without error
 * when the queue is subscribed on this client's connection (the messages
 * come by SUB) or the contact was deleted meanwhile.
 */
export function fetchMessages(ctx: Context, contact: Receiver, deadline: number, out: InboxEvent[], receive: Handler): Promise<void> {
  return ctx.locks.run(contact.id, async () => {
    const { rcv } = contact;
    if (ctx.now() >= deadline || !isCurrent(ctx, contact)) return;
    const relay = await ctx.relays.get(rcv.relay);
    const get = () => relay.get(rcv.rcvId, rcv.rcvAuth.privateKey);
    let msg;
    try {
      msg = await get();
    } catch (e) {
      if (e instanceof CommandError && e.error === 'PROHIBITED') return;
      throw e;
    }
    while (msg) {
      const event = await receive(ctx, contact, relay, msg);
      if (event) out.push(event);
      const more = ctx.now() < deadline && isCurrent(ctx, contact);
      [, msg] = await Promise.all([ackMessage(relay, contact, msg.msgId), more ? get() : undefined]);
    }
  });
}

/** Deletes my queue for the contact or the address (the relay drops its notifier too), the record and a contact's unsent messages. */
export async function deleteContact(ctx: Context, contact: Receiver, outbox: Outbox): Promise<void> {
  await ctx.locks.run(contact.id, async () => {
    try {
      await ctx.relays.with(contact.rcv.relay, (c) => c.deleteQueue(contact.rcv.rcvId, contact.rcv.rcvAuth.privateKey));
    } catch (e) {
      // Already gone at the relay: nothing more to delete there.
      if (!(e instanceof CommandError && e.error === 'AUTH')) throw e;
    }
    if (contact.id === ADDRESS_ID) ctx.address = undefined;
    else ctx.contacts.delete(contact.id);
    await save(ctx, { deleted: [contact.id], outboxDone: outbox.forget(contact.id) });
  });
}
