// Connection loss mid-stream, through the notification server's dispatcher and
// each real provider against its test server: 40 verification pushes in flight,
// the connection dropped under them. Every token ends CONFIRMED (no push lost),
// every device's push reached the test server, and a second copy only where
// the provider's rules allow one: a push whose answer was lost with the
// connection is retried (the server may have taken it), nothing else is.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import type { DeviceToken } from '../../src/push/device.ts';
import { latin1 } from '../../src/core/encoding.ts';
import { ApnsProvider } from '../../src/push/apns/provider.ts';
import { FcmProvider } from '../../src/push/fcm/provider.ts';
import type { PushProvider } from '../../src/push/provider.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { FcmTestServer } from '../../src/push/stand-ins/fcm-server.ts';
import { WebPushTestServer } from '../../src/push/stand-ins/webpush-server.ts';
import { createVapidKey } from '../../src/push/webpush/vapid.ts';
import { encodeWebPushSubscription } from '../../src/push/webpush/subscription.ts';
import { WebPushProvider } from '../../src/push/webpush/provider.ts';
import { crypto } from '../helpers.ts';
import { MANY_CREATIONS, startNtf, until } from '../ntf/helpers.ts';

const DEVICES = 40;

interface Rig {
  provider: PushProvider;
  device(): DeviceToken;
  /** Drop the connection under the next request, a little later, while others are in flight. */
  dropNext(): void;
  /** The devices the test server accepted a push for, one entry per accepted push. */
  received(): string[];
  key(d: DeviceToken): string;
  close(): Promise<void>;
}

const rigs: Record<string, () => Promise<Rig>> = {
  async apns() {
    const s = await ApnsTestServer.start({ topics: ['app'] });
    const team = s.keys.create();
    const provider = new ApnsProvider({ host: s.url, ca: s.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: 'app', requestTimeoutMs: 3000 });
    return {
      provider,
      device: () => ({ provider: 'apns', token: randomBytes(32) }),
      dropNext: () => s.replyNext({ drop: true, delayMs: 30 }),
      received: () => s.pushes.map((p) => p.token),
      key: (d) => Buffer.from(d.token).toString('hex'),
      close: async () => (await provider.close(), await s.close()),
    };
  },
  async fcm() {
    const s = await FcmTestServer.start();
    const provider = new FcmProvider({ serviceAccount: s.serviceAccount(), endpoint: s.url, ca: s.ca, requestTimeoutMs: 3000 });
    return {
      provider,
      device: () => ({ provider: 'fcm', token: new TextEncoder().encode(`fcm-${randomBytes(60).toString('base64url')}`) }),
      dropNext: () => s.replyNext({ drop: true, delayMs: 30 }),
      received: () => s.messages.map((m) => m.token ?? ''),
      key: (d) => new TextDecoder().decode(d.token),
      close: async () => (await provider.close(), await s.close()),
    };
  },
  async webpush() {
    const s = await WebPushTestServer.start();
    const vapid = createVapidKey();
    const provider = new WebPushProvider({ vapid: { privateKey: vapid.privateKey, subject: 'mailto:ops@hush.example' }, ca: s.ca, maxSockets: 8, allowPrivateNetworks: true, requestTimeoutMs: 3000 });
    const endpoints = new Map<string, string>();
    return {
      provider,
      device() {
        const sub = s.subscribe({ applicationServerKey: vapid.publicKey });
        const token = encodeWebPushSubscription(sub);
        endpoints.set(Buffer.from(token).toString('hex'), sub.endpoint);
        return { provider: 'webpush', token };
      },
      dropNext: () => s.replyNext({ drop: true, delayMs: 30 }),
      received: () => s.messages.map((m) => m.endpoint),
      key: (d) => endpoints.get(Buffer.from(d.token).toString('hex'))!,
      close: async () => (await provider.close(), await s.close()),
    };
  },
};

describe('connection lost under pushes in flight: none lost, none sent twice without cause', () => {
  for (const [name, make] of Object.entries(rigs))
    it(name, { timeout: 60_000 }, async (t: TestContext) => {
      const rig = await make();
      t.after(() => rig.close());
      const ntf = await startNtf({ providers: [rig.provider], creation: MANY_CREATIONS, dispatch: { backoffMs: 20, maxBackoffMs: 200, maxAttempts: 6 } });
      t.after(() => ntf.stop());
      const client = await ntf.client();
      rig.dropNext();
      const devices = Array.from({ length: DEVICES }, () => rig.device());
      const tokenIds = await Promise.all(
        devices.map(async (d) => {
          const kp = crypto.x25519KeyPair();
          return latin1((await client.registerToken(d, kp, crypto.x25519KeyPair().publicKey)).tokenId);
        }),
      );
      await until('every token CONFIRMED', () => tokenIds.every((id) => ntf.ntf.store.token(id)?.status.status === 'CONFIRMED'), 30_000);
      const got = rig.received();
      const retried = (await ntf.ntf.metrics.pushRetries.get()).values.reduce((n, v) => n + v.value, 0);
      assert.ok(retried >= 1, 'the drop cost at least one push its answer, which was retried');
      const want = new Set(devices.map((d) => rig.key(d)));
      assert.equal(new Set(got).size, want.size, 'every device got its push');
      assert.ok(got.every((k) => want.has(k)), 'only those devices');
      assert.ok(got.length - want.size <= retried, `${got.length - want.size} copies, but only ${retried} answers were lost`);
    });
});
