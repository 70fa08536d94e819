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
import type { Words } from './words.ts';

export type NotificationCategory = 'message' | 'contact' | 'call' | 'missed-call' | 'many' | 'summary' | 'request';

/** What a notification's buttons do: performAction() carries it out. */
export type NotificationActionId = 'answer-call' | 'reject-call' | 'accept-contact' | 'reject-contact';
export interface NotificationAction {
  id: NotificationActionId;
  /** The button's title (Words). */
  title: string;
}

/** A notification as the device shows it. */
export interface Notification {
  /** The chat; '' for a summary, which stands for several; for a request, the request's ID (the contact keeps it if accepted). */
  contactId: string;
  /** The profile the chat belongs to; '' for a summary. */
  profileId: string;
  /** Notifications of one chat are grouped under this (summaries under SUMMARY_THREAD). */
  threadId: string;
  category: NotificationCategory;
  title: string;
  body: string;
  /** Events it stands for (several for 'many' and 'summary'). */
  count: number;
  /** Unread messages in all chats, for the app icon. */
  badge: number;
  /** Buttons to show; the one the user picks goes to performAction with contactId (and callId or requestId). */
  actions?: NotificationAction[];
  /** The ringing call the actions answer or decline. */
  callId?: string;
  /** The contact request it announces (category `request`). */
  requestId?: string;
}

/** The threadId of summary notifications (contact IDs are 16 characters: never this). */
export const SUMMARY_THREAD = 'summary';

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

type Shown = Omit<Notification, 'badge'>;

const missed = (e: ChatEvent, now: number) => e.type === 'call' && e.expiresAt <= now;

function kind(e: ChatEvent, now: number): NotificationCategory {
  return missed(e, now) ? 'missed-call' : (e.type as NotificationCategory);
}

/** A request's notification: never muted nor rate limited (the cap on pending requests bounds them). */
function requestNotification(ctx: Context, e: RequestEvent, preview: PreviewMode): Shown {
  const w = ctx.words;
  const [title, body] = preview === 'hidden' ? [w.appName, w.newContactRequest] : [w.contactRequest, w.wantsToConnect(e.name)];
  return {
    contactId: e.requestId,
    profileId: ctx.requests.get(e.requestId)?.profileId ?? '',
    threadId: e.requestId,
    category: 'request',
    title,
    body,
    count: 1,
    requestId: e.requestId,
    actions: [
      { id: 'accept-contact', title: w.acceptContact },
      { id: 'reject-contact', title: w.rejectContact },
    ],
  };
}

/** The event told in full (preview `message`). */
function describe(e: ChatEvent, w: Words, now: number): string {
  if (e.type === 'message') return e.text;
  if (e.type === 'call') return missed(e, now) ? w.missedMediaCall(e.media) : w.incomingMediaCall(e.media);
  return w.connected;
}

/** The event without its content (previews `contact`, `hidden`). */
function generic(category: NotificationCategory, count: number, w: Words): string {
  const words: Partial<Record<NotificationCategory, string>> = {
    message: w.newMessage,
    call: w.incomingCall,
    'missed-call': w.missedCall,
    contact: w.newContact,
  };
  return words[category] ?? w.newMessages(count);
}

/** Answer and decline for a call still ringing: performAction takes them. */
function callActions(e: ChatEvent, w: Words, now: number): Pick<Notification, 'actions' | 'callId'> {
  if (e.type !== 'call' || missed(e, now)) return {};
  return {
    callId: e.callId,
    actions: [
      { id: 'answer-call', title: w.answerCall },
      { id: 'reject-call', title: w.rejectCall },
    ],
  };
}

/** Events that make a notification; a call reply is for the app in its call screen. */
const NOTIFIES = new Set<ChatEvent['type']>(['message', 'call', 'contact']);

/**
 * One notification per chat for the events, under the preview mode: none for
 * a muted chat or the chat open on screen, nor, with `rateLimit`, for a chat
 * notified by the push handler less than CHAT_RATE_LIMIT_MS ago — its events
 * are held, and counted in the chat's next notification ("hi (+2 more)"), so
 * none goes unannounced. More chats than `max`: the max − 1 most recent, and
 * a summary of the others.
 */
export async function buildNotifications(
  ctx: Context,
  events: InboxEvent[],
  preview: PreviewMode,
  rateLimit: boolean,
  max = Infinity,
): Promise<Notification[]> {
  const byContact = new Map<string, ChatEvent[]>();
  const shown: Shown[] = [];
  for (const e of events)
    if (e.type === 'contactRequest') shown.push(requestNotification(ctx, e, preview));
    else if (NOTIFIES.has(e.type)) byContact.set(e.contactId, [...(byContact.get(e.contactId) ?? []), e]);
  const now = ctx.now();
  const w = ctx.words;
  const changed = new Set<Contact>();
  for (const [id, list] of byContact) {
    const c = ctx.contacts.get(id);
    if (!c || !c.ntf.enabled || id === ctx.openChat) continue;
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
    const category: NotificationCategory = count > 1 ? 'many' : kind(last, now);
    const name = c.name || w.newContact;
    const [title, body] =
      preview === 'message'
        ? [name, count > 1 ? describe(last, w, now) + w.more(count - 1) : describe(last, w, now)]
        : [preview === 'contact' ? name : w.appName, generic(category, count, w)];
    shown.push({ contactId: id, profileId: c.profileId, threadId: id, category, title, body, count, ...callActions(last, w, now) });
  }
  if (changed.size) await save(ctx, { contacts: changed });
  const badge = unreadCount(ctx);
  return summarized(shown, events, max, w).map((n) => ({ ...n, badge }));
}

/** At most `max`: the chats (and requests) whose last event came last, and one summary for the rest. */
function summarized(shown: Shown[], events: InboxEvent[], max: number, w: Words): Shown[] {
  if (shown.length <= max) return shown;
  const lastAt = new Map(events.map((e, i) => [e.type === 'contactRequest' ? e.requestId : e.contactId, i]));
  const recent = [...shown].sort((a, b) => lastAt.get(b.contactId)! - lastAt.get(a.contactId)!);
  const keep = new Set(recent.slice(0, max - 1));
  const rest = shown.filter((n) => !keep.has(n));
  const count = rest.reduce((k, n) => k + n.count, 0);
  const summary: Shown = { contactId: '', profileId: '', threadId: SUMMARY_THREAD, category: 'summary', title: w.appName, body: w.summary(count, rest.length), count };
  return [...shown.filter((n) => keep.has(n)), summary];
}

export const unreadCount = (ctx: Context) => [...ctx.contacts.values()].reduce((n, c) => n + c.unread, 0);
