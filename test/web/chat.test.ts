// The web chat (src/web/chat.ts) and its service worker (src/web/sw.ts) in
// Debian's Chromium against the local stack: two people connect by an
// invitation link and chat; a push reaches the service worker while no chat
// page is open and becomes a system notification.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { until } from '../ntf/helpers.ts';
import { launchBrowser, person, screenshotPath, startWebStack } from './browser.ts';
import {
  aliceAndWatchedBob,
  invitationLink,
  messageTexts,
  openChat,
  pageErrors,
  send,
  setPageHidden,
  shownNotifications,
  TIMEOUT,
  waitForText,
  type HushWindow,
} from './chat-page.ts';

test('two people connect by an invitation link and chat both ways', async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const alice = await openChat(await person(browser, url), url, 'Alice');

  const link = await invitationLink(alice);
  assert.match(link, new RegExp(`^${url.replace(/[.]/g, '\\.')}#hush-invite:[A-Za-z0-9_-]+$`));
  await waitForText(alice, '#contacts', 'invited');

  // Bob opens the link itself: the page offers the invitation from its fragment
  const bob = await openChat(await person(browser, url), url, 'Bob', new URL(link).hash);
  assert.equal(await bob.inputValue('#accept-link'), `${url}?name=Bob${new URL(link).hash}`);
  await bob.click('#accept');
  await waitForText(bob, '#contacts', 'Alice');
  await waitForText(bob, '#contacts', 'connected');
  await waitForText(alice, '#contacts', 'Bob');
  await waitForText(alice, '#contacts', 'connected');
  assert.equal(new URL(bob.url()).hash, '', 'the accepted invitation leaves the address bar');

  // each page registered its Web Push subscription and verified it with the push it got
  await waitForText(alice, '#token-status', 'ACTIVE');
  await waitForText(bob, '#token-status', 'ACTIVE');

  await send(alice, 'Hello Bob');
  await waitForText(bob, '#messages', 'Alice: Hello Bob');
  await send(bob, 'Hi Alice — ça va?');
  await waitForText(alice, '#messages', 'Bob: Hi Alice — ça va?');
  await send(alice, 'How are you?');
  await waitForText(bob, '#messages', 'Alice: How are you?');

  assert.deepEqual(await messageTexts(alice), ['Me: Hello Bob', 'Bob: Hi Alice — ça va?', 'Me: How are you?']);
  assert.deepEqual(await messageTexts(bob), ['Alice: Hello Bob', 'Me: Hi Alice — ça va?', 'Alice: How are you?']);
  const aliceItem = alice.locator('#contacts [data-contact-id]');
  assert.equal(await aliceItem.count(), 1);
  assert.match((await aliceItem.textContent())!, /Bob.*connected/);

  // the history is the page's: it is there after a reload
  await bob.reload();
  await bob.evaluate(() => (window as unknown as HushWindow).hush.ready);
  await waitForText(bob, '#messages', 'Alice: How are you?');
  assert.deepEqual(await messageTexts(bob), ['Alice: Hello Bob', 'Me: Hi Alice — ça va?', 'Alice: How are you?']);

  // muting a contact turns its notifications off in the SDK
  await alice.click('#contacts [data-contact-id] .mute');
  await alice.waitForFunction(() => document.querySelector('#contacts [data-contact-id] .mute')?.getAttribute('aria-pressed') === 'true', undefined, { timeout: TIMEOUT });
  assert.equal(await alice.evaluate(() => (window as unknown as HushWindow).hush.client?.contacts()[0]?.notifications), false);

  await alice.screenshot({ path: screenshotPath('chat-alice') });
  await bob.screenshot({ path: screenshotPath('chat-bob') });
  assert.deepEqual([...pageErrors(alice), ...pageErrors(bob)], []);
});

test('with no chat page open, the service worker turns a push into a notification', async (t) => {
  const { url, stack } = await startWebStack(t);
  const origin = new URL(url).origin;
  const browser = await launchBrowser(t);
  const alice = await openChat(await person(browser, url), url, 'Alice');
  const bobContext = await person(browser, url);

  // Bob's page subscribes at the Web Push test service: note the endpoint it gets
  const bobPage = await bobContext.newPage();
  const subscribed = bobPage.waitForResponse((r) => r.url().endsWith('/api/webpush/subscribe'));
  await bobPage.goto(`${url}?name=Bob`);
  const endpoint = ((await (await subscribed).json()) as { endpoint: string }).endpoint;
  await bobPage.evaluate(() => (window as unknown as HushWindow).hush.ready);

  // Bob pastes Alice's link
  await bobPage.fill('#accept-link', await invitationLink(alice));
  await bobPage.click('#accept');
  await waitForText(alice, '#contacts', 'connected');
  await waitForText(bobPage, '#contacts', 'connected');
  await waitForText(bobPage, '#token-status', 'ACTIVE');
  // Bob's subscription for Alice is made at the notification server, and his service worker runs
  await bobPage.waitForFunction(() => (window as unknown as HushWindow).hush.client?.contacts()[0]?.subscription !== undefined, undefined, { timeout: TIMEOUT });
  await bobPage.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));

  // Another page of the origin that is not the chat (the DevTools session lives on it), then no chat page
  const other = await bobContext.newPage();
  await other.goto(`${url}style.css`);
  const cdp = await bobContext.newCDPSession(other);
  const registrations = new Map<string, string>();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) if (!r.isDeleted) registrations.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  const registrationId = await until('the service worker registration', () => registrations.get(url), TIMEOUT);

  // While the chat page is open, the worker hands pushes to it (it owns the SDK state)
  type Posted = { posted?: unknown };
  await bobPage.evaluate(() => navigator.serviceWorker.addEventListener('message', (e) => ((window as unknown as Posted).posted = e.data)));
  await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: 'bm90IGEgcHVzaA' });
  await bobPage.waitForFunction(() => (window as unknown as Posted).posted !== undefined, undefined, { timeout: TIMEOUT });
  assert.deepEqual(await bobPage.evaluate(() => (window as unknown as Posted).posted), { type: 'hush-push', data: 'bm90IGEgcHVzaA' });

  const bobProfile = await bobPage.evaluate(() => (window as unknown as HushWindow).hush.client?.activeProfile);
  const relayConnections = stack.relay.server.connections;
  await bobPage.close();
  // Bob's connection is gone at the relay: the message waits in his queue for a push to fetch it
  await until('Bob’s relay connection to close', () => stack.relay.server.connections < relayConnections, TIMEOUT);

  // The browser's push service would deliver every push for Bob's endpoint to his service worker
  const delivered: Array<Promise<unknown>> = [];
  stack.webpush.on('message', (m) => {
    if (m.endpoint !== endpoint) return;
    const data = Buffer.from(m.plaintext).toString();
    delivered.push(cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data }));
  });
  await send(alice, 'hi');

  const shown = await until(
    'the notification',
    () =>
      other.evaluate(async () => {
        const reg = await navigator.serviceWorker.getRegistration('/');
        const all = (await reg?.getNotifications()) ?? [];
        return all.length > 0 ? all.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data as unknown })) : undefined;
      }),
    TIMEOUT,
  ).catch(async (e: Error) => {
    // Where the push stopped: not pushed, not delivered to the worker, or not shown by it.
    const where = {
      ntfPushes: (await stack.ntf.server.metrics.pushes.get()).values.map((v) => ({ ...v.labels, n: v.value })),
      deliveredToWorker: (await Promise.allSettled(delivered)).map((r) => r.status),
      relay: stack.relay.server.opts.store.counts(),
    };
    throw new Error(`${e.message}; ${JSON.stringify(where)}`);
  });
  await Promise.all(delivered);
  assert.ok(delivered.length >= 1);
  assert.equal(shown.length, 1, JSON.stringify(shown));
  assert.equal(shown[0]!.title, 'Alice');
  assert.equal(shown[0]!.body, 'hi');
  assert.ok(shown[0]!.tag, 'tagged with the chat');
  assert.deepEqual(shown[0]!.data, { contactId: shown[0]!.tag, profileId: bobProfile, badge: 1 });

  // The service worker kept the text: the chat, opened again, shows it
  const back = await openChat(bobContext, url, 'Bob');
  await waitForText(back, '#messages', 'Alice: hi');
  assert.deepEqual(await messageTexts(back), ['Alice: hi']);
  // a chat on screen is read
  await back.waitForFunction(() => document.querySelector('#contacts [data-contact-id]') && !document.querySelector('#contacts .unread'), undefined, { timeout: TIMEOUT });
  assert.equal(await back.title(), 'Hush chat');
  await back.screenshot({ path: screenshotPath('chat-bob-after-push') });
  assert.deepEqual([...pageErrors(alice), ...pageErrors(back)], []);
});

test('a hidden chat page shows notifications for new messages under the preview mode; a visible one none', async (t) => {
  const { alice, bob } = await aliceAndWatchedBob(t);
  await bob.fill('#accept-link', await invitationLink(alice));
  await bob.click('#accept');
  await waitForText(alice, '#contacts', 'connected');
  await waitForText(bob, '#contacts', 'connected');
  await waitForText(bob, '#token-status', 'ACTIVE');

  const notifications = async () => (await shownNotifications(bob)).map((n) => ({ title: n.title, body: n.body }));
  /** Waits until Bob's notifications are `ok`; the failure says what the page showed, received and said. */
  const waitForNotifications = (what: string, ok: (shown: Array<{ title: string; body: string }>) => boolean) =>
    until(what, async () => ok(await notifications()), TIMEOUT).catch(async (e: Error) => {
      const page = {
        shownLog: await bob.evaluate(() => (window as unknown as { shownLog: unknown[] }).shownLog),
        messages: await messageTexts(bob),
        status: await bob.locator('#status').textContent(),
      };
      throw new Error(`${e.message}; the page: ${JSON.stringify(page)}`);
    });
  const setHidden = (h: boolean) => setPageHidden(bob, h);

  await send(alice, 'seen on screen');
  await waitForText(bob, '#messages', 'Alice: seen on screen');
  assert.deepEqual(await notifications(), [], 'a visible chat shows no notification');

  await setHidden(true);
  await send(alice, 'while away');
  await waitForNotifications('the notification', (shown) => shown.length > 0);
  assert.deepEqual(await notifications(), [{ title: 'Alice', body: 'while away' }]);
  await waitForText(bob, '#contacts .unread', '1'); // not read while hidden

  await bob.selectOption('#preview', 'contact');
  await bob.waitForFunction(() => (window as unknown as { hush: { client: { previewMode: string } } }).hush.client.previewMode === 'contact');
  await send(alice, 'a secret');
  await waitForNotifications('the notification without the text', (shown) => shown[0]?.body === 'New message');
  assert.deepEqual(await notifications(), [{ title: 'Alice', body: 'New message' }], 'one notification per chat');

  await setHidden(false); // back on screen: the chat is read, its notification gone
  await waitForNotifications('the notification to go', (shown) => shown.length === 0);
  await bob.waitForFunction(() => !document.querySelector('#contacts .unread'), undefined, { timeout: TIMEOUT });
  assert.deepEqual(await messageTexts(bob), ['Alice: seen on screen', 'Alice: while away', 'Alice: a secret']);
  // every notification the page showed: none while it was visible
  assert.deepEqual(await bob.evaluate(() => (window as unknown as { shownLog: unknown[] }).shownLog), [
    { title: 'Alice', body: 'while away' },
    { title: 'Alice', body: 'New message' },
  ]);

  // notification mode off deletes the token; instant registers it again and it is verified
  await bob.selectOption('#mode', 'off');
  await waitForText(bob, '#token-status', 'none');
  await bob.selectOption('#mode', 'instant');
  await waitForText(bob, '#token-status', 'ACTIVE');
  assert.deepEqual([...pageErrors(alice), ...pageErrors(bob)], []);
});

test('without ?name= the page asks for a name once; the SDK keeps it', async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const page = await (await person(browser, url)).newPage();
  await page.goto(url);
  assert.equal(await page.isVisible('#start'), true);
  assert.equal(await page.isDisabled('#invite'), true, 'nothing to do before the name');
  await page.fill('#name', 'Carol');
  await page.click('#start');
  await page.evaluate(() => (window as unknown as HushWindow).hush.ready);
  assert.equal(await page.isEditable('#name'), false);
  await page.reload();
  await page.evaluate(() => (window as unknown as HushWindow).hush.ready);
  assert.equal(await page.inputValue('#name'), 'Carol');
  assert.equal(await page.isVisible('#start'), false);
  assert.equal(await page.isDisabled('#invite'), false);
});
