// The web chat page as the browser tests drive it: open it as someone, wait
// for its DOM, send, invite.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { until } from '../ntf/helpers.ts';
import { launchBrowser, person, startWebStack } from './browser.ts';

export type HushWindow = {
  hush: {
    ready: Promise<void>;
    client?: { activeProfile: string; previewMode: string; contacts(): Array<{ id: string; profileId: string; notifications: boolean; subscription?: string }> };
  };
};
export const TIMEOUT = 20_000;

/** Opens the chat as `name`; resolves once its client is open and online. Page errors fail the test. */
export async function openChat(context: BrowserContext, url: string, name: string, fragment = ''): Promise<Page> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}?name=${encodeURIComponent(name)}${fragment}`);
  await page.evaluate(() => (window as unknown as HushWindow).hush.ready);
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

export const pageErrors = (page: Page) => (page as Page & { errors?: string[] }).errors ?? [];

/** Waits until the text of `selector` contains `text`; the failure says what was there and the page's status line. */
export async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  try {
    await page.waitForFunction(([s, t]) => document.querySelector(s!)?.textContent?.includes(t!) ?? false, [selector, text], { timeout: TIMEOUT });
  } catch {
    const found = await page.locator(selector).textContent();
    const status = await page.locator('#status').textContent();
    throw new Error(`${selector} never contained ${JSON.stringify(text)}: it has ${JSON.stringify(found)}; status line: ${JSON.stringify(status)}`);
  }
}

/** Each message as "From: text" (without its status marks). */
export const messageTexts = (page: Page) =>
  page.$$eval('#messages .message', (els) => els.map((e) => `${e.querySelector('.from')?.textContent}: ${e.querySelector('.text')?.textContent}`));

export async function send(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send');
  await waitForText(page, '#messages', `Me: ${text}`);
}

export async function invitationLink(page: Page): Promise<string> {
  await page.click('#invite');
  await waitForText(page, '#invitation', 'hush-invite:');
  return (await page.locator('#invitation').textContent())!;
}

/**
 * Headless Chromium shows every page: the test decides what the pages of
 * `context` are told of their visibility (setPageHidden), and they log the
 * notifications they show (window.shownLog).
 */
export async function controlVisibility(context: BrowserContext): Promise<void> {
  // a string: a function would be serialized as compiled, with the compiler's helpers
  await context.addInitScript(`
    let hidden = false;
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
    window.setHidden = (h) => {
      hidden = h;
      document.dispatchEvent(new Event('visibilitychange'));
    };
    window.shownLog = [];
    const show = ServiceWorkerRegistration.prototype.showNotification;
    ServiceWorkerRegistration.prototype.showNotification = function (title, o) {
      window.shownLog.push({ title, body: o.body });
      return show.call(this, title, o);
    };
  `);
}

export const setPageHidden = (page: Page, hidden: boolean) => page.evaluate((v) => (window as unknown as { setHidden(h: boolean): void }).setHidden(v), hidden);

export interface Shown {
  title: string;
  body: string;
  tag: string;
  data: unknown;
  actions: Array<{ action: string; title: string }>;
}

/** The notifications of the page's service worker registration, as the system shows them. */
export const shownNotifications = (page: Page): Promise<Shown[]> =>
  page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration('/');
    return ((await reg?.getNotifications()) ?? []).map((n) => ({
      title: n.title,
      body: n.body,
      tag: n.tag,
      data: n.data as unknown,
      actions: [...((n as Notification & { actions?: Array<{ action: string; title: string }> }).actions ?? [])].map((a) => ({ action: a.action, title: a.title })),
    }));
  });

export const waitForNotification = (page: Page, what: string, ok: (n: Shown) => boolean) =>
  until(what, async () => (await shownNotifications(page)).find(ok), TIMEOUT) as Promise<Shown>;

/** The user picks `action` on the notification tagged `tag`: the service worker's notificationclick, as the browser fires it. */
export async function clickNotification(context: BrowserContext, tag: string, action: string): Promise<void> {
  const worker = context.serviceWorkers().find((w) => w.url().endsWith('/sw.js'));
  assert.ok(worker, 'the service worker');
  await worker.evaluate(`(async () => {
    const [n] = await self.registration.getNotifications({ tag: ${JSON.stringify(tag)} });
    let done;
    const e = new Event('notificationclick');
    Object.defineProperties(e, { notification: { value: n }, action: { value: ${JSON.stringify(action)} }, waitUntil: { value: (p) => (done = p) } });
    self.dispatchEvent(e);
    await done;
  })()`);
}

/** Alice's chat, and Bob's in a context whose visibility the test controls, his service worker ready. */
export async function aliceAndWatchedBob(t: TestContext) {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const alice = await openChat(await person(browser, url), url, 'Alice');
  const bobContext = await person(browser, url);
  await controlVisibility(bobContext);
  const bob = await openChat(bobContext, url, 'Bob');
  await bob.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
  return { url, browser, alice, bob, bobContext };
}
