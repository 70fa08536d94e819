// The chat's service worker (served as /sw.js, scope /): the browser's push
// handler. A push (its data is the SDK's push as base64url text) goes to
// whoever owns the SDK state:
//
// - a chat page that is open owns it (it holds CLIENT_LOCK for its life): its
//   HushClient is online and its records in memory are the truth. A second
//   HushClient here on the same IndexedDB store would advance the same hash
//   ratchets and write records over the page's (two writers of one ratchet
//   corrupt it: spent keys, lost messages), so the push is posted to the page,
//   which handles it and shows notifications itself when hidden;
// - otherwise this worker takes the lock, opens its own HushClient on the
//   store, handles the push, shows the notifications it returns, and closes.
//
// A notification's button (a call's Answer / Decline, a contact request's
// Accept / Reject) goes the same way: to
// the page's client, else to one opened here (performAction needs no start()).
// A store encrypted at rest opens only with its passphrase, which the worker
// does not have: then it shows a notification that asks to open the chat.
import { PassphraseError, type HushClient } from '../sdk/index.ts';
import {
  ACTION_MESSAGE,
  actionInput,
  CLIENT_LOCK,
  History,
  loadConfig,
  OPEN_MESSAGE,
  openStoreClient,
  PAGE_REPLY_MS,
  performAndRecord,
  PUSH_MESSAGE,
  showGenericNotification,
  showNotification,
  WORKER_DEADLINE_MS,
  type NotificationData,
  type WebConfig,
} from './push-bridge.ts';

// The service worker global scope, as much of it as is used (tsconfig's lib is DOM, not WebWorker).
interface ExtendableEvent extends Event {
  waitUntil(p: Promise<unknown>): void;
}
interface PushEvent extends ExtendableEvent {
  readonly data: { text(): string } | null;
}
interface NotificationEvent extends ExtendableEvent {
  readonly notification: Notification;
  /** The button picked ('' for the notification itself). */
  readonly action: string;
}
interface WindowClient {
  readonly url: string;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  focus(): Promise<WindowClient>;
}
interface ServiceWorkerScope {
  readonly registration: ServiceWorkerRegistration;
  readonly clients: {
    matchAll(o: { type: 'window'; includeUncontrolled: boolean }): Promise<readonly WindowClient[]>;
    openWindow(url: string): Promise<WindowClient | null>;
    claim(): Promise<void>;
  };
  skipWaiting(): Promise<void>;
  addEventListener(type: 'install' | 'activate', fn: (e: ExtendableEvent) => void): void;
  addEventListener(type: 'push', fn: (e: PushEvent) => void): void;
  addEventListener(type: 'notificationclick', fn: (e: NotificationEvent) => void): void;
}
const sw = self as unknown as ServiceWorkerScope;

sw.addEventListener('install', (e) => e.waitUntil(sw.skipWaiting()));
sw.addEventListener('activate', (e) => e.waitUntil(sw.clients.claim()));

/** The stack's config, fetched once per worker (again after a failed fetch). */
let config: Promise<WebConfig> | undefined;
const stackConfig = () =>
  (config ??= loadConfig().catch((e: unknown) => {
    config = undefined;
    throw e;
  }));

// One push at a time: each one's HushClient is closed before the next opens.
// The chain never rejects, so one push that fails does not skip the ones after it.
let pushes: Promise<void> = Promise.resolve();

sw.addEventListener('push', (event) => {
  const data = event.data?.text() ?? '';
  const done = pushes.then(() =>
    onPush(data).catch(async (e) => {
      console.error('hush: handling a push failed', e);
      await showGenericNotification(sw.registration);
    }),
  );
  pushes = done.catch(() => {});
  event.waitUntil(done);
});

/** What the worker posts to the chat page for its client to do. */
type PageMessage = { type: string } & Record<string, unknown>;

/** Handles a push where the SDK state is: in the chat page that owns it, else here. */
const onPush = (data: string) =>
  byOwner({ type: PUSH_MESSAGE, data }, () =>
    withClient(async (client) => {
      const shown = await client.handlePush(data, { deadlineMs: WORKER_DEADLINE_MS });
      for (const n of shown) await showNotification(sw.registration, n, client);
    }, 'New message: open Hush to read it'),
  );

/**
 * Runs `here` holding CLIENT_LOCK if no chat page owns the SDK state, else
 * posts `message` to the page. A page that is going away never answers, and
 * its lock frees as it goes: whichever comes first, its answer or the lock.
 */
async function byOwner(message: PageMessage, here: () => Promise<void>): Promise<void> {
  const handledHere = await navigator.locks.request(CLIENT_LOCK, { ifAvailable: true }, async (lock) => {
    if (!lock) return false; // a chat page owns the SDK state
    await here();
    return true;
  });
  if (handledHere) return;
  const timeout = AbortSignal.timeout(PAGE_REPLY_MS);
  const pageAnswered = new AbortController();
  const workerTook = new AbortController();
  const byPage = postToPage(message, AbortSignal.any([timeout, workerTook.signal])).then((ok) => {
    if (ok) pageAnswered.abort();
    return ok;
  });
  const lockWait = AbortSignal.any([timeout, pageAnswered.signal]);
  const byWorker = navigator.locks
    .request(CLIENT_LOCK, { signal: lockWait }, async () => {
      workerTook.abort();
      await here();
      return true;
    })
    .catch((e: unknown) => {
      if (lockWait.aborted && !workerTook.signal.aborted) return false; // the page answered, or nobody in time
      throw e;
    });
  const [page, worker] = await Promise.all([byPage, byWorker]);
  if (!page && !worker) throw new Error('the chat page did not take it');
}

/**
 * Opens a client on the store for `work`, recording what it receives in the
 * history, and closes it. An encrypted store cannot be opened here: the
 * notification `locked` asks the user to open the chat instead.
 */
async function withClient(work: (client: HushClient, history: History) => Promise<void>, locked: string): Promise<void> {
  let client: HushClient;
  try {
    client = await openStoreClient(await stackConfig());
  } catch (e) {
    if (!(e instanceof PassphraseError)) throw e;
    return showGenericNotification(sw.registration, locked);
  }
  const history = await History.open();
  try {
    history.record(client); // the texts, for the chat page to show when opened
    await work(client, history);
  } finally {
    // closed whatever happened: the lock is released when this returns
    await client.close().catch((e: unknown) => console.error('hush: closing the client failed', e));
    await history.close();
  }
}

const chatWindows = async () =>
  (await sw.clients.matchAll({ type: 'window', includeUncontrolled: true })).filter((c) => new URL(c.url).pathname === '/');

/** Posts `message` to the open chat pages; true once one says it handled it, false if none does before `stop`. */
async function postToPage(message: PageMessage, stop: AbortSignal): Promise<boolean> {
  const windows = await chatWindows();
  if (windows.length === 0 || stop.aborted) return false;
  return new Promise<boolean>((resolve) => {
    stop.addEventListener('abort', () => resolve(false), { once: true });
    for (const w of windows) {
      const channel = new MessageChannel();
      channel.port1.onmessage = (e: MessageEvent<{ ok: boolean }>) => resolve(e.data.ok);
      w.postMessage(message, [channel.port2]);
    }
  });
}

sw.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data as Partial<NotificationData> | null;
  const contactId = data?.contactId;
  const input = actionInput(event.action, data);
  event.waitUntil(
    (async () => {
      if (input) {
        await byOwner({ type: ACTION_MESSAGE, ...input }, () =>
          withClient(
            (client, history) => performAndRecord(client, history, input),
            input.requestId ? 'Open Hush to answer the contact request' : 'Open Hush to answer the call',
          ),
        ).catch((e: unknown) => console.error('hush: the notification action failed', e));
        if (input.action !== 'answer-call' && input.action !== 'accept-contact') return; // declined, rejected: nothing to open
      }
      // the chat (answered: where its call screen would be; accepted: the new contact, whose ID is the request's)
      const [open] = await chatWindows();
      if (open) {
        open.postMessage({ type: OPEN_MESSAGE, contactId });
        await open.focus().catch(() => {}); // refused without the click's user activation: the chat is open anyway
      } else await sw.clients.openWindow(typeof contactId === 'string' ? `/?chat=${encodeURIComponent(contactId)}` : '/');
    })(),
  );
});
