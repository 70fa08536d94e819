// A phone of the XEP-0357 flow, for tests and the XMPP benchmark: an xmpp.js
// client on its own server that registers its device token with the app
// server's ad-hoc command and enables push there with the node and secret it
// got back (docs/xmpp.md).
import { client, xml, type Client } from '@xmpp/client';
import { form, formFields, NS, PUBLISH_OPTIONS } from '../protocol.ts';

/** An account's client, online with presence; errors after start are the caller's to see in its requests. */
export async function connectClient(server: { c2s: number; domain: string }, username: string, password: string, resource = 'phone'): Promise<Client> {
  const c = client({ service: `xmpp://127.0.0.1:${server.c2s}`, domain: server.domain, username, password, resource });
  c.on('error', () => {});
  await c.start();
  await c.send(xml('presence'));
  return c;
}

/** Runs `register-push-<provider>` (fields token, device-id) at the app server `appServer` (its component domain); resolves with the node and secret. */
export async function registerPush(c: Client, appServer: string, provider: string, fields: Record<string, string>): Promise<{ node: string; secret: string }> {
  const reply = await c.iqCaller.request(
    xml('iq', { type: 'set', to: appServer }, xml('command', { xmlns: NS.commands, node: `register-push-${provider}`, action: 'execute' }, form('submit', fields))),
  );
  const result = formFields(reply.getChild('command', NS.commands)?.getChild('x', NS.data));
  const node = result.get('node');
  const secret = result.get('secret');
  if (!node || !secret) throw new Error(`register-push-${provider} returned no node or secret: ${reply.toString()}`);
  return { node, secret };
}

/** XEP-0357 <enable/> on the client's own server: publish to `node` at `appServer` with the secret in publish-options. */
export async function enablePush(c: Client, appServer: string, reg: { node: string; secret: string }): Promise<void> {
  await c.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS.push, jid: appServer, node: reg.node }, form('submit', { secret: reg.secret }, PUBLISH_OPTIONS))));
}
