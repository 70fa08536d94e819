// What the chat page (chat.ts) and its service worker (sw.ts) share: the
// stack's config, the names of the stores and of the lock that says who owns
// the SDK state, the push deadlines, the message history, and how a
// notification is shown. The simulator uses the config and the push feed too.
import { IndexedDbStore, type HushClient, type Notification as HushNotification } from '../sdk/index.ts';
import type { PushEvent, WebConfig } from '../stack/web.ts';

export type { PushEvent, WebConfig };

/** The SDK's IndexedDB database (keys, ratchets, token: one HushClient at a time). */
export const STORE = 'hush-chat';
/** Message texts (the SDK stores none), written by the page and by the service worker. */
export const HISTORY = 'hush-chat-history';
/**
 * Web Lock held by whoever has a HushClient open on STORE: the chat page for
 * as long as it is open, the service worker while it handles a push. Two
 * clients on one store would both advance the same ratchets and overwrite
 * each other's records, so never two at a time.
 */
export const CLIENT_LOCK = 'hush-chat-client';
/** Service worker → chat page: a push for the page to handle (reply on the port when done). */
export const PUSH_MESSAGE = 'hush-push';
/** Service worker → chat page: the user clicked a notification of this chat. */
export const OPEN_MESSAGE = 'hush-open';

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

export interface HistoryEntry {
  contactId: string;
  from: 'me' | 'them';
  text: string;
  /** Local time it was sent or received (ms): the order shown. */
  at: number;
}

/** Message history in IndexedDB, one record per message under `m:<contactId>:<time>:<id>`. */
export class History {
  private readonly pending = new Set<Promise<void>>();

  private constructor(private readonly store: IndexedDbStore) {}

  static async open(): Promise<History> {
    return new History(await IndexedDbStore.open(HISTORY));
  }

  /** Adds a message; the same id again replaces it (a redelivery). */
  add(id: string, e: HistoryEntry): Promise<void> {
    const key = `m:${e.contactId}:${String(e.at).padStart(15, '0')}:${id}`;
    const p = this.store.write([[key, JSON.stringify(e)]]).finally(() => this.pending.delete(p));
    this.pending.add(p);
    return p;
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
    client.on('call', (c) => add(c.msgId, { contactId: c.contactId, from: 'them', text: `Incoming ${c.media} call`, at: c.receivedAt }));
  }

  /** Waits for the writes in progress, then closes the database. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    await this.store.close();
  }
}

/** Shows one of the SDK's notifications: one per chat (tag = thread), the contact in `data`. */
export async function showNotification(reg: ServiceWorkerRegistration, n: HushNotification): Promise<void> {
  await reg.showNotification(n.title, { body: n.body, tag: n.threadId, data: { contactId: n.contactId, badge: n.badge } });
  // the unread count on the app icon, where the platform has one (installed web apps)
  const nav = navigator as Navigator & { setAppBadge?: (n: number) => Promise<void> };
  await nav.setAppBadge?.(n.badge).catch(() => {});
}

/**
 * Browsers require a visible notification for every push: this one when the
 * push could not be handled. Never rejects (no permission: nothing to show).
 */
export async function showGenericNotification(reg: ServiceWorkerRegistration): Promise<void> {
  if (typeof Notification !== 'undefined' && Notification.permission !== 'granted') return;
  try {
    await reg.showNotification('Hush', { body: 'New message', tag: 'hush' });
  } catch (e) {
    console.error('hush: cannot show a notification', e);
  }
}
