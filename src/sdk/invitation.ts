// The links that start a contact (docs/sdk.md §2): a one-time invitation
// (`hush-invite:`) and a long-lived contact address (`hush-address:`). Both
// say where to send the first message and the key to encrypt it to; their
// text form is the scheme and the base64url bytes, alone or as the fragment of
// a web link (`https://…/#hush-invite:…`), so a web page can carry it without
// the server seeing it.
import { parseAddress } from '../core/address.ts';
import { Encoder, fromBase64Url, parse, ParseError, toBase64Url, type Parsed } from '../core/encoding.ts';
import { ID_LENGTH } from '../relay/protocol.ts';

export const INVITATION_VERSION = 1;
export const INVITATION_SCHEME = 'hush-invite:';
export const CONTACT_ADDRESS_SCHEME = 'hush-address:';

export interface Invitation {
  /** The inviter's relay, as a pinned address (hush://fingerprint@host:port). */
  relay: string;
  /** The sender ID of the inviter's receive queue. */
  sndId: Uint8Array;
  /** The inviter's X25519 key for end-to-end encryption. */
  e2eKey: Uint8Array;
}

/** A contact address has the invitation's fields: the address queue's relay and sender ID, the address key. */
export type ContactAddress = Invitation;

interface LinkKind {
  scheme: string;
  /** The kind's name in errors, with its article. */
  a: string;
  the: string;
  /** The other kind's scheme, recognized to say what was given instead. */
  other: { scheme: string; a: string };
}

const INVITATION: LinkKind = {
  scheme: INVITATION_SCHEME,
  a: 'an invitation',
  the: 'the invitation',
  other: { scheme: CONTACT_ADDRESS_SCHEME, a: 'a contact address' },
};
const CONTACT_ADDRESS: LinkKind = {
  scheme: CONTACT_ADDRESS_SCHEME,
  a: 'a contact address',
  the: 'the contact address',
  other: { scheme: INVITATION_SCHEME, a: 'an invitation' },
};

function formatLink(kind: LinkKind, i: Invitation): string {
  const relay = new TextEncoder().encode(i.relay);
  const bytes = new Encoder(64 + relay.length).u8(INVITATION_VERSION).short(relay).short(i.sndId).short(i.e2eKey).done();
  return kind.scheme + toBase64Url(bytes);
}

/** Parses a link, or a web URL whose fragment is one. Strict: anything else is an error saying what is wrong. */
function parseLink(kind: LinkKind, text: string): Parsed<Invitation> {
  let link = text.trim();
  const noun = kind.the.slice(4);
  if (/^https?:\/\//i.test(link)) {
    const hash = link.indexOf('#');
    if (hash < 0) return { ok: false, error: `the web link has no ${noun} after #` };
    try {
      link = decodeURIComponent(link.slice(hash + 1));
    } catch {
      return { ok: false, error: `${kind.the} in the web link is not valid percent-encoding` };
    }
  }
  if (link.startsWith(kind.other.scheme)) return { ok: false, error: `this is ${kind.other.a}, not ${kind.a}` };
  const m = /^[a-z-]+:([A-Za-z0-9_-]+)$/.exec(link);
  if (!m || !link.startsWith(kind.scheme)) return { ok: false, error: `${kind.a} starts with ${kind.scheme}` };
  const bytes = fromBase64Url(m[1]!);
  if (!bytes) return { ok: false, error: `${kind.the} is not valid base64url` };
  return parse(bytes, (d) => {
    if (d.u8() !== INVITATION_VERSION) throw new ParseError(`unknown ${noun} version`);
    const relayBytes = d.short();
    const relay = String.fromCharCode(...relayBytes);
    if (!parseAddress(relay).ok) throw new ParseError(`${kind.the} names no valid relay address`);
    return { relay, sndId: d.key(ID_LENGTH, 'sender ID'), e2eKey: d.key(32, 'key') };
  });
}

export const formatInvitation = (i: Invitation) => formatLink(INVITATION, i);
export const parseInvitation = (text: string) => parseLink(INVITATION, text);
export const formatContactAddress = (a: ContactAddress) => formatLink(CONTACT_ADDRESS, a);
export const parseContactAddress = (text: string) => parseLink(CONTACT_ADDRESS, text);
