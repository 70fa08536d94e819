// What the chat page (chat.ts) and its service worker (sw.ts) share: the
// stack's config, the names of the stores and of the lock that says who owns
// the SDK state, the push deadlines, the message history, and how a
// notification is shown. The simulator uses the config and the push feed too.
import {
  EncryptedStore,
  IndexedDbStore,
  openIndexedDbClient,
  type ActionInput,
  type ClientStore,
  type HushClient,
  type HushEvents,
  type Notification as HushNotification,
} from '../sdk/index.ts';
import { InFlight } from '../sdk/lock.ts';
import type { PushEvent, WebConfig } from '../stack/web.ts';
import { wordsOf } from './words.ts';

export type { PushEvent, WebConfig };

/** The SDK's IndexedDB database (keys, ratchets, token: one HushClient at a time). */
const STORE = 'hush-chat';
/** Message texts (the SDK stores none), written by the page and by the service worker. */
const HISTORY = 'hush-chat-history';
/** Page settings the service worker reads too (the language): in clear, apart from the history, which a passphrase encrypts. */
const PREFS = 'hush-chat-prefs';
/**
 * Web Lock held by whoever has a HushClient open on STORE: the chat page for
 * as long as it is open, the service worker while it handles a push. Two
 * clients on one store would both advance the same ratchets and overwrite
 * each other's records; the SDK's own store lock (IndexedDbStore's Web Lock
 * `hush-store:hush-chat`) already makes the second wait. This one says who
 * handles a push: the worker asks for it without waiting, and posts the push
 * to the page that has it.
 */
export const CLIENT_LOCK = 'hush-chat-client';
/** Service worker → chat page: a push for the page to handle (reply on the port when done). */
export const PUSH_MESSAGE = 'hush-push';
/** Service worker → chat page: the user clicked a notification of this chat. */
export const OPEN_MESSAGE = 'hush-open';
/** Service worker → chat page: the user picked a notification's button (the page performs it; reply on the port). */
export const ACTION_MESSAGE = 'hush-action';

// Deadlines of a push (browsers give a push event about 30 s). The page
// handles a push the worker posts to it within PAGE_DEADLINE_MS, clearly
// before the worker gives up waiting (PAGE_REPLY_MS) and shows a generic
// notification: never both the page's notifications and the generic one.
/** How long the service worker's own client fetches messages for a push. */
export const WORKER_DEADLINE_MS = 20_000;
/** How long the chat page's client fetches messages for a push. */
export const PAGE_DEADLINE_MS = 20_000;
/** How long the service worker waits for the chat page to say it handled a push. */
export const PAGE_REPLY_MS = 25_000;

/** GET /api/config of the local stack. */
export async function loadConfig(): Promise<WebConfig> {
  const res = await fetch('/api/config', { cache: 'no-store' });
  if (!res.ok) throw new Error(`GET /api/config: ${res.status}`);
  return (await res.json()) as WebConfig;
}

/**
 * Opens the stack's push feed (/api/pushes: every push the test servers
 * accept) and calls `onPush` for each; resolves once the feed is open. Open it
 * before registering a token: the verification push follows TNEW at once.
 * A feed that does not open in `timeoutMs` (or that the server refuses) is
 * closed and the promise rejects.
 */
export function openPushFeed(onPush: (p: PushEvent) => void, timeoutMs = 10_000): Promise<EventSource> {
  return new Promise((resolve, reject) => {
    const feed = new EventSource('/api/pushes');
    let opened = false;
    const fail = (why: string) => {
      clearTimeout(timer);
      feed.close();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail('the push feed /api/pushes did not open'), timeoutMs);
    feed.addEventListener('open', () => {
      if (opened) return; // opened again after a lost connection
      opened = true;
      clearTimeout(timer);
      resolve(feed);
    });
    // before it opens, an error the browser will not retry (readyState CLOSED) ends it; others are retried until the timeout
    feed.addEventListener('error', () => {
      if (!opened && feed.readyState === EventSource.CLOSED) fail('cannot open the push feed /api/pushes');
    });
    feed.addEventListener('message', (e: MessageEvent<string>) => {
      let p: PushEvent;
      try {
        p = JSON.parse(e.data) as PushEvent;
      } catch {
        return;
      }
      onPush(p);
    });
  });
}

/** A client on STORE for the stack, speaking the chosen language. */
export async function openStoreClient(config: WebConfig, opts: { name?: string; passphrase?: string } = {}): Promise<HushClient> {
  const words = wordsOf(await pref('language'));
  return openIndexedDbClient(STORE, { relays: [config.relay], ntfServer: config.ntf, words, ...opts });
}

async function withPrefs<T>(fn: (store: IndexedDbStore) => Promise<T>): Promise<T> {
  const store = await IndexedDbStore.open(PREFS);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** A page setting (the language). */
export const pref = (name: string) => withPrefs((s) => s.get(name));
export const setPref = (name: string, value: string) => withPrefs((s) => s.write([[name, value]]));

type MessageState = HushEvents['messageStatus']['state'];

export interface HistoryEntry {
  contactId: string;
  from: 'me' | 'them';
  text: string;
  /** Local time it was sent or received (ms): the order shown. */
  at: number;
  /** Mine: the SDK's message ID, its state in the outbox (and why it failed), and whether it went without a push. */
  messageId?: string;
  state?: MessageState;
  error?: string;
  silent?: boolean;
  /** A call: its ID, until when it rings (theirs), and the answer given. */
  callId?: string;
  expiresAt?: number;
  reply?: 'answer' | 'decline';
}

/** Message history in IndexedDB, one record per message under `m:<contactId>:<time>:<id>`. */
export class History {
  private readonly writes = new InFlight();

  private constructor(private readonly store: ClientStore) {}

  /** The history; encrypted at rest under `passphrase` (the store's) if given. */
  static async open(passphrase?: string): Promise<History> {
    const raw = await IndexedDbStore.open(HISTORY);
    if (!passphrase) return new History(raw);
    try {
      await raw.write((await raw.keys('pref:')).map((k) => [k, undefined] as const)); // settings kept here before PREFS
      return new History(await EncryptedStore.open(raw, passphrase));
    } catch (e) {
      await raw.close();
      throw e;
    }
  }

  /** Adds a message; the same id again replaces it (a redelivery). */
  add(id: string, e: HistoryEntry): Promise<void> {
    const key = `m:${e.contactId}:${String(e.at).padStart(15, '0')}:${id}`;
    return this.writes.track(this.store.write([[key, JSON.stringify(e)]]));
  }

  /** Changes my message `messageId` (its state). */
  setState(contactId: string, messageId: string, patch: Pick<HistoryEntry, 'state' | 'error'>): Promise<void> {
    return this.patch(contactId, (e) => e.from === 'me' && e.messageId === messageId, patch);
  }

  /** Records the user's answer to a ringing call of theirs (picked on its notification or in the chat). */
  answered(contactId: string, callId: string, reply: 'answer' | 'decline'): Promise<void> {
    return this.patch(contactId, (e) => e.from === 'them' && e.callId === callId, { reply });
  }

  private async patch(contactId: string, match: (e: HistoryEntry) => boolean, patch: Partial<HistoryEntry>): Promise<void> {
    for (const key of await this.store.keys(`m:${contactId}:`)) {
      const v = await this.store.get(key);
      const e = v ? (JSON.parse(v) as HistoryEntry) : undefined;
      if (e && match(e)) return this.store.write([[key, JSON.stringify({ ...e, ...patch })]]);
    }
  }

  /** Deletes every message (wipe). */
  async clear(): Promise<void> {
    await this.store.write((await this.store.keys('m:')).map((k) => [k, undefined] as const));
  }

  async list(contactId: string): Promise<HistoryEntry[]> {
    const out: HistoryEntry[] = [];
    for (const key of await this.store.keys(`m:${contactId}:`)) {
      const v = await this.store.get(key);
      if (v) out.push(JSON.parse(v) as HistoryEntry);
    }
    return out;
  }

  /** Records the client's received messages and calls; `then` runs after each is written. */
  record(client: HushClient, then: (contactId: string) => void = () => {}): void {
    const add = (id: string, e: HistoryEntry) =>
      void this.add(id, e).then(
        () => then(e.contactId),
        () => then(e.contactId),
      );
    client.on('message', (m) => add(m.msgId, { contactId: m.contactId, from: 'them', text: m.text, at: m.receivedAt }));
    client.on('call', (c) =>
      add(c.msgId, { contactId: c.contactId, from: 'them', text: `Incoming ${c.media} call`, at: c.receivedAt, callId: c.callId, expiresAt: c.expiresAt }),
    );
    client.on('callReply', (r) =>
      add(r.msgId, { contactId: r.contactId, from: 'them', text: r.reply === 'answer' ? 'answered the call' : 'declined the call', at: Date.now() }),
    );
  }

  /** Waits for the writes in progress, then closes the database. */
  async close(): Promise<void> {
    await this.writes.settled();
    await this.store.close();
  }
}

/** A notification button as an ActionInput, from what a notification or a message carried (only its string IDs are taken). */
export function actionInput(action: unknown, data: { contactId?: unknown; callId?: unknown; requestId?: unknown } | null | undefined): ActionInput | undefined {
  if (typeof action !== 'string' || !action || typeof data?.contactId !== 'string') return undefined;
  return {
    action: action as ActionInput['action'],
    contactId: data.contactId,
    ...(typeof data.callId === 'string' ? { callId: data.callId } : {}),
    ...(typeof data.requestId === 'string' ? { requestId: data.requestId } : {}),
  };
}

/** Carries out a notification's button; a call's answer goes into the history. */
export async function performAndRecord(client: HushClient, history: History, input: ActionInput): Promise<void> {
  await client.performAction(input);
  if (input.callId) await history.answered(input.contactId, input.callId, input.action === 'answer-call' ? 'answer' : 'decline');
}

/** What a shown notification carries in `data`: where a click leads, what its buttons answer. */
export interface NotificationData {
  contactId: string;
  profileId: string;
  callId?: string;
  /** A contact request's (its buttons accept or reject it). */
  requestId?: string;
  badge: number;
}

/**
 * Shows one of the SDK's notifications: one per chat (tag = thread), its IDs in
 * `data`, its actions as buttons; the profile's name after the title when the
 * client has several (not with preview hidden: it names no one).
 */
export async function showNotification(reg: ServiceWorkerRegistration, n: HushNotification, client: HushClient): Promise<void> {
  const profiles = client.profiles();
  const profile = profiles.length > 1 && client.previewMode !== 'hidden' ? profiles.find((p) => p.id === n.profileId)?.name : undefined;
  const data: NotificationData = {
    contactId: n.contactId,
    profileId: n.profileId,
    badge: n.badge,
    ...(n.callId ? { callId: n.callId } : {}),
    ...(n.requestId ? { requestId: n.requestId } : {}),
  };
  // `actions` is in the Notifications API but not in TypeScript's DOM types
  const options: NotificationOptions & { actions?: Array<{ action: string; title: string }> } = {
    body: n.body,
    tag: n.threadId,
    data,
    ...(n.actions ? { actions: n.actions.map((a) => ({ action: a.id, title: a.title })), requireInteraction: true } : {}),
  };
  await reg.showNotification(profile ? `${n.title} · ${profile}` : n.title, options);
  // the unread count on the app icon, where the platform has one (installed web apps)
  const nav = navigator as Navigator & { setAppBadge?: (n: number) => Promise<void> };
  await nav.setAppBadge?.(n.badge).catch(() => {});
}

/**
 * Browsers require a visible notification for every push: this one when the
 * push could not be handled. Never rejects (no permission: nothing to show).
 */
export async function showGenericNotification(reg: ServiceWorkerRegistration, body = 'New message'): Promise<void> {
  if (typeof Notification !== 'undefined' && Notification.permission !== 'granted') return;
  try {
    await reg.showNotification('Hush', { body, tag: 'hush' });
  } catch (e) {
    console.error('hush: cannot show a notification', e);
  }
}
