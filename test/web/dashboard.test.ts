// The live dashboard in real Chromium against the local stack: traffic made
// by SDK clients in Node (a phone with an APNs token whose pushes go to its
// push handler, and an online sender), /api/metrics checked against it, and
// every chart drawn with marks.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import type { ApnsRecordedPush } from '../../src/push/stand-ins/apns-server.ts';
import { apnsToken, HushClient, MemoryStore } from '../../src/sdk/index.ts';
import type { DashboardMetrics } from '../../src/stack/metrics.ts';
import type { LocalStack } from '../../src/stack/stack.ts';
import { until as untilWithin } from '../ntf/helpers.ts';
import { launchBrowser, screenshotPath, startWebStack } from './browser.ts';

const WAIT = 30_000;
const CHARTS = ['chart-tokens', 'chart-subscriptions', 'chart-rate', 'chart-latency', 'chart-delay', 'chart-queues'];

/** Waits for `cond` to be truthy (its value: a falsy one means not yet), within WAIT. */
const until = <T>(what: string, cond: () => T | false | undefined | Promise<T | false | undefined>) => untilWithin(what, cond, WAIT) as Promise<T>;

function client(t: TestContext, stack: LocalStack, name: string): Promise<HushClient> {
  return HushClient.open({ store: new MemoryStore(), relays: [stack.relay.address], ntfServer: stack.ntf.address, name, webSocket: nodeWebSocket() }).then((c) => {
    t.after(() => c.close());
    return c;
  });
}

/** A sleeping phone in Node: an APNs token, each push handed to its push handler. */
async function sleepingPhone(t: TestContext, stack: LocalStack, name: string) {
  const phone = await client(t, stack, name);
  const token = randomBytes(32);
  // Messages the push handler fetched (notifications are rate limited per chat; events are not).
  const received: string[] = [];
  phone.on('message', (e) => received.push(e.text));
  const onPush = (p: ApnsRecordedPush) => {
    if (p.token === token.toString('hex')) void phone.handlePush(p.payload);
  };
  stack.apns.on('push', onPush);
  t.after(() => stack.apns.off('push', onPush));
  await phone.registerDevice(apnsToken(token));
  await until(`${name}'s token ACTIVE`, () => phone.tokenStatus?.status === 'ACTIVE');
  return { phone, received };
}

async function metrics(url: string): Promise<DashboardMetrics> {
  const res = await fetch(new URL('/api/metrics', url));
  assert.equal(res.status, 200);
  return (await res.json()) as DashboardMetrics;
}

const marks = (page: Page, id: string) => page.locator(`#${id} svg path, #${id} svg rect, #${id} svg circle`).count();

test('the dashboard draws live charts of the stack', async (t) => {
  const { url, stack } = await startWebStack(t);

  // Before any traffic: the shape, all zero, and charts without marks.
  const empty = await metrics(url);
  assert.deepEqual(empty.tokens, { NEW: 0, REGISTERED: 0, CONFIRMED: 0, ACTIVE: 0, INVALID: 0, EXPIRED: 0 });
  assert.equal(empty.pushes.total, 0);
  assert.equal(empty.pushLatency.count, 0);

  const browser = await launchBrowser(t);
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(new URL('/dashboard', url).href);
  await page.waitForFunction(() => (window.dashboard?.samples.length ?? 0) >= 1);
  for (const id of ['chart-tokens', 'chart-subscriptions', 'chart-latency', 'chart-delay']) assert.equal(await marks(page, id), 0, `#${id} has marks without data`);

  // Traffic: Bob's phone registers (a verification push), Alice connects to him and writes.
  const { phone: bob, received } = await sleepingPhone(t, stack, 'Bob');
  const alice = await client(t, stack, 'Alice');
  await alice.start();
  const { contactId, link } = await alice.createInvitation();
  await bob.acceptInvitation(link);
  await until('Alice and Bob connected', () => alice.contacts()[0]?.state === 'ready' && bob.contacts()[0]?.state === 'ready');
  for (let i = 1; i <= 3; i++) await alice.send(contactId, `message ${i}`);
  await until('Bob to receive the messages by push', () => received.length === 3);

  const m = await until('the metrics to count the traffic', async () => {
    const m = await metrics(url);
    return m.subscriptions.ACTIVE >= 1 && m.pushes.byKind.message >= 1 && m;
  });
  assert.equal(m.tokens.ACTIVE, 1);
  assert.ok(m.subscriptions.ACTIVE >= 1);
  assert.ok(m.pushes.byKind.verification >= 1);
  assert.equal(m.pushes.byOutcome.delivered, m.pushes.total);
  // Labelled by the notification server's provider queue: one APNs connection serves both APNs environments here.
  assert.deepEqual(Object.keys(m.pushes.byProvider).filter((p) => m.pushes.byProvider[p]! > 0), ['apns']);
  assert.ok(m.ntf.notificationsReceived >= 1);
  assert.equal(m.relay.queues, 2);
  assert.ok(m.relay.notifiers >= 1);
  assert.ok(m.relay.messagesSent >= 5, `messages sent ${m.relay.messagesSent}`); // hello, ready, 3 texts
  assert.equal(m.pushLatency.count, m.pushes.total + m.pushes.retries);
  assert.deepEqual(m.pushLatency.buckets.at(-1), { le: '+Inf', count: m.pushLatency.count });
  assert.ok(m.pushLatency.sum > 0);
  for (let i = 1; i < m.pushLatency.buckets.length; i++) assert.ok(m.pushLatency.buckets[i]!.count >= m.pushLatency.buckets[i - 1]!.count);
  // every delivered message push has its delay from the NMSG that queued it
  assert.equal(m.notificationDelay.count, m.pushes.byKind.message);
  assert.ok(m.notificationDelay.sum > 0);

  // Every chart gets marks; the rate chart a non-zero rate; the page shows the numbers.
  for (const id of CHARTS) await until(`#${id} to draw marks`, async () => (await marks(page, id)) > 0);
  await page.waitForFunction(() => window.dashboard.rates.pushes.values.some((p) => p.v > 0), undefined, { timeout: WAIT });
  await page.waitForFunction((n) => (window.dashboard.latest?.pushLatency.count ?? 0) >= n, m.pushLatency.count, { timeout: WAIT });
  const latency = /^(\d+) pushes since start · mean [\d.]+ ms/.exec((await page.textContent('#chart-latency .sub')) ?? '');
  assert.ok(latency && Number(latency[1]) >= m.pushLatency.count, `latency caption: ${latency?.[0]}`);
  assert.match((await page.textContent('#chart-tokens .legend')) ?? '', /ACTIVE 1/);
  assert.ok((await page.locator('#chart-latency svg rect').count()) >= 1);

  // Some more traffic for the picture, then the screenshot.
  for (let i = 4; i <= 6; i++) {
    await alice.send(contactId, `message ${i}`);
    await until(`Bob to receive message ${i}`, () => received.includes(`message ${i}`));
  }
  // a sample taken since, drawn, so the last messages are in the picture (not an assertion)
  const { time } = await metrics(url);
  await page.waitForFunction((t) => (window.dashboard.latest?.time ?? 0) >= t, time, { timeout: WAIT });
  await page.screenshot({ path: screenshotPath('dashboard'), fullPage: true });
  assert.deepEqual(errors, []);
});
