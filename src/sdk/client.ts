// HushClient: the SDK's one entry point for an app (docs/sdk.md). Contacts by
// invitation, end-to-end encrypted messages, the notification lifecycle and
// the push handler. Runtime-neutral: the store, the WebSocket and the crypto
// come through seams (src/sdk/node.ts fills them for Node).
import { publicAddress } from '../core/address.ts';
import { ConnectionError, type KeepaliveOptions, type WebSocketFactory } from '../core/client.ts';
import { nobleCrypto } from '../core/crypto/noble.ts';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { NtfClient } from '../ntf/client.ts';
import { MIN_CRON_MINUTES, type SubStatus, type TokenStatus } from '../ntf/protocol.ts';
import type { DeviceToken } from '../push/device.ts';
import { CommandError } from '../core/command-client.ts';
import { RelayClient, type RelayEvent } from '../relay/client.ts';
import { renderSVG } from 'uqr';
import { acceptRequest, addressLink, createAddress, DEFAULT_MAX_REQUESTS, receiveOn, rejectRequest, sendContactRequest } from './address.ts';
import { ConnectionPool } from './connections.ts';
import {
  acceptInvitation,
  ackMessage,
  ContactError,
  createInvitation,
  deleteContact,
  sendContent,
  type ChatEvent,
  type InboxEvent,
  type RequestEvent,
} from './contacts.ts';
import { b64, receivers, save, type Context } from './context.ts';
import { Emitter } from './events.ts';
import { KeyedLock } from './lock.ts';
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
import {
  deserialize,
  KEYS,
  type AddressRecord,
  type Contact,
  type ContactState,
  type NotificationMode,
  type PreviewMode,
  type Receiver,
  type RequestRecord,
  type Settings,
  type TokenRecord,
} from './records.ts';
import type { ClientStore } from './store/store.ts';
import { nameBytes, type CallMedia } from './content.ts';
import { MAX_CONTENT_BYTES } from './e2e.ts';

export interface HushClientOptions {
  store: ClientStore;
  /** close() closes the store too (it was opened for this client). Default: the store stays open. */
  closeStore?: boolean;
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
  /** The user's display name, sent to contacts when connecting. Stored; later opens may omit it. */
  name?: string;
  webSocket?: WebSocketFactory;
  crypto?: CryptoSuite;
  /** Per-command timeout. Default 15 s. */
  timeoutMs?: number;
  /** Probes of quiet server links: a dead one is closed and reconnected. Default: PING after 10 s of quiet, closed 10 s later. */
  keepalive?: Partial<KeepaliveOptions> | false;
  /** How often a started client runs checkNotifications(). Default 1 h. */
  checkIntervalMs?: number;
  /** Most contact requests kept waiting for an answer; further ones are refused. Default 32. */
  maxContactRequests?: number;
  now?: () => number;
}

export interface ContactInfo {
  id: string;
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
  /** A contact got connected. */
  contact: Extract<ChatEvent, { type: 'contact' }>;
  /** A contact request came to my address (online or from handlePush). */
  contactRequest: RequestEvent;
  /** What the device would show for an online event (an app in the background shows it). */
  notification: Notification;
  /** The device token's status changed; undefined: no token (mode off). */
  tokenStatus: TokenStatus | undefined;
  /** Background work failed (reconnects, subscription repair); never carries keys or IDs. */
  error: { what: string; error: unknown };
};

function checkName(name: string): string {
  nameBytes(name);
  return name;
}

const DEFAULT_SETTINGS: Settings = { name: '', mode: 'instant', preview: 'message', periodicMinutes: MIN_CRON_MINUTES };
const RECONNECT_MS = [250, 500, 1000, 2000, 5000, 10_000, 30_000];

export class HushClient extends Emitter<HushEvents> {
  private readonly ctx: Context;
  private readonly notifications: Notifications;
  private started = false;
  private checkTimer: ReturnType<typeof setInterval> | undefined;
  private readonly reconnects = new Map<string, ReturnType<typeof setTimeout>>();

  private constructor(
    private readonly opts: HushClientOptions,
    settings: Settings,
    token: TokenRecord | undefined,
    contacts: Map<string, Contact>,
    address: AddressRecord | undefined,
    requests: Map<string, RequestRecord>,
  ) {
    super();
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
          onEvent: (e) => this.onRelayEvent(address, e),
          onClose: () => {
            onClose();
            this.onRelayClosed(address);
          },
        }),
      ),
      ntf: new ConnectionPool((address, onClose) =>
        NtfClient.connect(address === ntfServer ? opts.ntfServer! : address, { ...common, onClose }),
      ),
      relayAddresses: [...withPassword.keys()],
      ntfServer,
      settings,
      token,
      contacts,
      address,
      requests,
      maxRequests: opts.maxContactRequests ?? DEFAULT_MAX_REQUESTS,
      locks: new KeyedLock(),
      now: opts.now ?? Date.now,
      fail: (what, error) => this.emit('error', { what, error }),
    };
    this.notifications = new Notifications(this.ctx, { status: (s) => this.emit('tokenStatus', s) });
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

  /** Loads the client's state from the store (a new store: a new identity-less client). */
  static async open(opts: HushClientOptions): Promise<HushClient> {
    const { store } = opts;
    const settingsText = await store.get(KEYS.settings);
    const settings: Settings = settingsText ? deserialize(settingsText) : { ...DEFAULT_SETTINGS };
    if (opts.name !== undefined) settings.name = checkName(opts.name);
    const tokenText = await store.get(KEYS.token);
    const load = async <T extends { id: string }>(prefix: string) => {
      const records = new Map<string, T>();
      for (const key of await store.keys(prefix)) {
        const text = await store.get(key);
        if (text) {
          const r = deserialize<T>(text);
          records.set(r.id, r);
        }
      }
      return records;
    };
    const contacts = await load<Contact>(KEYS.contact);
    const requests = await load<RequestRecord>(KEYS.request);
    const addressText = await store.get(KEYS.address);
    const address = addressText ? deserialize<AddressRecord>(addressText) : undefined;
    const client = new HushClient(opts, settings, tokenText ? deserialize(tokenText) : undefined, contacts, address, requests);
    await save(client.ctx, { settings: true });
    return client;
  }

  /** The user's display name ('' if none was given yet). */
  get name(): string {
    return this.ctx.settings.name;
  }

  /** Changes the display name; contacts made from now on get it (each keeps the name it was made with). */
  async setName(name: string): Promise<void> {
    this.ctx.settings.name = checkName(name);
    await save(this.ctx, { settings: true });
  }

  // ---- contacts and messages

  /** A new contact waiting for the other side, and the one-time link to give them. */
  async createInvitation(): Promise<{ contactId: string; link: string }> {
    const { contact, link } = await createInvitation(this.ctx);
    await this.contactAdded(contact);
    return { contactId: contact.id, link };
  }

  /** Accepts a link: the contact is connected once the inviter answers (a 'contact' event). */
  async acceptInvitation(link: string): Promise<string> {
    const contact = await acceptInvitation(this.ctx, link, (c) => this.contactAdded(c));
    return contact.id;
  }

  // ---- contact address and contact requests

  /** My contact address's link (`hush-address:…`), made now if there is none: anyone with it may send a contact request. */
  async createAddress(): Promise<string> {
    if (!this.ctx.address) await this.contactAdded(await createAddress(this.ctx));
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
    if (this.ctx.address) await this.deleteReceiver(this.ctx.address);
  }

  /**
   * Sends a contact request to an address link: a new contact in state
   * `requested`, connected (a 'contact' event) once the owner accepts.
   */
  async sendContactRequest(link: string): Promise<string> {
    let made: Contact | undefined;
    const beforeRequest = (c: Contact) => this.contactAdded((made = c));
    try {
      return (await sendContactRequest(this.ctx, link, beforeRequest)).id;
    } catch (e) {
      // AUTH on the request's SEND: the address was deleted; the contact just made for it goes too.
      if (!(made && e instanceof CommandError && e.error === 'AUTH')) throw e;
      await this.deleteReceiver(made).catch(() => {});
      throw new ContactError('the contact address is no longer in use', { cause: e });
    }
  }

  /** Contact requests to my address waiting for an answer, oldest first. */
  contactRequests(): ContactRequestInfo[] {
    return [...this.ctx.requests.values()]
      .sort((a, b) => a.receivedAt - b.receivedAt)
      .map((r) => ({ id: r.id, name: r.name, receivedAt: r.receivedAt }));
  }

  /** Accepts a request: a new contact (with the request's ID), connected for me at once and for the requester when the answer arrives. */
  async acceptContactRequest(requestId: string): Promise<string> {
    const contact = await acceptRequest(this.ctx, requestId, (c) => this.contactAdded(c));
    return contact.id;
  }

  /** Drops a request; the requester is told nothing. */
  rejectContactRequest(requestId: string): Promise<void> {
    return rejectRequest(this.ctx, requestId);
  }

  private async contactAdded(c: Receiver): Promise<void> {
    if (this.started) await this.subscribe([c]);
    await this.notifications.sync().catch((e) => this.ctx.fail('subscribing a new contact failed', e));
  }

  contacts(): ContactInfo[] {
    return [...this.ctx.contacts.values()]
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((c) => ({
        id: c.id,
        name: c.name,
        state: c.state,
        notifications: c.ntf.enabled,
        ...(c.ntf.subStatus ? { subscription: c.ntf.subStatus } : {}),
        unread: c.unread,
      }));
  }

  private contact(id: string): Contact {
    const c = this.ctx.contacts.get(id);
    if (!c) throw new ContactError('no such contact');
    return c;
  }

  /** Sends a text message; the contact must be connected (state 'ready'), else a ContactError. */
  async send(contactId: string, text: string): Promise<void> {
    const c = this.contact(contactId);
    if (new TextEncoder().encode(text).length > MAX_CONTENT_BYTES - 9) throw new ContactError('the message is too long');
    await this.ctx.locks.run(c.id, () => sendContent(this.ctx, c, { type: 'text', sentAt: this.ctx.now(), text }, true));
  }

  /** Sends a call invitation (the signalling itself is the app's). */
  async call(contactId: string, media: CallMedia = 'audio'): Promise<void> {
    const c = this.contact(contactId);
    await this.ctx.locks.run(c.id, () => sendContent(this.ctx, c, { type: 'call', sentAt: this.ctx.now(), media }, true));
  }

  /** The user read the chat: its messages leave the badge. */
  async markRead(contactId: string): Promise<void> {
    const c = this.contact(contactId);
    c.unread = 0;
    delete c.held;
    await save(this.ctx, { contacts: [c] });
  }

  /** Deletes the contact: its queue at the relay (with the notifier) and its subscription. */
  deleteContact(contactId: string): Promise<void> {
    return this.deleteReceiver(this.contact(contactId));
  }

  private async deleteReceiver(c: Receiver): Promise<void> {
    const t = this.ctx.token;
    if (c.ntf.subId && t?.tokenId)
      await this.ctx.ntf.with(t.server, (n) => n.deleteSubscription(c.ntf.subId!, t.tknAuth.privateKey)).catch(() => {});
    await deleteContact(this.ctx, c);
  }

  get badge(): number {
    return unreadCount(this.ctx);
  }

  // ---- online: SUB to every queue, messages as they come

  /** Goes online: subscribes every receive queue; messages arrive as events. Also starts the periodic check. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.checkTimer = setInterval(
      () => void this.checkNotifications().catch((e) => this.ctx.fail('the periodic notification check failed', e)),
      this.opts.checkIntervalMs ?? 3_600_000,
    );
    await this.subscribe(receivers(this.ctx));
  }

  /** Goes offline ("asleep"): closes the relay connections; pushes then wake it through handlePush. */
  stop(): void {
    this.started = false;
    clearInterval(this.checkTimer);
    for (const t of this.reconnects.values()) clearTimeout(t);
    this.reconnects.clear();
    this.ctx.relays.drop();
  }

  /**
   * Closes every connection and timer, once work in progress (a message being
   * handled, fetches past a push's deadline, subscription changes) has settled;
   * then the store too if the client owns it (closeStore).
   */
  async close(): Promise<void> {
    this.stop();
    await this.ctx.locks.idle();
    this.ctx.relays.close();
    this.ctx.ntf.close();
    if (this.opts.closeStore) await this.opts.store.close();
  }

  private subKey = (c: Receiver) => `${c.rcv.relay} ${b64(c.rcv.rcvId)}`;

  private async subscribe(contacts: Receiver[]): Promise<void> {
    const byRelay = new Map<string, Receiver[]>();
    for (const c of contacts) byRelay.set(c.rcv.relay, [...(byRelay.get(c.rcv.relay) ?? []), c]);
    await Promise.all(
      [...byRelay].map(async ([relay, list]) => {
        try {
          const r = await this.ctx.relays.get(relay);
          await Promise.all(
            list.map((c) =>
              r.subscribe(c.rcv.rcvId, c.rcv.rcvAuth.privateKey).catch((e) => {
                if (!(e instanceof ConnectionError)) this.ctx.fail('subscribing a queue failed', e);
              }),
            ),
          );
        } catch (e) {
          this.ctx.fail('connecting to a relay failed', e);
          this.scheduleReconnect(relay, 0);
        }
      }),
    );
  }

  private onRelayClosed(relay: string): void {
    if (this.started) this.scheduleReconnect(relay, 0);
  }

  private scheduleReconnect(relay: string, attempt: number): void {
    if (!this.started || this.reconnects.has(relay)) return;
    const base = RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)]!;
    const timer = setTimeout(async () => {
      this.reconnects.delete(relay);
      if (!this.started) return;
      try {
        await this.ctx.relays.get(relay);
      } catch {
        return this.scheduleReconnect(relay, attempt + 1);
      }
      await this.subscribe(receivers(this.ctx).filter((c) => c.rcv.relay === relay));
    }, base * (0.75 + Math.random() / 2));
    this.reconnects.set(relay, timer);
  }

  private onRelayEvent(relay: string, e: RelayEvent): void {
    const key = `${relay} ${b64(e.entityId)}`;
    const c = receivers(this.ctx).find((x) => this.subKey(x) === key);
    // END (another connection took the queue over) needs nothing: that one receives now.
    if (!c || e.type !== 'MSG') return;
    void this.ctx.locks
      .run(c.id, async () => {
        const r = await this.ctx.relays.get(relay);
        const event = await receiveOn(this.ctx, c, r, e);
        await ackMessage(r, c, e.msgId);
        return event;
      })
      .then((event) => event && this.announce([event]))
      .catch((err) => this.ctx.fail('handling a received message failed', err));
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
  registerDevice(device: DeviceToken): Promise<void> {
    return this.notifications.registerDevice(device);
  }

  /** instant (a push per message), periodic (a check push every few minutes), or off (no token). */
  async setNotificationMode(mode: NotificationMode, periodicMinutes?: number): Promise<void> {
    if (periodicMinutes !== undefined) {
      if (periodicMinutes < MIN_CRON_MINUTES) throw new RangeError(`periodic checks are at least ${MIN_CRON_MINUTES} minutes apart`);
      this.ctx.settings.periodicMinutes = periodicMinutes;
    }
    await this.notifications.setMode(mode);
  }

  async setPreviewMode(preview: PreviewMode): Promise<void> {
    this.ctx.settings.preview = preview;
    await save(this.ctx, { settings: true });
  }

  /** Notifications on or off for one contact (muting removes its subscription). */
  async setContactNotifications(contactId: string, enabled: boolean): Promise<void> {
    await this.notifications.setContactEnabled(this.contact(contactId), enabled);
  }

  /** TCHK / SCHK and repair; a started client runs it every checkIntervalMs. */
  checkNotifications(): Promise<void> {
    return this.notifications.check();
  }

  /**
   * Handles a push: a verification push verifies the token; a message or
   * check push fetches the waiting messages (GET, decrypt, ACK) and returns
   * the notifications to show; the messages fetched are also emitted as
   * events, as online. Returns by `deadlineMs` with what it has; messages
   * that were being fetched then are still emitted as events when they come.
   */
  async handlePush(payload: PushPayload, opts: { deadlineMs?: number } = {}): Promise<Notification[]> {
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
    return buildNotifications(this.ctx, events, this.ctx.settings.preview, true);
  }
}
