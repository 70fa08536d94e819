// The push handler (what iOS calls the Notification Service Extension,
// docs/sdk.md §6): opens a push with the token's secret, maps its entries to
// contacts, fetches and decrypts the waiting messages, and builds the
// notifications to show under the preview mode.
import { fromBase64Url } from '../core/encoding.ts';
import { openPush } from '../ntf/payload.ts';
import { PUSH_DATA_SIZE } from '../push/device.ts';
import { openMeta } from '../relay/client.ts';
import { receiveOn } from './address.ts';
import { fetchMessages, type ChatEvent, type InboxEvent, type RequestEvent } from './contacts.ts';
import { b64, receivers, save, type Context } from './context.ts';
import type { Contact, PreviewMode, Receiver } from './records.ts';

export type NotificationCategory = 'message' | 'contact' | 'call' | 'many' | 'request';

/** A button on a notification; the app passes its id back when the user taps it. */
export interface NotificationAction {
  id: 'answer-call' | 'reject-call' | 'accept-contact' | 'reject-contact';
  title: string;
}

/** A notification as the device shows it. */
export interface Notification {
  /** The chat's contact; for a request, the request's ID (the contact keeps it if accepted). */
  contactId: string;
  /** Notifications of one chat are grouped under this. */
  threadId: string;
  category: NotificationCategory;
  title: string;
  body: string;
  /** Events it stands for (several for 'many'). */
  count: number;
  /** Unread messages in all chats, for the app icon. */
  badge: number;
  actions?: NotificationAction[];
  /** The contact request it announces (category `request`). */
  requestId?: string;
}

/**
 * A push as the app receives it: the raw data, its base64url text (a Web Push
 * message: PushMessageData.text()) or that text's bytes, APNs's userInfo /
 * FCM's data ({ d }).
 */
export type PushPayload = Uint8Array | string | Record<string, unknown>;

/** No second notification for a chat within this long. */
export const CHAT_RATE_LIMIT_MS = 1000;
/** An iOS Notification Service Extension has about 30 s; stop fetching a little before. */
export const DEFAULT_DEADLINE_MS = 25_000;

export function pushData(p: PushPayload): Uint8Array | undefined {
  // other lengths: a Web Push message read as bytes (arrayBuffer()) rather than text
  if (p instanceof Uint8Array) return p.length === PUSH_DATA_SIZE ? p : fromBase64Url(new TextDecoder().decode(p));
  if (typeof p === 'string') return fromBase64Url(p);
  if (p && typeof p === 'object') {
    const data = p.data as Record<string, unknown> | undefined;
    const d = p.d ?? data?.d;
    if (typeof d === 'string') return fromBase64Url(d);
  }
  return undefined;
}

export interface PushWork {
  /** Verification code to verify the token with. */
  code?: Uint8Array;
  /** Contacts (and the address) whose queues to fetch. */
  contacts: Receiver[];
}

/** What a push asks for; undefined: it does not open with this device's token secret. */
export function readPush(ctx: Context, payload: PushPayload): PushWork | undefined {
  const secret = ctx.token?.secret;
  const data = pushData(payload);
  const push = secret && data && openPush(ctx.crypto, secret, data);
  if (!push) return undefined;
  if (push.kind === 'verification') return { code: push.code, contacts: [] };
  if (push.kind === 'check') return { contacts: receivers(ctx) };
  const byNotifier = new Map<string, Receiver>();
  for (const c of receivers(ctx)) if (c.ntf.notifier) byNotifier.set(b64(c.ntf.notifier.notifierId), c);
  const due = new Set<Receiver>();
  for (const e of push.entries) {
    const c = byNotifier.get(b64(e.notifierId));
    if (!c) continue; // a deleted contact, or credentials replaced since
    const meta = openMeta(ctx.crypto, c.ntf.notifier!.rcvNtfDhSecret, e);
    // Pushes repeat older entries; one whose message was fetched already needs nothing.
    if (meta && !c.seen.includes(b64(meta.msgId))) due.add(c);
  }
  return { contacts: [...due] };
}

/**
 * Fetches the contacts' messages until done or `deadline`; returns the events
 * handled by then. Messages being handled at the deadline are acknowledged
 * when done: their events go to `late`.
 */
export async function fetchAll(ctx: Context, contacts: Receiver[], deadline: number, late: (events: InboxEvent[]) => void): Promise<InboxEvent[]> {
  const events: InboxEvent[] = [];
  const work = Promise.allSettled(contacts.map((c) => fetchMessages(ctx, c, deadline, events, receiveOn))).then((rs) => {
    for (const r of rs) if (r.status === 'rejected') ctx.fail('fetching messages after a push failed', r.reason);
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = await Promise.race([work.then(() => true), new Promise<false>((r) => (timer = setTimeout(r, Math.max(0, deadline - ctx.now()), false)))]);
  clearTimeout(timer);
  const onTime = events.length;
  if (!done)
    void work
      .then(() => events.length > onTime && late(events.slice(onTime)))
      .catch((e) => ctx.fail('reporting messages fetched after the deadline failed', e));
  return events.slice(0, onTime);
}

const GENERIC: Record<Exclude<NotificationCategory, 'request'>, string> = {
  message: 'New message',
  contact: 'New contact',
  call: 'Incoming call',
  many: 'New messages',
};

/** What a contact request's notification says. */
export const REQUEST_WORDS = {
  title: 'Contact request',
  body: (name: string) => `${name || 'Someone'} wants to connect`,
  hidden: 'New contact request',
  accept: 'Accept',
  reject: 'Reject',
} as const;

/** A request's notification: never muted nor rate limited (the cap on pending requests bounds them). */
function requestNotification(e: RequestEvent, preview: PreviewMode): Omit<Notification, 'badge'> {
  const [title, body] = preview === 'hidden' ? ['Hush', REQUEST_WORDS.hidden] : [REQUEST_WORDS.title, REQUEST_WORDS.body(e.name)];
  return {
    contactId: e.requestId,
    threadId: e.requestId,
    category: 'request',
    title,
    body,
    count: 1,
    requestId: e.requestId,
    actions: [
      { id: 'accept-contact', title: REQUEST_WORDS.accept },
      { id: 'reject-contact', title: REQUEST_WORDS.reject },
    ],
  };
}

function describe(e: ChatEvent): string {
  if (e.type === 'message') return e.text;
  if (e.type === 'call') return `Incoming ${e.media} call`;
  return 'Connected';
}

/**
 * One notification per chat for the events, under the preview mode: none for
 * a muted chat, nor, with `rateLimit`, for a chat notified by the push handler
 * less than CHAT_RATE_LIMIT_MS ago — its events are held, and counted in the
 * chat's next notification ("hi (+2 more)"), so none goes unannounced.
 */
export async function buildNotifications(ctx: Context, events: InboxEvent[], preview: PreviewMode, rateLimit: boolean): Promise<Notification[]> {
  const byContact = new Map<string, ChatEvent[]>();
  const shown: Array<Omit<Notification, 'badge'>> = [];
  for (const e of events)
    if (e.type === 'contactRequest') shown.push(requestNotification(e, preview));
    else byContact.set(e.contactId, [...(byContact.get(e.contactId) ?? []), e]);
  const now = ctx.now();
  const changed = new Set<Contact>();
  for (const [id, list] of byContact) {
    const c = ctx.contacts.get(id);
    if (!c || !c.ntf.enabled) continue;
    if (rateLimit || c.held) changed.add(c);
    if (rateLimit) {
      if (now - c.lastNotifiedAt < CHAT_RATE_LIMIT_MS) {
        c.held = (c.held ?? 0) + list.length;
        continue;
      }
      c.lastNotifiedAt = now;
    }
    const count = list.length + (c.held ?? 0);
    delete c.held;
    const last = list.at(-1)!;
    const category: NotificationCategory = count > 1 ? 'many' : last.type;
    const name = c.name || 'New contact';
    const generic = category === 'many' ? `${count} new messages` : GENERIC[category];
    const [title, body] =
      preview === 'message'
        ? [name, count > 1 ? `${describe(last)} (+${count - 1} more)` : describe(last)]
        : preview === 'contact'
          ? [name, generic]
          : ['Hush', generic];
    shown.push({ contactId: id, threadId: id, category, title, body, count });
  }
  if (changed.size) await save(ctx, { contacts: changed });
  const badge = unreadCount(ctx);
  return shown.map((n) => ({ ...n, badge }));
}

export const unreadCount = (ctx: Context) => [...ctx.contacts.values()].reduce((n, c) => n + c.unread, 0);
