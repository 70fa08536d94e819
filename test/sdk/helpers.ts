// Fixtures for SDK tests, all real servers on loopback: a relay, a
// notification server whose provider is our APNs provider, and the APNs test
// server standing in for Apple. A Phone is an SDK client with an APNs device
// token; the pushes Apple would deliver to it are collected from the test
// server, and the test hands them to the SDK's push handler as the OS would.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { ApnsProvider } from '../../src/push/apns/provider.ts';
import { ApnsTestServer, type ApnsRecordedPush } from '../../src/push/stand-ins/apns-server.ts';
import { HushClient, type HushClientOptions } from '../../src/sdk/client.ts';
import { apnsToken } from '../../src/sdk/device.ts';
import { CHAT_RATE_LIMIT_MS, type Notification } from '../../src/sdk/push-handler.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import { deserialize, KEYS, type TokenRecord } from '../../src/sdk/records.ts';
import { nobleCrypto } from '../../src/core/crypto/noble.ts';
import { sealPush } from '../../src/ntf/payload.ts';
import type { ClientStore } from '../../src/sdk/store/store.ts';
import type { QueueStore } from '../../src/relay/store/store.ts';
import type { CreationPolicy } from '../../src/server/creation.ts';
import { startRelay, type TestRelay } from '../helpers.ts';
import { startNtf, TestClock, until, type StartNtfOptions, type TestNtf } from '../ntf/helpers.ts';

export { until };
export const TOPIC = 'chat.hush.sdk-test';

export interface Stack {
  relay: TestRelay;
  /** The relay's address (a RelayProcess's when the test replaced it). */
  relayAddress: string;
  ntf: TestNtf;
  apns: ApnsTestServer;
  /** Starts the notification server (again) with these options, on the same port. */
  startNtf(opts?: StartNtfOptions): Promise<TestNtf>;
}

export async function startStack(
  t: TestContext,
  o: { ntf?: StartNtfOptions; relayAddress?: string; relayStore?: QueueStore; relayCreation?: Partial<CreationPolicy> } = {},
): Promise<Stack> {
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  apns.setMaxListeners(0); // a listener per phone
  t.after(() => apns.close());
  const team = apns.keys.create();
  const relay = await startRelay({
    ...(o.relayStore ? { store: o.relayStore } : {}),
    ...(o.relayCreation ? { creation: o.relayCreation } : {}),
  });
  t.after(() => relay.stop());
  const provider = () =>
    new ApnsProvider({ host: apns.url, ca: apns.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: TOPIC, serves: ['apns'] });
  const stack: Stack = {
    relay,
    relayAddress: o.relayAddress ?? relay.address,
    apns,
    ntf: undefined as unknown as TestNtf,
    async startNtf(opts = {}) {
      const port = stack.ntf ? Number(new URL(stack.ntf.address.replace(/^hush\+ws/, 'http')).port) : 0;
      stack.ntf = await startNtf({
        providers: [provider()],
        ...(stack.ntf ? { identity: stack.ntf.identity, serviceKey: stack.ntf.serviceKey, port } : {}),
        ...opts,
      });
      const ntf = stack.ntf;
      t.after(() => ntf.stop());
      return ntf;
    },
  };
  await stack.startNtf(o.ntf);
  return stack;
}

export class Phone {
  readonly pushes: ApnsRecordedPush[] = [];
  /** Pushes already given to handlePush by takePushes(). */
  private handled = 0;
  token: Buffer = randomBytes(32);

  private constructor(
    readonly stack: Stack,
    public client: HushClient,
    readonly store: ClientStore,
  ) {
    stack.apns.on('push', (p) => {
      if (p.token === this.token.toString('hex')) this.pushes.push(p);
    });
  }

  static async create(t: TestContext, stack: Stack, name: string, o: Partial<HushClientOptions> = {}): Promise<Phone> {
    const store = o.store ?? new MemoryStore();
    const client = await HushClient.open(Phone.options(stack, name, store, o));
    const phone = new Phone(stack, client, store);
    t.after(() => phone.client.close());
    return phone;
  }

  private static options(stack: Stack, name: string | undefined, store: ClientStore, o: Partial<HushClientOptions> = {}): HushClientOptions {
    return {
      store,
      relays: [stack.relayAddress],
      ntfServer: stack.ntf.address,
      webSocket: nodeWebSocket(),
      timeoutMs: 10_000,
      ...(name ? { name } : {}),
      ...o,
    };
  }

  /** A new client on the same store (an app restarted, or its push extension started). */
  async reopen(o: Partial<HushClientOptions> = {}): Promise<void> {
    this.client.close();
    this.client = await HushClient.open(Phone.options(this.stack, undefined, this.store, o));
  }

  /** Waits for the next push after those taken so far and returns it (not yet handled). */
  async nextPush(what = 'a push', timeoutMs = 10_000): Promise<ApnsRecordedPush> {
    const p = await until(what, () => this.pushes[this.handled], timeoutMs);
    this.handled++;
    return p;
  }

  /** Pushes so far are not the test's concern (sent while the app was online). */
  skipPushes(): void {
    this.handled = this.pushes.length;
  }

  /**
   * Like the OS: hands each push, as it arrives, to the push handler, until
   * the notifications shown so far satisfy `done`; returns them.
   */
  async handlePushes(done: (shown: Notification[]) => boolean, what = 'notifications', timeoutMs = 10_000): Promise<Notification[]> {
    const shown: Notification[] = [];
    const deadline = Date.now() + timeoutMs;
    while (!done(shown)) {
      const p = await this.nextPush(what, Math.max(1, deadline - Date.now()));
      shown.push(...(await this.client.handlePush(p.payload)));
      this.handledPushes.push(p);
    }
    return shown;
  }

  /** Pushes given to handlePushes(), in order. */
  readonly handledPushes: ApnsRecordedPush[] = [];

  /** Registers the APNs token and completes verification through the push it gets. */
  async register(): Promise<void> {
    await this.client.registerDevice(apnsToken(this.token));
    assert.equal(this.client.tokenStatus?.status, 'REGISTERED');
    const v = await this.nextPush('the verification push');
    assert.equal(v.headers['apns-push-type'], 'background');
    assert.deepEqual(await this.client.handlePush(v.payload), []);
    assert.equal(this.client.tokenStatus?.status, 'ACTIVE');
  }

  /** Pushes arrived but not handled. */
  get waiting(): number {
    return this.pushes.length - this.handled;
  }
}

/** Connects two phones through an invitation (both online while they do), returning each one's contact ID for the other. */
export async function connect(inviter: Phone, acceptor: Phone): Promise<{ atInviter: string; atAcceptor: string }> {
  await inviter.client.start();
  await acceptor.client.start();
  const { contactId: atInviter, link } = await inviter.client.createInvitation();
  const atAcceptor = await acceptor.client.acceptInvitation(link);
  await until('both sides connected', () =>
    inviter.client.contacts().find((c) => c.id === atInviter)?.state === 'ready' &&
    acceptor.client.contacts().find((c) => c.id === atAcceptor)?.state === 'ready',
  );
  return { atInviter, atAcceptor };
}

/** A registered Bob with two friends, Alice and Carol, connected (online) and subscribed. */
export async function bobAndTwoFriends(t: TestContext) {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  const alice = await Phone.create(t, stack, 'Alice');
  const carol = await Phone.create(t, stack, 'Carol');
  const a = await connect(alice, bob);
  const c = await connect(carol, bob);
  await untilSubscribed(bob, 2);
  return { stack, bob, alice, carol, a, c };
}

/** Waits until every contact of the phone has an ACTIVE subscription. */
export async function untilSubscribed(phone: Phone, n: number): Promise<void> {
  await until(`${n} ACTIVE subscriptions`, async () => {
    await phone.client.checkNotifications();
    return phone.client.contacts().filter((c) => c.subscription === 'ACTIVE').length === n;
  });
}

/**
 * NMSGs the relay has made for messages (to a subscribed notifier, or kept for
 * one): no NMSG, no message push. The relay counts one as it takes the SEND in,
 * before answering, so once a send returns the count says whether it made one.
 */
export async function nmsgs(stack: Stack): Promise<number> {
  const { values } = await stack.relay.server.metrics.notifications.get();
  return values.filter((v) => v.labels.outcome !== 'redelivered').reduce((n, v) => n + v.value, 0);
}

/** A check push for the phone, sealed with its token's secret as its notification server would: it fetches every contact. */
export async function checkPush(phone: Phone): Promise<Uint8Array> {
  const token = deserialize<TokenRecord>((await phone.store.get(KEYS.token))!);
  return sealPush(nobleCrypto, token.secret!, { kind: 'check' });
}

/**
 * Alice and a registered Bob, connected; Bob subscribed, then asleep (no SUB)
 * with the pushes so far skipped. Bob's clock stands still but for `later()`.
 */
export async function asleepPair(t: TestContext, stack?: Stack, names: [string, string] = ['Alice', 'Bob']) {
  stack ??= await startStack(t);
  const clock = new TestClock();
  const alice = await Phone.create(t, stack, names[0]);
  const bob = await Phone.create(t, stack, names[1], { now: clock.now });
  await bob.register();
  const ids = await connect(alice, bob);
  await untilSubscribed(bob, 1);
  bob.client.stop();
  bob.skipPushes();
  return {
    stack,
    alice,
    bob,
    ...ids,
    clock,
    /** Moves Bob's clock past the per-chat notification rate limit. */
    later: () => clock.advance(CHAT_RATE_LIMIT_MS),
  };
}
