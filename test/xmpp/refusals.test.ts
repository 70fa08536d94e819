// The app server refuses what XEP-0357 and its registration commands say it
// must, through Debian's Prosody: a test client sends the publishes a user's
// server would (the app server trusts only the node's secret, not the sender).
// A wrong secret, an unknown node, a node past its push budget, a dead device
// token (its registration goes), bad registrations and unregistering without
// the secret are refused; unregistering with it ends the node.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { xml, type Client, type Element } from '@xmpp/client';
import { connectClient, registerPush } from '../../src/xmpp/testkit/phone.ts';
import { CaptureProvider, forDevice } from '../../src/push/stand-ins/capture-provider.ts';
import { XmppAppServer } from '../../src/xmpp/server.ts';
import { RegistrationStore } from '../../src/xmpp/store.ts';
import { silent } from '../helpers.ts';
import { prosodyMissing, startProsody, type Prosody } from './prosody.ts';

const skip = prosodyMissing && process.env.CI !== 'true' ? prosodyMissing : false;
const NS_COMMANDS = 'http://jabber.org/protocol/commands';
const NS_DATA = 'jabber:x:data';
const field = (name: string, value: string) => xml('field', { var: name }, xml('value', {}, value));
const submit = (fields: Record<string, string>) => xml('x', { xmlns: NS_DATA, type: 'submit' }, ...Object.entries(fields).map(([k, v]) => field(k, v)));

describe('XEP-0357 app server: refusals', { skip }, () => {
  let prosody: Prosody;
  let app: XmppAppServer;
  let eve: Client;
  const provider = new CaptureProvider(['apns']);
  const store = new RegistrationStore();

  /** The IQ's reply: its error condition, or 'result'. */
  const ask = async (iq: Element): Promise<{ outcome: string; reply?: Element }> => {
    try {
      return { outcome: 'result', reply: await eve.iqCaller.request(iq) };
    } catch (e) {
      return { outcome: (e as { condition?: string }).condition ?? String(e) };
    }
  };
  const command = (node: string, fields: Record<string, string>) =>
    ask(xml('iq', { type: 'set', to: 'push.localhost' }, xml('command', { xmlns: NS_COMMANDS, node, action: 'execute' }, submit(fields))));
  const register = async (token = randomBytes(32).toString('hex')) => ({ token, ...(await registerPush(eve, 'push.localhost', 'apns', { token })) });
  const publish = (node: string, secret: string) =>
    ask(
      xml(
        'iq',
        { type: 'set', to: 'push.localhost' },
        xml(
          'pubsub',
          { xmlns: 'http://jabber.org/protocol/pubsub' },
          xml('publish', { node }, xml('item', {}, xml('notification', { xmlns: 'urn:xmpp:push:0' }))),
          xml('publish-options', {}, submit({ FORM_TYPE: 'http://jabber.org/protocol/pubsub#publish-options', secret })),
        ),
      ),
    ).then((r) => r.outcome);

  before(async () => {
    prosody = await startProsody();
    await prosody.register('eve', 'pw');
    app = new XmppAppServer({
      links: [prosody.component],
      providers: [provider],
      store,
      log: silent,
      pushesPerNode: { burst: 2, perMinute: 1 },
      registrationsPerServer: { burst: 5, perMinute: 1 },
    });
    await app.start();
    eve = await connectClient(prosody, 'eve', 'pw');
  });

  after(async () => {
    await eve?.stop().catch(() => {});
    await app?.stop();
    await prosody?.stop();
  });

  test('secrets, unknown nodes and the per-node budget', async () => {
    const a = await register();
    assert.equal(await publish(a.node, randomBytes(24).toString('base64url')), 'not-authorized');
    assert.equal(await publish('no-such-node', a.secret), 'item-not-found');
    assert.equal(provider.attempts.length, 0, 'nothing pushed for a refused publish');
    assert.equal(await publish(a.node, a.secret), 'result');
    assert.equal(await publish(a.node, a.secret), 'result');
    assert.equal(await publish(a.node, a.secret), 'resource-constraint', 'past the budget: wait');
    assert.equal(provider.attempts.filter((x) => forDevice({ provider: 'apns', token: Buffer.from(a.token, 'hex') })(x.req)).length, 2);
    const again = await register(a.token);
    assert.deepEqual([again.node, again.secret], [a.node, a.secret], 'registering the same token again returns its node');
  });

  test('a dead device token ends its registration; unregistering needs the secret', async () => {
    const dead = await register();
    provider.respond = (req) => (Buffer.from(req.device.token).toString('hex') === dead.token ? { outcome: 'invalid', reason: 'UNREGISTERED' } : { outcome: 'delivered' });
    assert.equal(await publish(dead.node, dead.secret), 'item-not-found', 'the server disables the registration on this error');
    assert.equal(store.byNode(dead.node), undefined);

    const b = await register();
    assert.equal((await command('unregister-push', { node: b.node, secret: randomBytes(24).toString('base64url') })).outcome, 'not-authorized');
    assert.equal((await command('unregister-push', { node: b.node, secret: b.secret })).outcome, 'result');
    assert.equal(await publish(b.node, b.secret), 'item-not-found');
  });

  test('new registrations per XMPP server are bounded; registering a known token again is not one', async () => {
    const known = await register();
    let refused = 0;
    for (let i = 0; i < 5; i++) {
      const r = await command('register-push-apns', { token: randomBytes(32).toString('hex') });
      if (r.outcome === 'resource-constraint') refused++;
    }
    assert.ok(refused >= 1, 'past the server\'s budget: wait');
    assert.equal((await register(known.token)).node, known.node);
  });

  test('bad registrations', async () => {
    assert.equal((await command('register-push-apns', { token: 'not hex' })).outcome, 'bad-request');
    assert.equal((await command('register-push-apns', {})).outcome, 'bad-request');
    assert.equal((await command('register-push-fcm', { token: 'x' })).outcome, 'feature-not-implemented', 'no FCM provider here');
    assert.equal((await command('something-else', {})).outcome, 'item-not-found');
  });
});
