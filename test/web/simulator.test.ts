// The device simulator in real Chromium against the local stack: a simulated
// phone (an SDK client in the page, asleep: no SUB) registers an APNs token,
// gets connected to another person by invitation, and shows on its lock
// screen what the push path brings: relay → notification server → APNs test
// server → /api/pushes → the phone's push handler.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { until as untilWithin } from '../ntf/helpers.ts';
import { launchBrowser, pastRateLimit, person, screenshotPath, startWebStack } from './browser.ts';

const WAIT = 30_000;

interface Shown {
  title: string;
  body: string;
  category: string;
  at: number;
}

function phoneSel(name: string): string {
  return `.phone[data-name="${name}"]`;
}

/** The notifications on a phone's lock screen, newest first. */
function lockScreen(page: Page, name: string): Promise<Shown[]> {
  return page.$$eval(`${phoneSel(name)} .lock-screen .notification`, (els) =>
    els
      .map((e) => ({
        title: e.querySelector('.title')?.textContent ?? '',
        body: e.querySelector('.body')?.textContent ?? '',
        category: e.querySelector('.category')?.textContent ?? '',
        at: Number((e as HTMLElement).dataset.at),
      }))
      .sort((a, b) => b.at - a.at),
  );
}

/** Waits for `cond` to be truthy (its value: a falsy one means not yet), within WAIT. */
const until = <T>(what: string, cond: () => T | false | undefined | Promise<T | false | undefined>) => untilWithin(what, cond, WAIT) as Promise<T>;

async function waitFor(page: Page, name: string, what: string, pred: (n: Shown) => boolean): Promise<Shown> {
  return until(`${name}'s lock screen to show ${what}`, async () => (await lockScreen(page, name)).find(pred));
}

async function openSimulator(t: TestContext) {
  const { url, stack } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.clock.install(); // the phones' clock: pastRateLimit moves it on
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(new URL('/simulator', url).href);
  await page.evaluate(() => window.simulator.ready);
  return { url, stack, browser, page, errors };
}

async function addPhone(page: Page, name: string): Promise<void> {
  await page.fill('#phone-name', name);
  await page.click('#add-phone');
  await page.waitForSelector(`${phoneSel(name)} .token-status[data-status="ACTIVE"]`, { timeout: WAIT });
  assert.equal(await page.textContent(`${phoneSel(name)} .token-status`), 'ACTIVE');
}

/** Alice in the web chat (src/web/chat.ts), in a browser context of her own: online, SUBed. */
async function chatUser(browser: Browser, url: string, name: string): Promise<Page> {
  const page = await (await person(browser, url)).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}?name=${encodeURIComponent(name)}`);
  await page.evaluate(() => (window as unknown as { hush: { ready: Promise<void> } }).hush.ready);
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

const chatText = (page: Page, sel: string) => page.evaluate((s) => document.querySelector(s)?.textContent ?? '', sel);

async function chatSend(page: Page, text: string): Promise<void> {
  await page.waitForSelector('#send:not([disabled])', { timeout: WAIT });
  await page.fill('#text', text);
  await page.click('#send');
  await until(`the chat to show “${text}” as sent`, async () => (await chatText(page, '#messages')).includes(text));
}

test('a sleeping phone shows a web chat message that came by push, under its preview mode', async (t) => {
  const { url, browser, page, errors } = await openSimulator(t);
  await addPhone(page, 'Bob');
  const bob = phoneSel('Bob');

  // Alice (web chat) invites, the phone accepts. The phone sleeps: Alice's answer to its hello reaches it by push.
  const alice = await chatUser(browser, url, 'Alice');
  await alice.click('#invite');
  const link = await until('the invitation link', async () => /hush-invite:/.test(await chatText(alice, '#invitation')) && chatText(alice, '#invitation'));
  await page.fill(`${bob} .accept-link`, link);
  await page.click(`${bob} .accept`);
  const connected = await waitFor(page, 'Bob', 'Alice connected', (n) => n.category === 'contact' && n.title === 'Alice');
  assert.equal(connected.body, 'Connected');
  await until("the chat to show Bob connected", async () => /Bob/.test(await chatText(alice, '#contacts')) && /connected/.test(await chatText(alice, '#contacts')));
  assert.equal(await page.getAttribute(`${bob} .phone-contacts li`, 'data-state'), 'ready');

  await pastRateLimit(page);
  await chatSend(alice, 'hi from the chat');
  const hi = await waitFor(page, 'Bob', 'the message', (n) => n.category === 'message');
  assert.deepEqual({ title: hi.title, body: hi.body }, { title: 'Alice', body: 'hi from the chat' });
  const badge = Number(await page.textContent(`${bob} .badge`));
  assert.ok(badge >= 1, `badge ${badge}`);
  const log = await page.textContent(`${bob} .push-log`);
  assert.match(log ?? '', /alert push received/);
  assert.match(log ?? '', /handled in \d+ ms → message “Alice”/);

  // Preview hidden: neither the name nor the text on the lock screen.
  await page.selectOption(`${bob} .preview`, 'hidden');
  await until('the preview mode to be stored', () => page.evaluate(() => window.simulator.phone('Bob')?.client.previewMode === 'hidden'));
  await pastRateLimit(page);
  await chatSend(alice, 'a secret');
  const hidden = await waitFor(page, 'Bob', 'the hidden message', (n) => n.at > hi.at && n.category === 'message');
  assert.deepEqual({ title: hidden.title, body: hidden.body }, { title: 'Hush', body: 'New message' });
  assert.doesNotMatch((await page.textContent(`${bob} .lock-screen`)) ?? '', /a secret/);
  assert.ok(Number(await page.textContent(`${bob} .badge`)) >= 2);

  await page.locator(bob).screenshot({ path: screenshotPath('simulator-phone') });
  await page.screenshot({ path: screenshotPath('simulator'), fullPage: true });
  await alice.screenshot({ path: screenshotPath('simulator-chat-alice') });
  assert.deepEqual(errors, []);
  assert.deepEqual((alice as Page & { errors: string[] }).errors, []);
});

test('two sleeping phones connect by invitation and write to each other, by push only', async (t) => {
  const { page, errors } = await openSimulator(t);
  await addPhone(page, 'Bob');
  await addPhone(page, 'Carol');
  const bob = phoneSel('Bob');
  const carol = phoneSel('Carol');

  await page.click(`${bob} .invite`);
  await page.waitForSelector(`${bob} .invitation:not(:empty)`, { timeout: WAIT });
  const link = (await page.textContent(`${bob} .invitation`))!;
  assert.match(link, /^hush-invite:[A-Za-z0-9_-]+$/);
  await page.selectOption(`${carol} .preview`, 'contact');
  await page.fill(`${carol} .accept-link`, link);
  await page.click(`${carol} .accept`);
  // Bob gets Carol's hello by push, answers; Carol gets the answer by push.
  const bobSees = await waitFor(page, 'Bob', 'Carol connected', (n) => n.category === 'contact');
  assert.deepEqual({ title: bobSees.title, body: bobSees.body }, { title: 'Carol', body: 'Connected' });
  const carolSees = await waitFor(page, 'Carol', 'Bob connected', (n) => n.category === 'contact');
  assert.deepEqual({ title: carolSees.title, body: carolSees.body }, { title: 'Bob', body: 'New contact' }); // preview: contact

  await pastRateLimit(page);
  await page.waitForSelector(`${carol} .to option`, { state: 'attached', timeout: WAIT });
  await page.fill(`${carol} .compose .text`, 'lunch at noon?');
  await page.click(`${carol} .send`);
  const msg = await waitFor(page, 'Bob', "Carol's message", (n) => n.category === 'message');
  assert.deepEqual({ title: msg.title, body: msg.body }, { title: 'Carol', body: 'lunch at noon?' });
  assert.equal(await page.textContent(`${bob} .badge`), '1');

  await pastRateLimit(page);
  await page.fill(`${bob} .compose .text`, 'sure');
  await page.click(`${bob} .send`);
  const reply = await waitFor(page, 'Carol', "Bob's reply", (n) => n.category === 'message');
  assert.deepEqual({ title: reply.title, body: reply.body }, { title: 'Bob', body: 'New message' }); // preview: contact

  // Opening the app reads everything: the lock screen and the badge clear.
  await page.click(`${bob} .open-app`);
  await until('Bob\'s lock screen to clear', async () => (await lockScreen(page, 'Bob')).length === 0);
  assert.equal(await page.textContent(`${bob} .badge`), '0');
  await page.screenshot({ path: screenshotPath('simulator-two-phones'), fullPage: true });

  // The phones live in IndexedDB: after a reload they are back, registered and connected, and still get pushes.
  await page.reload();
  await page.evaluate(() => window.simulator.ready);
  for (const name of ['Bob', 'Carol']) {
    await page.waitForSelector(`${phoneSel(name)} .token-status[data-status="ACTIVE"]`, { timeout: WAIT });
    await page.waitForSelector(`${phoneSel(name)} .phone-contacts li[data-state="ready"]`, { timeout: WAIT });
  }
  await pastRateLimit(page); // Bob's chat with Carol was notified of "lunch at noon?"
  await page.fill(`${carol} .compose .text`, 'after the reload');
  await page.click(`${carol} .send`);
  const again = await waitFor(page, 'Bob', 'the message after the reload', (n) => n.category === 'message');
  assert.deepEqual({ title: again.title, body: again.body }, { title: 'Carol', body: 'after the reload' });
  assert.deepEqual(errors, []);
});

test('more chats than its max notifications: back online, a phone shows the chat handled last and one summary of the others', async (t) => {
  const { page, errors } = await openSimulator(t);
  const friends = ['Carol', 'Dave', 'Erin'];
  for (const name of ['Bob', ...friends]) await addPhone(page, name);
  const bob = phoneSel('Bob');
  let link = '';
  for (const friend of friends) {
    await page.click(`${bob} .invite`);
    const before = link;
    link = await until('a new invitation', async () => {
      const l = (await page.textContent(`${bob} .invitation`)) ?? '';
      return l !== before && l;
    });
    await page.fill(`${phoneSel(friend)} .accept-link`, link);
    await page.click(`${phoneSel(friend)} .accept`);
    await waitFor(page, 'Bob', `${friend} connected`, (n) => n.category === 'contact' && n.title === friend);
    await page.waitForSelector(`${phoneSel(friend)} .to option`, { state: 'attached', timeout: WAIT });
  }

  await page.fill(`${bob} .max-notifications`, '2');
  await page.press(`${bob} .max-notifications`, 'Tab');
  await until('the setting', async () => /max notifications: 2/.test((await page.textContent(`${bob} .push-log`)) ?? ''));
  // offline, Bob misses a push per message; the last one, which APNs keeps, carries the three chats' messages
  await page.check(`${bob} .offline`);
  for (const [i, friend] of friends.entries()) {
    await page.fill(`${phoneSel(friend)} .compose .text`, `hi from ${friend}`);
    await page.click(`${phoneSel(friend)} .send`);
    const missed = `${i + 1} push${i ? 'es' : ''} missed`;
    await until(`Bob to miss the push of ${friend}'s message`, async () => (await page.textContent(`${bob} .offline-note`)) === missed);
  }
  await pastRateLimit(page); // the chats were notified when connected
  const before = (await lockScreen(page, 'Bob')).length;
  await page.uncheck(`${bob} .offline`);
  const summary = await waitFor(page, 'Bob', 'the summary', (n) => n.category === 'summary');
  assert.deepEqual({ title: summary.title, body: summary.body }, { title: 'Hush', body: '2 new messages in 2 chats' });
  const fromThePush = (await lockScreen(page, 'Bob')).filter((n) => n.at === summary.at);
  assert.equal(fromThePush.length, 2, 'max 2: one chat and the summary');
  assert.equal((await lockScreen(page, 'Bob')).length, before + 2);
  const chat = fromThePush.find((n) => n.category === 'message');
  assert.ok(chat && friends.includes(chat.title) && chat.body === `hi from ${chat.title}`, JSON.stringify(chat));
  assert.equal(await page.textContent(`${bob} .badge`), '3');
  assert.match((await page.textContent(`${bob} .push-log`)) ?? '', /→ message “\w+”, summary “Hush”/);
  await page.locator(bob).screenshot({ path: screenshotPath('simulator-summary') });
  assert.deepEqual(errors, []);
});
