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
  /** The kind's name in errors, and with its article. */
  noun: string;
  a: string;
}

const INVITATION: LinkKind = { scheme: INVITATION_SCHEME, noun: 'invitation', a: 'an invitation' };
const CONTACT_ADDRESS: LinkKind = { scheme: CONTACT_ADDRESS_SCHEME, noun: 'contact address', a: 'a contact address' };
/** The kind a link of the wrong one is recognized as, to say what was given instead. */
const otherKind = (kind: LinkKind) => (kind === INVITATION ? CONTACT_ADDRESS : INVITATION);

function formatLink(kind: LinkKind, i: Invitation): string {
  const relay = new TextEncoder().encode(i.relay);
  const bytes = new Encoder(64 + relay.length).u8(INVITATION_VERSION).short(relay).short(i.sndId).short(i.e2eKey).done();
  return kind.scheme + toBase64Url(bytes);
}

/** Parses a link, or a web URL whose fragment is one. Strict: anything else is an error saying what is wrong. */
function parseLink(kind: LinkKind, text: string): Parsed<Invitation> {
  let link = text.trim();
  const { noun } = kind;
  const other = otherKind(kind);
  if (/^https?:\/\//i.test(link)) {
    const hash = link.indexOf('#');
    if (hash < 0) return { ok: false, error: `the web link has no ${noun} after #` };
    try {
      link = decodeURIComponent(link.slice(hash + 1));
    } catch {
      return { ok: false, error: `the ${noun} in the web link is not valid percent-encoding` };
    }
  }
  if (link.startsWith(other.scheme)) return { ok: false, error: `this is ${other.a}, not ${kind.a}` };
  const m = /^[a-z-]+:([A-Za-z0-9_-]+)$/.exec(link);
  if (!m || !link.startsWith(kind.scheme)) return { ok: false, error: `${kind.a} starts with ${kind.scheme}` };
  const bytes = fromBase64Url(m[1]!);
  if (!bytes) return { ok: false, error: `the ${noun} is not valid base64url` };
  return parse(bytes, (d) => {
    if (d.u8() !== INVITATION_VERSION) throw new ParseError(`unknown ${noun} version`);
    const relayBytes = d.short();
    const relay = String.fromCharCode(...relayBytes);
    if (!parseAddress(relay).ok) throw new ParseError(`the ${noun} names no valid relay address`);
    return { relay, sndId: d.key(ID_LENGTH, 'sender ID'), e2eKey: d.key(32, 'key') };
  });
}

export const formatInvitation = (i: Invitation) => formatLink(INVITATION, i);
export const parseInvitation = (text: string) => parseLink(INVITATION, text);
export const formatContactAddress = (a: ContactAddress) => formatLink(CONTACT_ADDRESS, a);
export const parseContactAddress = (text: string) => parseLink(CONTACT_ADDRESS, text);
