// UnifiedPush through Prosody (mod_unified_push, Debian's prosody-modules):
// Bob's XMPP client asks his server for a UnifiedPush endpoint, and his phone
// registers it with Hush's notification server as a Web Push subscription.
// The notification server's Web Push provider (RFC 8030/8291/8292) POSTs each
// push to Prosody, which hands it to Bob's XMPP stream; the phone decrypts it
// and the SDK's push handler turns it into "Alice: hi".
import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { client, xml } from '@xmpp/client';
import { WebPushProvider } from '../../src/push/webpush/provider.ts';
import { createVapidKey } from '../../src/push/webpush/vapid.ts';
import { decryptWebPush } from '../../src/push/webpush/ece.ts';
import { webPushToken } from '../../src/sdk/device.ts';
import type { Notification } from '../../src/sdk/push-handler.ts';
import { connect, Phone, startStack, until, untilSubscribed } from '../sdk/helpers.ts';
import { prosodyMissing, startProsody } from './prosody.ts';

const skip = prosodyMissing && process.env.CI !== 'true' ? prosodyMissing : false;
const NS_UP = 'http://gultsch.de/xmpp/drafts/unified-push';

test('a push through Prosody\'s UnifiedPush endpoint becomes "Alice: hi" on the phone reading its XMPP stream', { skip, timeout: 60_000 }, async (t) => {
  const prosody = await startProsody({ modules: ['unified_push'], http: true });
  t.after(() => prosody.stop());
  await prosody.register('bob', 'pw');

  // Bob's XMPP client: the UnifiedPush distributor. Each push is an IQ with the encrypted body in base64.
  const xmpp = client({ service: `xmpp://127.0.0.1:${prosody.c2s}`, domain: prosody.domain, username: 'bob', password: 'pw', resource: 'phone' });
  xmpp.on('error', () => {});
  const bodies: Buffer[] = [];
  xmpp.iqCallee.set(NS_UP, 'push', (ctx) => {
    bodies.push(Buffer.from(ctx.element.text(), 'base64'));
    return true;
  });
  await xmpp.start();
  t.after(() => xmpp.stop().catch(() => {}));
  const b64 = () => randomBytes(32).toString('base64');
  const registered = (await xmpp.iqCaller.request(xml('iq', { type: 'set', to: prosody.domain }, xml('register', { xmlns: NS_UP, instance: b64(), application: b64() })))).getChild('registered', NS_UP);
  const endpoint = registered?.attrs.endpoint;
  assert.ok(endpoint?.startsWith(`http://localhost:${prosody.http}/`), `an endpoint on Prosody's HTTP port: ${endpoint}`);

  // The phone's Web Push keys (RFC 8291), and the subscription it registers with Hush.
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  const subscription = { endpoint: endpoint!, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } };
  let opened = 0;
  /** The next push that reached the XMPP stream, decrypted: what the phone hands the push handler. */
  const nextPush = async (what: string) => {
    const body = await until(what, () => bodies[opened], 15_000);
    opened++;
    return decryptWebPush(body, { uaPrivate: ecdh, uaPublic: ecdh.getPublicKey(), authSecret: auth });
  };

  const vapid = createVapidKey();
  const stack = await startStack(t, {
    ntf: { providers: [new WebPushProvider({ vapid: { privateKey: vapid.privateKey, subject: 'mailto:ops@hush.test' }, allowPrivateNetworks: true })] },
  });
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.client.registerDevice(webPushToken(subscription));
  assert.deepEqual(await bob.client.handlePush(await nextPush('the verification push')), []);
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE');

  const { atInviter: bobAtAlice } = await connect(alice, bob);
  await untilSubscribed(bob, 1);
  bob.client.stop();
  await alice.client.send(bobAtAlice, 'hi');
  // Handed to the push handler one by one, as they reach the XMPP stream (the handshake's came too).
  const shown: Notification[] = [];
  while (!shown.some((n) => n.body === 'hi')) shown.push(...(await bob.client.handlePush(await nextPush('the message push'))));
  const hi = shown.find((n) => n.body === 'hi')!;
  assert.equal(hi.title, 'Alice');
});
