// HushClient: the SDK's one entry point for an app (docs/sdk.md). Contacts by
// invitation, end-to-end encrypted messages, the notification lifecycle and
// the push handler. Runtime-neutral: the store, the WebSocket and the crypto
// come through seams (src/sdk/node.ts fills them for Node).
import { publicAddress } from '../core/address.ts';
import type { KeepaliveOptions, WebSocketFactory } from '../core/client.ts';
import { nobleCrypto } from '../core/crypto/noble.ts';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { NtfClient } from '../ntf/client.ts';
import { MIN_CRON_MINUTES, type SubStatus, type TokenStatus } from '../ntf/protocol.ts';
import type { DeviceToken } from '../push/device.ts';
import { RelayClient } from '../relay/client.ts';
import { renderSVG } from 'uqr';
import { acceptRequest, addressLink, createAddress, DEFAULT_MAX_REQUESTS, rejectRequest, sendContactRequest } from './address.ts';
import { ConnectionPool } from './connections.ts';
import {
  acceptInvitation,
  ContactError,
  createInvitation,
  deleteContact,
  sealContent,
  type ChatEvent,
  type InboxEvent,
  type RequestEvent,
} from './contacts.ts';
import { b64, receivers, save, type Context } from './context.ts';
import { Emitter } from './events.ts';
import { KeyedLock, WriteGate } from './lock.ts';
import { Notifications } from './notifications.ts';
import {
  buildNotifications,
  DEFAULT_DEADLINE_MS,
  fetchAll,
  readPush,
  unreadCount,
  type Notification,
  type PushPayload,
} from './push-handler.ts';
import { DEFAULT_OUTBOX_TTL_MS, Outbox, type MessageState, type MessageStatus } from './outbox.ts';
import { Online } from './online.ts';
import { REAL_TIMERS, type Timers } from '../ntf/timers.ts';
import { newProfile, profileList, profileOf } from './profiles.ts';
import { DEFAULT_SETTINGS, loadState } from './load.ts';
import type { Contact, ContactState, NotificationMode, OutgoingMessage, PreviewMode, Receiver } from './records.ts';
import { StoreLockError, type ReleaseLock, type StoreLock } from './store/lock.ts';
import type { ClientStore } from './store/store.ts';
import { CALL_ID_LENGTH, nameBytes, type CallMedia } from './content.ts';
import { MAX_CONTENT_BYTES } from './e2e.ts';
import { ACTIONS, type ActionInput, type CallAnswered } from './actions.ts';
import { wordsWith, type Words } from './words.ts';

export interface HushClientOptions {
  store: ClientStore;
  /** close() closes the store too (it was opened for this client). Default: the store stays open. */
  closeStore?: boolean;
  /** The store's one-writer lock, held from open (or reload) to close (or suspend). Default: the store's own (`store.lock`), if any. */
  lock?: StoreLock;
  /** How long open() and reload() wait for the lock. Default 10 s. */
  lockTimeoutMs?: number;
  /**
   * Relays to make this client's receive queues on (pinned addresses); one is picked per contact.
   * A relay's creation password goes in its address (hush://fp:password@host:port): sent in NEW, never handed to contacts.
   */
  relays: string[];
  /**
   * The notification server for the device token (pinned address); none: no notifications.
   * Its creation password, if it has one, goes in the address: sent in TNEW, not kept with the token.
   */
  ntfServer?: string;
  /** The active profile's display name, sent to contacts when connecting. Stored; later opens may omit it. */
  name?: string;
  webSocket?: WebSocketFactory;
  crypto?: CryptoSuite;
  /** Per-command timeout. Default 15 s. */
  timeoutMs?: number;
  /** Probes of quiet server links: a dead one is closed and reconnected. Default: PING after 10 s of quiet, closed 10 s later. */
  keepalive?: Partial<KeepaliveOptions> | false;
  /** How often a started client runs checkNotifications(). Default 1 h. */
  checkIntervalMs?: number;
  /** How long an unsent message is tried again before it fails. Default 2 days. */
  outboxTtlMs?: number;
  /** Most contact requests kept waiting for an answer; further ones are refused. Default 32. */
  maxContactRequests?: number;
  now?: () => number;
  /** The timers of retries and reconnects (a test's clock). Default: the real ones. */
  timers?: Timers;
  /** The words notifications are made of, where they differ from DEFAULT_WORDS (the user's language). */
  words?: Partial<Words>;
}

/** What send() and call() give back: the message's ID (its messageStatus events carry it) and its state after the first try. */
export interface SentMessage {
  messageId: string;
  state: MessageState;
}

export interface ContactInfo {
  id: string;
  profileId: string;
  name: string;
  state: ContactState;
  /** Notifications on for this contact (off = muted). */
  notifications: boolean;
  /** Its subscription's status at the notification server, as last seen. */
  subscription?: SubStatus;
  unread: number;
}

export interface ContactRequestInfo {
  id: string;
  /** The name the requester gives ('' if none). */
  name: string;
  receivedAt: number;
}

export type HushEvents = {
  /** A message arrived while the client was started (online). */
  message: Extract<ChatEvent, { type: 'message' }>;
  call: Extract<ChatEvent, { type: 'call' }>;
  /** The contact answered or declined a call of mine. */
  callReply: Extract<ChatEvent, { type: 'callReply' }>;
  /** The user answered a call from its notification (performAction): the app starts the call screen. */
  callAnswered: CallAnswered;
  /** A contact got connected. */
  contact: Extract<ChatEvent, { type: 'contact' }>;
  /** A contact request came to my address (online or from handlePush). */
  contactRequest: RequestEvent;
  /** What the device would show for an online event (an app in the background shows it). */
  notification: Notification;
  /** The device token's status changed; undefined: no token (mode off). */
  tokenStatus: TokenStatus | undefined;
  /** A sent message is waiting (pending), was taken by the relay (sent) or given up (failed). */
  messageStatus: MessageStatus;
  /** Background work failed (reconnects, subscription repair); never carries keys or IDs. */
  error: { what: string; error: unknown };
  /** The store's lock was taken away (another process found it stale): the client is suspended; reload() takes the store again. */
  lockLost: StoreLockError;
};

function checkName(name: string): string {
  nameBytes(name);
  return name;
}

/** How long a call rings unless the caller says otherwise, and the range it may say. */
export const DEFAULT_RING_MS = 60_000;
const RING_MS = { min: 1000, max: 600_000 };

export interface ProfileInfo {
  id: string;
  name: string;
  /** New contacts go to it unless another is named. */
  active: boolean;
  /** Unread messages in its chats. */
  unread: number;
}
const LOCK_TIMEOUT_MS = 10_000;
const SUSPEND_TIMEOUT_MS = 5_000;

const sameStatus = (a: TokenStatus | undefined, b: TokenStatus | undefined) =>
  a?.status === b?.status && (a as { reason?: string } | undefined)?.reason === (b as { reason?: string } | undefined)?.reason;

export class HushClient extends Emitter<HushEvents> {
  private readonly ctx: Context;
  private readonly notifications: Notifications;
  private readonly outbox: Outbox;
  private readonly online: Online;
  private readonly timers: Timers;
  private checkTimer: ReturnType<typeof setInterval> | undefined;
  /** Holds the store (its lock): methods work. False while suspended and once closed. */
  private held = false;
  private closed = false;
  private release: ReleaseLock | undefined;
  /** Started when suspended (or when the lock was lost): reload() starts it again. */
  private resume = false;
  /** suspend, reload and close, one at a time. */
  private transitions: Promise<unknown> = Promise.resolve();

  private constructor(private readonly opts: HushClientOptions) {
    super();
    this.timers = opts.timers ?? REAL_TIMERS;
    const crypto = opts.crypto ?? nobleCrypto;
    const common = {
      crypto,
      timeoutMs: opts.timeoutMs ?? 15_000,
      ...(opts.webSocket ? { webSocket: opts.webSocket } : {}),
      ...(opts.keepalive !== undefined ? { keepalive: opts.keepalive } : {}),
    };
    // Connections and records know a relay by its public address; the connection gets the password.
    const withPassword = new Map(opts.relays.map((a) => [publicAddress(a), a]));
    // The same for the notification server (its password goes in TNEW).
    const ntfServer = opts.ntfServer === undefined ? undefined : publicAddress(opts.ntfServer);
    this.ctx = {
      crypto,
      store: opts.store,
      relays: new ConnectionPool((address, onClose) =>
        RelayClient.connect(withPassword.get(address) ?? address, {
          ...common,
          onEvent: (e) => this.online.relayEvent(address, e),
          onClose: () => {
            onClose();
            this.online.relayClosed(address);
          },
        }).then((r) => {
          this.outbox.relayUp(address);
          return r;
        }),
      ),
      ntf: new ConnectionPool((address, onClose) =>
        NtfClient.connect(address === ntfServer ? opts.ntfServer! : address, { ...common, onClose }),
      ),
      relayAddresses: [...withPassword.keys()],
      ntfServer,
      settings: { ...DEFAULT_SETTINGS },
      profiles: new Map(),
      token: undefined,
      contacts: new Map(),
      outbox: new Map(),
      address: undefined,
      requests: new Map(),
      maxRequests: opts.maxContactRequests ?? DEFAULT_MAX_REQUESTS,
      locks: new KeyedLock(),
      writes: new WriteGate(),
      words: wordsWith(opts.words),
      openChat: undefined,
      now: opts.now ?? Date.now,
      fail: (what, error) => this.emit('error', { what, error }),
    };
    this.notifications = new Notifications(this.ctx, { status: (s) => this.emit('tokenStatus', s) });
    this.outbox = new Outbox(this.ctx, this.timers, opts.outboxTtlMs ?? DEFAULT_OUTBOX_TTL_MS, (s) => this.emit('messageStatus', s));
    this.online = new Online(this.ctx, this.timers, {
      accepting: () => this.held,
      received: (event) => void this.announce([event]).catch((e) => this.ctx.fail('announcing a received message failed', e)),
    });
  }

  /**
   * A client on a store opened for it: the store is closed with the client,
   * or at once if the client cannot open (openNodeClient, openIndexedDbClient).
   */
  static async openOwning(store: ClientStore, opts: Omit<HushClientOptions, 'store' | 'closeStore'>): Promise<HushClient> {
    try {
      return await HushClient.open({ ...opts, store, closeStore: true });
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  /**
   * Takes the store's lock (waiting up to lockTimeoutMs) and loads the
   * client's state from it (a new store: a new identity-less client).
   */
  static async open(opts: HushClientOptions): Promise<HushClient> {
    if (opts.name !== undefined) checkName(opts.name);
    const client = new HushClient(opts);
    await client.take(opts.lockTimeoutMs ?? LOCK_TIMEOUT_MS);
    try {
      const active = profileOf(client.ctx);
      if (opts.name !== undefined) active.name = opts.name;
      await save(client.ctx, { settings: true, profiles: [active] });
    } catch (e) {
      await client.letGo();
      throw e;
    }
    return client;
  }

  // ---- the store: held from open (or reload) to close (or suspend)

  /** Takes the lock, then reads settings, token and contacts: in memory they are the truth until the lock is given up. */
  private async take(timeoutMs: number): Promise<void> {
    const lock = this.opts.lock ?? this.opts.store.lock;
    let release: ReleaseLock | undefined;
    release = lock ? await lock.acquire({ timeoutMs, onLost: (e) => this.release === release && this.lost(e) }) : async () => {};
    let migrated: Contact[] | undefined;
    try {
      const state = await loadState(this.opts.store, this.ctx.crypto, this.ctx.now());
      ({ migrated } = state);
      Object.assign(this.ctx, state);
    } catch (e) {
      await release();
      throw e;
    }
    this.release = release;
    this.ctx.relays.reopen();
    this.ctx.ntf.reopen();
    this.ctx.writes.reopen();
    this.held = true;
    // A first profile was made (a new store, or one from before profiles): stored with the contacts moved into it.
    if (migrated) await save(this.ctx, { settings: true, profiles: this.ctx.profiles.values(), contacts: migrated });
  }

  /** Once the writes in flight are done, gives the lock up. */
  private async letGo(): Promise<void> {
    this.held = false;
    const release = this.release;
    this.release = undefined;
    await this.ctx.writes.close();
    await release?.();
  }

  /** The lock was taken away: nothing more may be written, at once; the app is told. */
  private lost(e: StoreLockError): void {
    if (!this.held) return;
    this.held = false;
    this.release = undefined;
    this.resume = this.online.started;
    this.halt();
    void this.ctx.writes.close();
    this.cut();
    this.emit('lockLost', e);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.transitions.then(fn);
    this.transitions = p.catch(() => {});
    return p;
  }

  /** Methods that write or talk to servers need the store. */
  private using(): void {
    if (this.closed) throw new StoreLockError('the client is closed');
    if (!this.held) throw new StoreLockError('the client is suspended: reload() takes the store again');
  }

  /**
   * Gives the store up for another process (a push extension), as an app going
   * to the background does: waits for work in progress to settle (at most
   * timeoutMs, default 5 s), then stops all network activity and releases the
   * lock. What still runs then fails at its next write or command (nothing it
   * did is lost: a message not stored is not ACKed, a state not stored is not
   * sent). Until reload(), methods reject with a StoreLockError; the getters
   * keep the state as it was.
   */
  suspend(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.serially(async () => {
      if (!this.held) return;
      this.held = false; // online messages arriving from now on are left at the relay
      this.resume = this.online.started;
      this.halt();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.ctx.locks.idle(), new Promise((r) => (timer = setTimeout(r, opts.timeoutMs ?? SUSPEND_TIMEOUT_MS)))]);
      clearTimeout(timer);
      this.cut();
      await this.letGo();
    });
  }

  /**
   * Takes the store again after suspend() (or a lost lock), waiting up to
   * timeoutMs (default lockTimeoutMs): reads settings, token and contacts
   * anew, with whatever another process changed meanwhile (a tokenStatus event
   * if the token's status changed), and starts the client again if it was
   * started. Does nothing while the client holds the store.
   */
  reload(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.serially(async () => {
      if (this.closed) throw new StoreLockError('the client is closed');
      if (this.held) return;
      await this.ctx.locks.idle(); // work that suspend cut off has failed by now
      const before = this.tokenStatus;
      await this.take(opts.timeoutMs ?? this.opts.lockTimeoutMs ?? LOCK_TIMEOUT_MS);
      if (!sameStatus(before, this.tokenStatus)) this.emit('tokenStatus', this.tokenStatus);
      if (this.resume) await this.start();
    });
  }

  /** No server connection until the store is taken again: commands fail, none is opened. */
  private cut(): void {
    this.ctx.relays.close();
    this.ctx.ntf.close();
  }

  /** The active profile's display name ('' if none was given yet). */
  get name(): string {
    return profileOf(this.ctx).name;
  }

  /** Changes a profile's display name (the active one's by default); its contacts made from now on get it (each keeps the name it was made with). */
  async setName(name: string, profileId?: string): Promise<void> {
    this.using();
    const p = profileOf(this.ctx, profileId);
    p.name = checkName(name);
    await save(this.ctx, { profiles: [p] });
  }

  // ---- profiles

  /** Every profile, oldest first. */
  profiles(): ProfileInfo[] {
    const unread = new Map<string, number>();
    for (const c of this.ctx.contacts.values()) unread.set(c.profileId, (unread.get(c.profileId) ?? 0) + c.unread);
    return profileList(this.ctx).map((p) => ({ id: p.id, name: p.name, active: p.id === this.ctx.settings.activeProfile, unread: unread.get(p.id) ?? 0 }));
  }

  get activeProfile(): string {
    return this.ctx.settings.activeProfile;
  }

  /** A new profile with its own name and contacts (it does not become the active one); returns its ID. */
  async createProfile(name: string): Promise<string> {
    this.using();
    const p = newProfile(this.ctx, checkName(name));
    await save(this.ctx, { profiles: [p] });
    return p.id;
  }

  /** The profile new contacts go to unless another is named. */
  async setActiveProfile(profileId: string): Promise<void> {
    this.using();
    this.ctx.settings.activeProfile = profileOf(this.ctx, profileId).id;
    await save(this.ctx, { settings: true });
  }

  /**
   * Deletes a profile: each contact's subscription and queue (as deleteContact;
   * what the servers cannot be reached for is reported and deleted here all
   * the same), its outbox and records; the contact address if it is the
   * profile's, and its pending requests. The last profile cannot go alone:
   * that is wipe(). Another profile becomes active if this one was.
   */
  async deleteProfile(profileId: string): Promise<void> {
    this.using();
    const p = profileOf(this.ctx, profileId);
    if (this.ctx.profiles.size === 1) return this.wipe();
    await this.deleteReceivers(receivers(this.ctx).filter((c) => c.profileId === p.id));
    const requests = [...this.ctx.requests.values()].filter((r) => r.profileId === p.id).map((r) => r.id);
    for (const id of requests) this.ctx.requests.delete(id);
    this.ctx.profiles.delete(p.id);
    if (this.ctx.settings.activeProfile === p.id) this.ctx.settings.activeProfile = profileList(this.ctx)[0]!.id;
    await save(this.ctx, { deletedProfiles: [p.id], deletedRequests: requests, settings: true });
  }

  /**
   * Deletes everything: every contact and the address (as deleteProfile), the
   * device token at the notification server (TDEL), then every record in the
   * store. The client goes on as a new one: one empty profile, default
   * settings, no device token.
   */
  async wipe(): Promise<void> {
    this.using();
    await this.deleteReceivers(receivers(this.ctx));
    await this.notifications.setMode('off').catch((e) => this.ctx.fail('deleting the device token failed', e));
    const { store } = this.ctx;
    const keys = await store.keys('');
    await this.ctx.writes.run(() => store.write(keys.map((k) => [k, undefined] as const)));
    this.ctx.outbox.clear();
    this.ctx.requests.clear();
    this.ctx.profiles.clear();
    this.ctx.token = undefined;
    this.ctx.settings = { ...DEFAULT_SETTINGS, activeProfile: newProfile(this.ctx, '').id };
    await save(this.ctx, { settings: true, profiles: this.ctx.profiles.values() });
  }

  /** deleteContact for each at once; one whose servers cannot be reached is reported, and deleted here all the same. */
  private async deleteReceivers(list: Receiver[]): Promise<void> {
    const results = await Promise.allSettled(list.map((c) => this.deleteReceiver(c)));
    const failed = list.filter((_, i) => results[i]!.status === 'rejected');
    for (const r of results) if (r.status === 'rejected') this.ctx.fail('deleting a contact at its servers failed', r.reason);
    if (!failed.length) return;
    for (const c of failed) if (c === this.ctx.address) this.ctx.address = undefined;
    else this.ctx.contacts.delete(c.id);
    await save(this.ctx, { deleted: failed.map((c) => c.id), outboxDone: failed.flatMap((c) => this.outbox.forget(c.id)) });
  }

  // ---- contacts and messages

  /** A new contact (in the active profile, or the one named) waiting for the other side, and the one-time link to give them. */
  async createInvitation(opts: { profileId?: string } = {}): Promise<{ contactId: string; link: string }> {
    this.using();
    const { contact, link } = await createInvitation(this.ctx, profileOf(this.ctx, opts.profileId));
    await this.contactAdded(contact);
    return { contactId: contact.id, link };
  }

  /** Accepts a link: the contact is connected once the inviter answers (a 'contact' event). */
  async acceptInvitation(link: string, opts: { profileId?: string } = {}): Promise<string> {
    this.using();
    const contact = await acceptInvitation(this.ctx, link, profileOf(this.ctx, opts.profileId), this.outbox, (c) => this.contactAdded(c));
    return contact.id;
  }

  // ---- contact address and contact requests

  /**
   * My contact address's link (`hush-address:…`), made now (for the active
   * profile, or the one named) if there is none: anyone with it may send a
   * contact request; contacts accepted through it join that profile.
   */
  async createAddress(opts: { profileId?: string } = {}): Promise<string> {
    this.using();
    if (!this.ctx.address) await this.contactAdded(await createAddress(this.ctx, profileOf(this.ctx, opts.profileId)));
    return this.address!;
  }

  /** The contact address's link; undefined: none. */
  get address(): string | undefined {
    return this.ctx.address && addressLink(this.ctx.address);
  }

  /** The contact address's link as a QR code: SVG markup (a ContactError if there is no address). */
  addressQr(): string {
    const link = this.address;
    if (!link) throw new ContactError('there is no contact address');
    return renderSVG(link, { ecc: 'M', border: 4 });
  }

  /** Deletes the address queue (its link stops working); contacts made through it and pending requests stay. */
  async deleteAddress(): Promise<void> {
    this.using();
    if (this.ctx.address) await this.deleteReceiver(this.ctx.address);
  }

  /**
   * Sends a contact request to an address link: a new contact (in the active
   * profile, or the one named) in state `requested`, connected (a 'contact'
   * event) once the owner accepts.
   */
  async sendContactRequest(link: string, opts: { profileId?: string } = {}): Promise<string> {
    this.using();
    const contact = await sendContactRequest(this.ctx, link, profileOf(this.ctx, opts.profileId), this.outbox, (c) => this.contactAdded(c));
    return contact.id;
  }

  /** Contact requests to my address waiting for an answer, oldest first. */
  contactRequests(): ContactRequestInfo[] {
    return [...this.ctx.requests.values()]
      .sort((a, b) => a.receivedAt - b.receivedAt)
      .map((r) => ({ id: r.id, name: r.name, receivedAt: r.receivedAt }));
  }

  /** Accepts a request: a new contact (with the request's ID), connected for me at once and for the requester when the answer arrives. */
  async acceptContactRequest(requestId: string): Promise<string> {
    this.using();
    const contact = await acceptRequest(this.ctx, requestId, this.outbox, (c) => this.contactAdded(c));
    return contact.id;
  }

  /** Drops a request; the requester is told nothing. */
  async rejectContactRequest(requestId: string): Promise<void> {
    this.using();
    await rejectRequest(this.ctx, requestId);
  }

  private async contactAdded(c: Receiver): Promise<void> {
    if (this.online.started) await this.online.subscribe([c]);
    await this.notifications.sync().catch((e) => this.ctx.fail('subscribing a new contact failed', e));
  }

  contacts(): ContactInfo[] {
    return [...this.ctx.contacts.values()]
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((c) => ({
        id: c.id,
        profileId: c.profileId,
        name: c.name,
        state: c.state,
        notifications: c.ntf.enabled,
        ...(c.ntf.subStatus ? { subscription: c.ntf.subStatus } : {}),
        unread: c.unread,
      }));
  }

  private contact(id: string): Contact {
    this.using();
    const c = this.ctx.contacts.get(id);
    if (!c) throw new ContactError('no such contact');
    return c;
  }

  /**
   * Sends a text message; the contact must be connected (state 'ready'), else
   * a ContactError. Resolves once the message is stored in the outbox and
   * tried once: sent, pending (it goes later, messageStatus tells) or failed.
   * `notify: false`: no push wakes the recipient (receipts, edits, a "don't notify" choice).
   */
  async send(contactId: string, text: string, opts: { notify?: boolean } = {}): Promise<SentMessage> {
    const c = this.contact(contactId);
    if (new TextEncoder().encode(text).length > MAX_CONTENT_BYTES - 9) throw new ContactError('the message is too long');
    return this.sendContent(c, { type: 'text', sentAt: this.ctx.now(), text }, opts.notify ?? true);
  }

  /**
   * Sends a call invitation that rings for `ringMs` (the signalling itself is
   * the app's); resolves like send(), with its callId, which the contact's `callReply` names.
   */
  async call(contactId: string, media: CallMedia = 'audio', opts: { ringMs?: number } = {}): Promise<SentMessage & { callId: string }> {
    const c = this.contact(contactId);
    const ringMs = opts.ringMs ?? DEFAULT_RING_MS;
    if (!Number.isInteger(ringMs) || ringMs < RING_MS.min || ringMs > RING_MS.max)
      throw new RangeError(`a call rings for ${RING_MS.min}–${RING_MS.max} ms`);
    const callId = this.ctx.crypto.randomBytes(CALL_ID_LENGTH);
    const sent = await this.sendContent(c, { type: 'call', sentAt: this.ctx.now(), media, ringMs, callId }, true);
    return { ...sent, callId: b64(callId) };
  }

  private async sendContent(c: Contact, content: Parameters<typeof sealContent>[2], notify: boolean): Promise<SentMessage> {
    const m = await this.ctx.locks.run(c.id, () => sealContent(this.ctx, c, content, notify, this.outbox));
    return { messageId: m.id, state: (await this.outbox.flush(c.id, m.id)) ?? 'pending' };
  }

  /** The contact's messages not yet taken by its relay (oldest first): their IDs, kinds, when sent and tries so far. */
  pendingMessages(contactId: string): Array<{ messageId: string; kind: OutgoingMessage['kind']; createdAt: number; attempts: number }> {
    return this.outbox.waiting(this.contact(contactId).id).map((m) => ({ messageId: m.id, kind: m.kind, createdAt: m.createdAt, attempts: m.attempts }));
  }

  /**
   * Carries out the button the user picked on a notification, with the IDs
   * it carried; works on a client that is not started. A TypeError for an
   * unknown action or missing IDs, a ContactError for a stale one.
   */
  async performAction(input: ActionInput): Promise<void> {
    const action = input?.action;
    if (action === 'accept-contact' || action === 'reject-contact') {
      if (typeof input.requestId !== 'string') throw new TypeError(`${action} needs the requestId of the request's notification`);
      if (action === 'accept-contact') await this.acceptContactRequest(input.requestId);
      else await this.rejectContactRequest(input.requestId);
      return;
    }
    const handler = Object.hasOwn(ACTIONS, input?.action) ? ACTIONS[input.action] : undefined;
    if (!handler) throw new TypeError(`unknown notification action: ${String(input?.action)}`);
    const answered = await handler(this.ctx, this.contact(input.contactId), input, this.outbox);
    if (answered) this.emit('callAnswered', answered);
  }

  /** The user read the chat: its messages leave the badge. */
  async markRead(contactId: string): Promise<void> {
    const c = this.contact(contactId);
    c.unread = 0;
    delete c.held;
    await save(this.ctx, { contacts: [c] });
  }

  /** The chat on screen (null: none): its events make no notification, online or from handlePush. */
  setOpenChat(contactId: string | null): void {
    this.ctx.openChat = contactId === null ? undefined : this.contact(contactId).id;
  }

  get openChat(): string | null {
    return this.ctx.openChat ?? null;
  }

  /** Deletes the contact: its queue at the relay (with the notifier) and its subscription. */
  deleteContact(contactId: string): Promise<void> {
    return this.deleteReceiver(this.contact(contactId));
  }

  private async deleteReceiver(c: Receiver): Promise<void> {
    const t = this.ctx.token;
    if (c.ntf.subId && t?.tokenId)
      await this.ctx.ntf.with(t.server, (n) => n.deleteSubscription(c.ntf.subId!, t.tknAuth.privateKey)).catch(() => {});
    await deleteContact(this.ctx, c, this.outbox);
  }

  get badge(): number {
    return unreadCount(this.ctx);
  }

  // ---- online: SUB to every queue, messages as they come

  /** Goes online: subscribes every receive queue; messages arrive as events. Also starts the periodic check. */
  async start(): Promise<void> {
    this.using();
    if (this.online.started) return;
    this.checkTimer = setInterval(
      () => void this.checkNotifications().catch((e) => this.ctx.fail('the periodic notification check failed', e)),
      this.opts.checkIntervalMs ?? 3_600_000,
    );
    this.outbox.flushAll();
    await this.online.start();
  }

  /** Goes offline ("asleep"): closes the relay connections; pushes then wake it through handlePush. */
  stop(): void {
    this.resume = false;
    this.halt();
    this.ctx.relays.drop();
  }

  /** No more timers: no check, no reconnect, no retry. */
  private halt(): void {
    clearInterval(this.checkTimer);
    this.online.stop();
    this.outbox.stop();
  }

  /**
   * Closes every connection and timer, once work in progress (a message being
   * handled, fetches past a push's deadline, subscription changes) has settled;
   * then releases the store's lock, and closes the store too if the client
   * owns it (closeStore). Closing again does nothing.
   */
  close(): Promise<void> {
    if (this.closed) return this.transitions.then(() => {});
    this.closed = true;
    return this.serially(async () => {
      this.stop();
      await this.ctx.locks.idle();
      this.cut();
      await this.letGo();
      if (this.opts.closeStore) await this.opts.store.close();
    });
  }

  /**
   * Online: events, then the notifications they would make. Not rate limited:
   * an app in the foreground shows none of them, and shown or not, they must
   * not hold back the push handler's.
   */
  private async announce(events: InboxEvent[]): Promise<void> {
    this.emitEvents(events);
    const shown = await buildNotifications(this.ctx, events, this.ctx.settings.preview, false);
    for (const n of shown) this.emit('notification', n);
  }

  private emitEvents(events: InboxEvent[]): void {
    for (const e of events) this.emit(e.type, e as never);
  }

  // ---- notifications

  /** The device token's status (undefined: no token registered). */
  get tokenStatus(): TokenStatus | undefined {
    return this.notifications.status;
  }

  get notificationMode(): NotificationMode {
    return this.ctx.settings.mode;
  }

  get previewMode(): PreviewMode {
    return this.ctx.settings.preview;
  }

  /**
   * The device's push token from the OS (APNs / FCM token, a Web Push
   * subscription via webPushToken(), or a token sealed to a push gateway).
   * Registers it (TNEW) or, if it changed, replaces it (TRPL); the
   * verification push that follows must be given to handlePush().
   */
  async registerDevice(device: DeviceToken): Promise<void> {
    this.using();
    return this.notifications.registerDevice(device);
  }

  /** instant (a push per message), periodic (a check push every few minutes), or off (no token). */
  async setNotificationMode(mode: NotificationMode, periodicMinutes?: number): Promise<void> {
    this.using();
    if (periodicMinutes !== undefined) {
      if (periodicMinutes < MIN_CRON_MINUTES) throw new RangeError(`periodic checks are at least ${MIN_CRON_MINUTES} minutes apart`);
      this.ctx.settings.periodicMinutes = periodicMinutes;
    }
    await this.notifications.setMode(mode);
  }

  /** The words notifications are made of: DEFAULT_WORDS with these instead (a language change names all it changes). */
  setWords(words: Partial<Words>): void {
    this.ctx.words = wordsWith(words);
  }

  get words(): Readonly<Words> {
    return this.ctx.words;
  }

  /** Whether contacts made from now on get notifications; off, they start muted. */
  get newContactNotifications(): boolean {
    return this.ctx.settings.newContactNotifications !== false;
  }

  async setNewContactNotifications(on: boolean): Promise<void> {
    this.using();
    if (typeof on !== 'boolean') throw new TypeError('setNewContactNotifications takes true or false');
    this.ctx.settings.newContactNotifications = on;
    await save(this.ctx, { settings: true });
  }

  async setPreviewMode(preview: PreviewMode): Promise<void> {
    this.using();
    this.ctx.settings.preview = preview;
    await save(this.ctx, { settings: true });
  }

  /** Notifications on or off for one contact (muting removes its subscription). */
  async setContactNotifications(contactId: string, enabled: boolean): Promise<void> {
    await this.notifications.setContactEnabled(this.contact(contactId), enabled);
  }

  /** TCHK / SCHK and repair; a started client runs it every checkIntervalMs. */
  async checkNotifications(): Promise<void> {
    this.using();
    return this.notifications.check();
  }

  /**
   * Handles a push: a verification push verifies the token; a message or
   * check push fetches the waiting messages (GET, decrypt, ACK) and returns
   * the notifications to show; the messages fetched are also emitted as
   * events, as online. Returns by `deadlineMs` with what it has; messages
   * that were being fetched then are still emitted as events when they come.
   * More chats to notify than `maxNotifications`: the most recent ones and a summary.
   */
  async handlePush(payload: PushPayload, opts: { deadlineMs?: number; maxNotifications?: number } = {}): Promise<Notification[]> {
    this.using();
    const max = opts.maxNotifications ?? Infinity;
    if (max !== Infinity && !(Number.isInteger(max) && max >= 1)) throw new RangeError('maxNotifications is a whole number, at least 1');
    const deadline = this.ctx.now() + (opts.deadlineMs ?? DEFAULT_DEADLINE_MS);
    // While a token has no secret yet, a push that does not open may be the
    // verification push outrunning the TNEW reply: it opens with the secret
    // stored once that registration is done (waited for until the deadline).
    let work = readPush(this.ctx, payload);
    if (!work && !this.ctx.token?.secret) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      work = await Promise.race([
        this.ctx.locks.run('notifications', async () => readPush(this.ctx, payload)),
        new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, deadline - this.ctx.now())))),
      ]);
      clearTimeout(timer);
    }
    if (!work) return [];
    if (work.code) {
      await this.notifications.verify(work.code);
      return [];
    }
    const events = await fetchAll(this.ctx, work.contacts, deadline, (late) => this.emitEvents(late));
    this.emitEvents(events);
    return buildNotifications(this.ctx, events, this.ctx.settings.preview, true, max);
  }
}
