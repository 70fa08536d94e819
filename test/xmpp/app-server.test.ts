// The XEP-0357 app server against Debian's Prosody (mod_cloud_notify) and
// ejabberd (mod_push): a phone (an xmpp.js client) registers its APNs token
// with the app server's ad-hoc command, enables push on its server with the
// node and secret, and goes offline; another account sends it a message; the
// server publishes to the app server, which wakes the phone through the APNs
// test server — with a push that carries neither the body nor the sender.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { xml, type Client } from '@xmpp/client';
import { ApnsProvider } from '../../src/push/apns/provider.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { PUSH_DATA_SIZE } from '../../src/push/device.ts';
import { fromBase64Url } from '../../src/core/encoding.ts';
import { XmppAppServer } from '../../src/xmpp/server.ts';
import { RegistrationStore } from '../../src/xmpp/store.ts';
import { connectClient, enablePush, registerPush } from '../../src/xmpp/testkit/phone.ts';
import { capturedLog } from '../helpers.ts';
import { until } from '../ntf/helpers.ts';
import { ejabberdMissing, startEjabberd } from './ejabberd.ts';
import type { XmppTestServer } from './harness.ts';
import { prosodyMissing, startProsody } from './prosody.ts';

const TOPIC = 'chat.hush.xmpp';

/** The servers the scenario runs on; CI installs both (.ci/run), elsewhere a missing one is skipped. */
const SERVERS = [
  { name: 'Prosody (mod_cloud_notify)', missing: prosodyMissing, start: () => startProsody() },
  { name: 'ejabberd (mod_push)', missing: ejabberdMissing, start: startEjabberd },
];

for (const server of SERVERS) {
  describe(`XEP-0357 app server with ${server.name}`, { skip: server.missing && process.env.CI !== 'true' ? server.missing : false }, () => {
    let xmpp: XmppTestServer;
    let apns: ApnsTestServer;
    let app: XmppAppServer;
    const logs = capturedLog();
    const clients: Client[] = [];

    const connect = async (username: string) => {
      const c = await connectClient(xmpp, username, 'pw');
      clients.push(c);
      return c;
    };

    before(async () => {
      xmpp = await server.start();
      await Promise.all([xmpp.register('bob', 'pw'), xmpp.register('alice', 'pw')]);
      apns = await ApnsTestServer.start({ topics: [TOPIC] });
      const team = apns.keys.create();
      const store = new RegistrationStore();
      app = new XmppAppServer({
        links: [xmpp.component],
        providers: [new ApnsProvider({ host: apns.url, ca: apns.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: TOPIC })],
        store,
        log: logs.log,
      });
      await app.start();
    });

    after(async () => {
      for (const c of clients) await c.stop().catch(() => {});
      await app?.stop();
      await apns?.close();
      await xmpp?.stop();
    });

    test('register, enable, go offline, get a message: the phone is woken by a push with no body and no sender', async () => {
      const token = randomBytes(32).toString('hex');
      const bob = await connect('bob');
      const { node, secret } = await registerPush(bob, xmpp.component.domain, 'apns', { token, 'device-id': 'bobs-phone' });
      await enablePush(bob, xmpp.component.domain, { node, secret });
      await bob.stop();

      const alice = await connect('alice');
      await alice.send(xml('message', { to: `bob@${xmpp.domain}`, type: 'chat' }, xml('body', {}, 'hi from alice')));
      const push = await until('the push at the APNs test server', () => apns.pushes.find((p) => p.token === token), 15_000);
      assert.equal(push.headers['apns-push-type'], 'alert');
      const data = fromBase64Url(push.payload.d as string)!;
      assert.equal(data.length, PUSH_DATA_SIZE, 'the size of every Hush push');
      const raw = JSON.stringify(push.payload);
      for (const leak of ['hi from alice', 'alice', `bob@${xmpp.domain}`]) assert.equal(raw.includes(leak), false, `the push carries ${leak}`);
      // The APNs test server has the push before the provider's send returns: the publish is counted (and logged) after.
      const delivered = await until('the publish counted', async () => (await app.metrics.publishes.get()).values.find((v) => v.labels.result === 'delivered')?.value);
      assert.equal(delivered, 1);
      await until('the publish timed', async () => (await app.metrics.publishSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value === 1);
      const text = logs.text();
      for (const leak of [token, node, `alice@${xmpp.domain}`, `bob@${xmpp.domain}`, 'hi from alice']) assert.equal(text.includes(leak), false, `the log names ${leak}`);
    });
  });
}
