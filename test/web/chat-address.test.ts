// A contact address in the web chat, in Chromium against the local stack:
// Alice makes one (its link and QR code), Bob and Carol ask to connect with
// the link; Alice accepts Bob's request from her list and Carol's from its
// notification's button (the service worker's notificationclick →
// performAction); then messages go both ways, and a deleted address takes no
// more requests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { launchBrowser, person, screenshotPath, startWebStack } from './browser.ts';
import {
  clickNotification,
  controlVisibility,
  messageTexts,
  openChat,
  pageErrors,
  send,
  TIMEOUT,
  waitForNotification,
  waitForText,
  type HushWindow,
} from './chat-page.ts';

/** `page` pastes `link` into the accept form (an address link: a contact request). */
async function paste(page: Page, link: string): Promise<void> {
  await page.fill('#accept-link', link);
  await page.click('#accept');
}

/** Both see each other connected, then a message goes each way. */
async function talk(a: Page, aName: string, b: Page, bName: string): Promise<void> {
  for (const [p, other] of [[a, bName], [b, aName]] as const) {
    await waitForText(p, '#contacts .contact.selected', other);
    await waitForText(p, '#contacts .contact.selected', 'connected');
  }
  await send(a, `hello ${bName}`);
  await waitForText(b, '#messages', `${aName}: hello ${bName}`);
  await send(b, `hi ${aName}`);
  await waitForText(a, '#messages', `${bName}: hi ${aName}`);
  assert.deepEqual(await messageTexts(a), [`Me: hello ${bName}`, `${bName}: hi ${aName}`]);
}

test('a contact address: requests accepted from the list and from their notification, then messages both ways', async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const aliceContext = await person(browser, url);
  await controlVisibility(aliceContext);
  const alice = await openChat(aliceContext, url, 'Alice');
  await alice.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
  const bob = await openChat(await person(browser, url), url, 'Bob');
  const carol = await openChat(await person(browser, url), url, 'Carol');

  await alice.click('#make-address');
  await waitForText(alice, '#address', 'hush-address:');
  const link = (await alice.textContent('#address'))!;
  assert.match(link, /^hush-address:[A-Za-z0-9_-]+$/);
  assert.equal(await alice.isVisible('#make-address'), false);
  // the QR code: the SDK's SVG as an image, which the browser decodes
  const qr = await alice.$eval('#address-qr', (img: HTMLImageElement) => img.decode().then(() => ({ src: img.src, width: img.naturalWidth })));
  assert.match(qr.src, /^data:image\/svg\+xml;charset=utf-8,%3Csvg/);
  assert.ok(qr.width > 0, `QR image width ${qr.width}`);

  // Bob asks: "requested" until Alice accepts him from her list
  await paste(bob, link);
  await waitForText(bob, '#contacts .contact.selected', 'requested');
  await waitForText(alice, '#requests', 'Bob');
  await alice.click('#requests li:has-text("Bob") button.accept-contact', { timeout: TIMEOUT });
  await talk(alice, 'Alice', bob, 'Bob');

  // Carol asks: Alice's notification has Accept / Reject; she picks Accept
  await paste(carol, link);
  await waitForText(alice, '#requests', 'Carol');
  const n = await waitForNotification(alice, 'the notification of Carol’s request', (x) => x.body === 'Carol wants to connect');
  assert.equal(n.title, 'Contact request');
  assert.deepEqual(n.actions, [
    { action: 'accept-contact', title: 'Accept' },
    { action: 'reject-contact', title: 'Reject' },
  ]);
  assert.equal((n.data as { requestId?: unknown }).requestId, n.tag);
  await alice.screenshot({ path: screenshotPath('chat-address') });
  await clickNotification(aliceContext, n.tag, 'accept-contact');
  await talk(alice, 'Alice', carol, 'Carol');
  assert.equal(await alice.isVisible('#requests-box'), false, 'no request left');
  const contacts = await alice.evaluate(() => (window as unknown as HushWindow).hush.client!.contacts().map((c) => c.id));
  assert.ok(contacts.includes(n.tag), 'the contact has the request’s ID');

  // deleted, the address takes no more requests
  alice.once('dialog', (d) => void d.accept());
  await alice.click('#delete-address');
  await alice.locator('#make-address').waitFor({ timeout: TIMEOUT });
  assert.equal(await alice.isVisible('#address-box'), false);
  await paste(bob, link);
  await waitForText(bob, '#status', 'the contact address is no longer in use');
  assert.deepEqual([...pageErrors(alice), ...pageErrors(bob), ...pageErrors(carol)], []);
});
