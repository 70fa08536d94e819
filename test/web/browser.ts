// Fixtures for browser tests: the local stack in a temporary directory on free
// ports, and Debian's Chromium driven by playwright-core.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Clock } from 'playwright-core';
import { CHAT_RATE_LIMIT_MS } from '../../src/sdk/push-handler.ts';
import { startLocalStack, type LocalStack } from '../../src/stack/stack.ts';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
export const SCREENSHOTS = path.join(import.meta.dirname, 'screenshots');

export function tempDir(t: TestContext, prefix = 'hush-web-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The local stack on free ports, stopped after the test. */
export async function startWebStack(t: TestContext): Promise<{ url: string; stack: LocalStack }> {
  const stack = await startLocalStack({
    dir: tempDir(t, 'hush-stack-'),
    ports: { relay: 0, ntf: 0, relayMetrics: 0, ntfMetrics: 0 },
    webPort: 0,
    logLevel: 'silent',
  });
  t.after(() => stack.stop());
  return { url: stack.url, stack };
}

/** Chromium with a fresh profile (a browser is a fresh profile per launch), closed after the test. */
export async function launchBrowser(t: TestContext): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  return browser;
}

/** A new browser context (another person) with notifications allowed for `url`'s origin. */
export async function person(browser: Browser, url: string): Promise<BrowserContext> {
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: new URL(url).origin });
  return context;
}

/**
 * The push handler notifies a chat at most once per CHAT_RATE_LIMIT_MS and
 * holds back what comes sooner, so a test that sends a chat's next message
 * soon after its last notification would wait for nothing. Such tests run the
 * pages that handle pushes on the test's clock (`context.clock.install()`
 * before they open: time flows as usual) and move it past the limit first,
 * rather than wait on the wall clock, which a fast machine outruns.
 */
export const pastRateLimit = (on: { clock: Clock }) => on.clock.fastForward(CHAT_RATE_LIMIT_MS);

export function screenshotPath(name: string): string {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  return path.join(SCREENSHOTS, `${name}.png`);
}
