// A contact address (docs/sdk.md §2.1, §4.7): a long-lived queue anyone with its
// link may send a contact request to. Accepting one makes a new queue for that
// contact and answers on the requester's own queue, so the address queue never
// carries the contact's traffic and can be deleted without losing contacts.
//
//   owner                                        requester
//   NEW queue Q (not secured); link = (relay, sndId Q, address key)
//                                      ──link──▶ NEW queue B, KEY B (key kB)
//              ◀── SEND Q (unsigned): first envelope, request{B, kB private}
//   pending request … the user accepts:
//   NEW queue C, KEY C (key kC)
//   SEND B (signed kB): answer{C, kC private, fresh e2e key} ──▶
//   connected                                    connected
import { parseAddress } from '../core/address.ts';
import type { RelayClient } from '../relay/client.ts';
import { ContactError, firstMessage, keepLast, newContact, newQueue, openEnvelope, receive, remember, type Handler, type InboxEvent } from './contacts.ts';
import { decodeContent, encodeContent } from './content.ts';
import { b64, save, type Context } from './context.ts';
import { decrypt, encrypt, initRatchet } from './e2e.ts';
import { formatContactAddress, parseContactAddress } from './invitation.ts';
import { outgoing, type Outbox } from './outbox.ts';
import { profileOf } from './profiles.ts';
import { ADDRESS_ID, type AddressRecord, type Contact, type Profile, type RequestRecord } from './records.ts';

/** Most contact requests kept waiting for an answer, unless the client is given another cap. */
export const DEFAULT_MAX_REQUESTS = 32;

export async function createAddress(ctx: Context, profile: Profile): Promise<AddressRecord> {
  // Not secured with KEY: anyone with the link may SEND to it, unsigned.
  const address: AddressRecord = {
    id: ADDRESS_ID,
    profileId: profile.id,
    createdAt: ctx.now(),
    rcv: await newQueue(ctx),
    key: ctx.crypto.x25519KeyPair(),
    ntf: { enabled: true },
    seen: [],
    requesters: [],
  };
  ctx.address = address;
  await save(ctx, { contacts: [address] });
  return address;
}

export const addressLink = (a: AddressRecord) => formatContactAddress({ relay: a.rcv.relay, sndId: a.rcv.sndId, e2eKey: a.key.publicKey });

/** Sends a contact request to an address: a new contact in state `requested`, connected once the owner answers. */
export async function sendContactRequest(
  ctx: Context,
  link: string,
  profile: Profile,
  outbox: Outbox,
  beforeRequest: (c: Contact) => Promise<void>,
): Promise<Contact> {
  const a = parseContactAddress(link);
  if (!a.ok) throw new ContactError(`not a contact address: ${a.error}`);
  return firstMessage(ctx, a.value, 'contact address', profile, outbox, beforeRequest, (contact, replyKey) => ({
    type: 'request',
    name: contact.myName,
    replyRelay: contact.rcv.relay,
    replySndId: contact.rcv.sndId,
    replySndKey: replyKey.privateKey,
  }));
}

/** The queue's handler: the address's messages are requests, a contact's go to receive(). */
export const receiveOn: Handler = (ctx, r, relay, msg) =>
  r === ctx.address ? receiveRequest(ctx, ctx.address, relay, msg) : receive(ctx, r as Contact, relay, msg);

/**
 * Handles one MSG on the address queue (under the address's lock): a new
 * request is stored as pending and returned; a redelivery, a request sent
 * again (same requester key) or one over the cap is dropped. The caller ACKs.
 */
async function receiveRequest(
  ctx: Context,
  address: AddressRecord,
  _relay: RelayClient,
  msg: { msgId: Uint8Array; sealed: Uint8Array },
): Promise<InboxEvent | undefined> {
  const opened = openEnvelope(ctx, address, msg, 'a contact request was dropped');
  if (!opened) return undefined;
  const { msgId, envelope, drop } = opened;
  const key = envelope.firstKey;
  if (!key) return drop('a contact request is a first message');
  remember(address, msgId);
  if (address.requesters.includes(b64(key))) {
    await save(ctx, { contacts: [address] });
    return undefined;
  }
  const ratchet = initRatchet(ctx.crypto, 'inviter', address.key, key, 'e2e request');
  if (!ratchet) return drop('the first message carries a bad key');
  const d = decrypt(ctx.crypto, ratchet, envelope);
  if (!d.ok) return drop(d.error);
  const content = decodeContent(d.content);
  if (!content.ok) return drop(content.error);
  const c = content.value;
  if (c.type !== 'request') return drop(`a ${c.type} message is not a contact request`);
  if (!parseAddress(c.replyRelay).ok) return drop('the request names no valid relay');
  if (ctx.requests.size >= ctx.maxRequests) return drop(`${ctx.maxRequests} contact requests wait for an answer already: this one is refused`);
  const request: RequestRecord = {
    id: b64(ctx.crypto.randomBytes(12)),
    profileId: address.profileId,
    name: c.name,
    receivedAt: ctx.now(),
    key,
    reply: { relay: c.replyRelay, sndId: c.replySndId, sndAuthKey: c.replySndKey },
    ratchet: d.ratchet,
  };
  keepLast(address.requesters, b64(key));
  ctx.requests.set(request.id, request);
  await save(ctx, { contacts: [address], requests: [request] });
  return { type: 'contactRequest', requestId: request.id, name: c.name };
}

const pending = (ctx: Context, id: string) => {
  const r = ctx.requests.get(id);
  if (!r) throw new ContactError('no such contact request');
  return r;
};

/**
 * Accepts a pending request: a new queue for this contact (never the address
 * queue), secured at once; the contact (it keeps the request's ID, and joins
 * the address's profile, or the active one if that is gone) stored in place of
 * the request, with the answer to the requester's queue in its outbox;
 * `beforeAnswer` (its notifier); then the answer goes. The contact's chains
 * come from a fresh key, not the address key.
 */
export async function acceptRequest(ctx: Context, id: string, outbox: Outbox, beforeAnswer: (c: Contact) => Promise<void>): Promise<Contact> {
  const contact = await ctx.locks.run(id, async () => {
    const request = pending(ctx, id);
    const { crypto } = ctx;
    const profile = ctx.profiles.get(request.profileId) ?? profileOf(ctx);
    const contact = await newContact(ctx, 'inviter', 'ready', profile);
    const ratchet = initRatchet(crypto, 'inviter', contact.e2e.key, request.key);
    if (!ratchet) throw new ContactError('the request carries a bad key');
    const sndKey = crypto.x25519KeyPair();
    await ctx.relays.with(contact.rcv.relay, (c) => c.secure(contact.rcv.rcvId, contact.rcv.rcvAuth.privateKey, sndKey.publicKey));
    const answer = encrypt(
      crypto,
      request.ratchet,
      encodeContent({
        type: 'answer',
        name: contact.myName,
        relay: contact.rcv.relay,
        sndId: contact.rcv.sndId,
        sndKey: sndKey.privateKey,
        e2eKey: contact.e2e.key.publicKey,
      }),
    );
    Object.assign(contact, { id, name: request.name, snd: request.reply });
    contact.e2e.ratchet = ratchet;
    ctx.requests.delete(id);
    ctx.contacts.set(id, contact);
    await outbox.add(contact, outgoing(ctx, contact, 'answer', answer.envelope, true), { deletedRequests: [id] });
    return contact;
  });
  await beforeAnswer(contact);
  await outbox.flush(contact.id);
  return contact;
}

/** Drops a pending request; nothing is sent (the requester's contact stays `requested`). */
export function rejectRequest(ctx: Context, id: string): Promise<void> {
  return ctx.locks.run(id, async () => {
    pending(ctx, id);
    ctx.requests.delete(id);
    await save(ctx, { deletedRequests: [id] });
  });
}
