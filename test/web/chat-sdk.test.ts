// The SDK's pieces as the web chat shows them, in Chromium against the local
// stack: a message's state in the outbox and a silent send, profiles with
// their own contacts and unread counts, the notification words' language, a
// call answered from its notification's button (the service worker's
// notificationclick → performAction) and declined in the chat, a store
// encrypted with a passphrase, and wiping it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { until } from '../ntf/helpers.ts';
import { launchBrowser, person, screenshotPath, startWebStack } from './browser.ts';
import {
  aliceAndWatchedBob,
  clickNotification,
  controlVisibility,
  invitationLink,
  messageTexts,
  openChat,
  pageErrors,
  send,
  setPageHidden,
  shownNotifications,
  TIMEOUT,
  waitForNotification,
  waitForText,
  type HushWindow,
} from './chat-page.ts';

const client = (page: Page) => page.evaluate(() => {
  const c = (window as unknown as HushWindow).hush.client!;
  return { activeProfile: c.activeProfile, contacts: c.contacts() };
});

/** `invitee` accepts `inviter`'s link; both wait until connected and their tokens are ACTIVE. */
async function connect(inviter: Page, invitee: Page): Promise<void> {
  await invitee.fill('#accept-link', await invitationLink(inviter));
  await invitee.click('#accept');
  for (const p of [inviter, invitee]) {
    await waitForText(p, '#contacts .contact.selected', 'connected');
    await waitForText(p, '#token-status', 'ACTIVE');
  }
}

test('a sent message shows when the relay took it; a silent one comes without a push', async (t) => {
  const { url, stack } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const alice = await openChat(await person(browser, url), url, 'Alice');
  const bob = await openChat(await person(browser, url), url, 'Bob');
  await connect(alice, bob);
  await bob.waitForFunction(() => (window as unknown as HushWindow).hush.client?.contacts()[0]?.subscription !== undefined, undefined, { timeout: TIMEOUT });
  const pushes: string[] = [];
  stack.webpush.on('message', (m) => pushes.push(m.endpoint));

  await alice.check('#silent');
  await send(alice, 'quietly');
  await waitForText(bob, '#messages', 'Alice: quietly'); // online: no push needed
  await alice.uncheck('#silent');
  await send(alice, 'loudly');
  await waitForText(bob, '#messages', 'Alice: loudly');
  await until('the push for the message with notify', () => pushes.length > 0, TIMEOUT);
  assert.equal(pushes.length, 1, 'no push for the silent message');

  // each message is marked with its state: both taken by the relay
  await alice.waitForFunction(() => Array.from(document.querySelectorAll<HTMLElement>('#messages .message.me')).every((e) => e.dataset.state === 'sent'), undefined, { timeout: TIMEOUT });
  const marks = await alice.$$eval('#messages .message.me', (els) =>
    els.map((e) => ({ text: e.querySelector('.text')?.textContent, tick: e.querySelector('.tick')?.textContent, note: e.querySelector('.note')?.textContent ?? null })),
  );
  assert.deepEqual(marks, [
    { text: 'quietly', tick: '✓', note: 'silent' },
    { text: 'loudly', tick: '✓', note: null },
  ]);
  await alice.screenshot({ path: screenshotPath('chat-ticks') });
  assert.deepEqual([...pageErrors(alice), ...pageErrors(bob)], []);
});

test('a second profile has its own contacts; its notifications name it, in the chosen language', async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const bobContext = await person(browser, url);
  await controlVisibility(bobContext);
  const bob = await openChat(bobContext, url, 'Bob');
  const carol = await openChat(await person(browser, url), url, 'Carol');
  const home = (await client(bob)).activeProfile;

  await bob.fill('#profile-name', 'Bob at work');
  await bob.click('#add-profile');
  await bob.waitForFunction(() => (document.querySelector('#name') as HTMLInputElement).value === 'Bob at work', undefined, { timeout: TIMEOUT });
  const work = (await client(bob)).activeProfile;
  assert.notEqual(work, home);
  await connect(bob, carol);
  await waitForText(carol, '#contacts', 'Bob at work'); // the name of the profile that invited
  assert.deepEqual((await client(bob)).contacts.map((c) => c.profileId), [work]);

  // back to the first profile: none of Work's contacts
  await bob.selectOption('#profile', home);
  await bob.waitForFunction(() => document.querySelectorAll('#contacts [data-contact-id]').length === 0, undefined, { timeout: TIMEOUT });
  assert.equal(await bob.inputValue('#name'), 'Bob');

  await send(carol, 'for work');
  const n = await waitForNotification(bob, 'the notification of the Work chat', (x) => x.body === 'for work');
  assert.equal(n.title, 'Carol · Bob at work');
  assert.deepEqual(n.data, { contactId: n.tag, profileId: work, badge: 1 });
  await waitForText(bob, `#profile option[value="${work}"]`, 'Bob at work (1)');

  // notification words in French
  await bob.selectOption('#language', 'fr');
  await bob.selectOption('#preview', 'contact');
  await bob.waitForFunction(() => (window as unknown as HushWindow).hush.client?.previewMode === 'contact', undefined, { timeout: TIMEOUT });
  await send(carol, 'encore');
  await waitForNotification(bob, 'the French notification', (x) => x.body === 'Nouveau message');

  // clicking the Work profile opens it: its chat is read
  await bob.selectOption('#profile', work);
  await waitForText(bob, '#messages', 'Carol: encore');
  await waitForText(bob, `#profile option[value="${work}"]`, 'Bob at work');
  await bob.waitForFunction(() => !document.querySelector('#contacts .unread'), undefined, { timeout: TIMEOUT });
  await bob.screenshot({ path: screenshotPath('chat-profiles') });
  assert.deepEqual([...pageErrors(bob), ...pageErrors(carol)], []);
});

test('a call answered from its notification reaches the caller; one declined in the chat too', async (t) => {
  const { alice, bob, bobContext } = await aliceAndWatchedBob(t);
  await connect(alice, bob);

  await setPageHidden(bob, true);
  await alice.click('#call');
  await waitForText(alice, '#messages', 'Me: Outgoing audio call');
  const ringing = await waitForNotification(bob, 'the call notification', (x) => x.actions.length > 0);
  assert.equal(ringing.title, 'Alice');
  assert.equal(ringing.body, 'Incoming audio call');
  assert.deepEqual(ringing.actions, [
    { action: 'answer-call', title: 'Answer' },
    { action: 'reject-call', title: 'Decline' },
  ]);
  assert.equal(typeof (ringing.data as { callId?: unknown }).callId, 'string');

  // the user picks Answer
  await clickNotification(bobContext, ringing.tag, 'answer-call');
  await waitForText(alice, '#messages', 'Bob: answered the call');
  await waitForText(alice, '#status', 'Bob answered your call');
  await waitForText(bob, '#status', 'audio call with Alice answered');
  await setPageHidden(bob, false);
  await waitForText(bob, '#messages .message.them .note', 'answered');

  // a call while the chat is on screen: no notification, Decline in the chat
  await alice.click('#call');
  await bob.click('#messages .call-actions .reject-call', { timeout: TIMEOUT });
  await waitForText(alice, '#messages', 'Bob: declined the call');
  await bob.waitForFunction(() => Array.from(document.querySelectorAll('#messages .message.them .note')).map((e) => e.textContent).join() === 'answered,declined', undefined, { timeout: TIMEOUT });
  assert.deepEqual(await messageTexts(alice), ['Me: Outgoing audio call', 'Bob: answered the call', 'Me: Outgoing audio call', 'Bob: declined the call']);
  assert.deepEqual(await shownNotifications(bob), []);
  assert.deepEqual([...pageErrors(alice), ...pageErrors(bob)], []);
});

test('a passphrase encrypts the store: asked on every load; wiping leaves nothing', async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const page = await (await person(browser, url)).newPage();
  const ready = () => page.evaluate(() => (window as unknown as HushWindow).hush.ready);
  await page.goto(url);
  await page.fill('#name', 'Dora');
  await page.fill('#passphrase', 'correct horse battery');
  await page.click('#start');
  await ready();
  await waitForText(page, '#at-rest', 'encrypted');
  await page.click('#invite');
  await waitForText(page, '#contacts', 'invited');
  // at rest, no record shows the name; the message history is encrypted too
  const atRest = (db: string) =>
    page.evaluate(
      (name) =>
        new Promise<{ keys: string[]; values: string[] }>((resolve, reject) => {
          const req = indexedDB.open(name);
          req.onsuccess = () => {
            const kv = req.result.transaction('kv').objectStore('kv');
            const keys = kv.getAllKeys();
            const values = kv.getAll();
            values.onsuccess = () => resolve({ keys: keys.result as string[], values: values.result as string[] });
            values.onerror = () => reject(values.error);
          };
        }),
      db,
    );
  const { values } = await atRest('hush-chat');
  assert.ok(values.length > 2);
  assert.deepEqual(values.filter((v) => v.includes('Dora')), []);
  assert.ok((await atRest('hush-chat-history')).keys.includes('encryption'), 'the history has an encryption header');

  await page.reload();
  await page.locator('#passphrase').waitFor();
  assert.equal(await page.isVisible('#name'), false);
  await page.fill('#passphrase', 'wrong');
  await page.click('#start');
  await waitForText(page, '#status', 'wrong passphrase');
  await page.fill('#passphrase', 'correct horse battery');
  await page.click('#start');
  await ready();
  assert.equal(await page.inputValue('#name'), 'Dora');
  assert.equal((await client(page)).contacts.length, 1);

  page.once('dialog', (d) => void d.accept());
  await page.click('#wipe');
  await page.waitForURL(url);
  await page.locator('#passphrase').waitFor();
  await page.fill('#passphrase', 'correct horse battery');
  await page.click('#start');
  await page.locator('#name:not([readonly])').waitFor({ timeout: TIMEOUT }); // a new start: a name is asked
  assert.equal(await page.inputValue('#name'), '');
  await page.fill('#name', 'Eve');
  await page.click('#start');
  await ready();
  assert.deepEqual((await client(page)).contacts, []);
  assert.deepEqual(pageErrors(page), []);
});
