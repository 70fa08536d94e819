// The README's "watch a message become a notification" steps, as a newcomer
// clicks them: a phone in the simulator invites, the web chat opens the link,
// asks for a name and accepts, and a message from the chat reaches the lock screen.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchBrowser, pastRateLimit, person, screenshotPath, startWebStack } from './browser.ts';

test('README walkthrough: simulator phone invites, web chat accepts, "hi" shows on the lock screen', { timeout: 120_000 }, async (t) => {
  const { url } = await startWebStack(t);
  const browser = await launchBrowser(t);
  const context = await person(browser, url);
  await context.clock.install(); // the phone's clock: pastRateLimit moves it on
  const sim = await context.newPage();
  await sim.goto(`${url}simulator`);
  await sim.fill('#phone-name', 'Bob');
  await sim.click('#add-phone');
  const phone = sim.locator('.phone[data-name="Bob"]');
  await phone.locator('.token-status', { hasText: 'ACTIVE' }).waitFor({ timeout: 20_000 });

  await phone.locator('.invite').click();
  const link = phone.locator('.invite-chat:not([hidden])');
  await link.waitFor();
  const chat = await context.newPage();
  await chat.goto(new URL((await link.getAttribute('href'))!, url).href);
  await chat.fill('#name', 'Alice');
  await chat.click('#start');
  await chat.click('#accept');

  const connected = phone.locator('.notification', { hasText: 'Connected' });
  await connected.waitFor({ timeout: 20_000 });
  assert.equal(await connected.locator('.title').textContent(), 'Alice');
  await chat.locator('#text:not([disabled])').waitFor({ timeout: 20_000 });
  await pastRateLimit(context); // the chat was just notified of the connection
  await chat.fill('#text', 'hi');
  await chat.click('#send');
  const hi = phone.locator('.notification', { hasText: 'hi' });
  await hi.waitFor({ timeout: 20_000 });
  assert.deepEqual([await hi.locator('.title').textContent(), await hi.locator('.body').textContent()], ['Alice', 'hi']);
  await sim.screenshot({ path: screenshotPath('walkthrough-simulator') });
  await chat.screenshot({ path: screenshotPath('walkthrough-chat') });
});
