// What the XMPP app server reads and writes (docs/xmpp.md): XEP-0357 publishes
// from users' servers, and the registration ad-hoc commands (XEP-0050, with
// XEP-0004 data forms) from their clients.
import { xml, type Element } from '@xmpp/component';

export const NS = {
  pubsub: 'http://jabber.org/protocol/pubsub',
  commands: 'http://jabber.org/protocol/commands',
  data: 'jabber:x:data',
  discoInfo: 'http://jabber.org/protocol/disco#info',
  discoItems: 'http://jabber.org/protocol/disco#items',
  push: 'urn:xmpp:push:0',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
} as const;

export const PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';

/** The data form's fields: var → its first value (an empty string when none). */
export function formFields(form: Element | undefined): Map<string, string> {
  const fields = new Map<string, string>();
  for (const f of form?.getChildren('field') ?? []) {
    const name = f.attrs.var;
    if (name) fields.set(name, f.getChildText('value') ?? '');
  }
  return fields;
}

/** A data form of `type` with these fields. */
export function form(type: 'result' | 'form' | 'submit', fields: Record<string, string>, formType?: string): Element {
  const x = xml('x', { xmlns: NS.data, type });
  if (formType) x.append(xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, formType)));
  for (const [name, value] of Object.entries(fields)) x.append(xml('field', { var: name }, xml('value', {}, value)));
  return x;
}

/** What a XEP-0357 publish names: the node and the secret from publish-options. The summary form is never read. */
export interface Publish {
  node: string;
  secret: string | undefined;
}

/** The publish in a pubsub IQ child; undefined if it is not one. */
export function readPublish(pubsub: Element): Publish | undefined {
  const publish = pubsub.getChild('publish');
  const node = publish?.attrs.node;
  if (!node) return undefined;
  const options = formFields(pubsub.getChild('publish-options')?.getChild('x', NS.data));
  return { node, secret: options.get('secret') };
}

/** A stanza error element (RFC 6120 §8.3): `type` and condition. */
export const stanzaError = (type: 'cancel' | 'auth' | 'modify' | 'wait', condition: string): Element =>
  xml('error', { type }, xml(condition, { xmlns: NS.stanzas }));

/** A completed ad-hoc command's reply, with a result form. */
export const completed = (node: string, sessionid: string, fields: Record<string, string>): Element =>
  xml('command', { xmlns: NS.commands, node, sessionid, status: 'completed' }, form('result', fields));
