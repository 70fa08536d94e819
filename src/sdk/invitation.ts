// A one-time invitation link: where to send the first message, and the key to
// encrypt it to (docs/sdk.md §2). Its text form is `hush-invite:<base64url>`,
// alone or as the fragment of a web link (`https://…/#hush-invite:…`), so a
// web page can carry it without the server seeing it.
import { parseAddress } from '../core/address.ts';
import { Encoder, fromBase64Url, parse, ParseError, toBase64Url, type Parsed } from '../core/encoding.ts';
import { ID_LENGTH } from '../relay/protocol.ts';

export const INVITATION_VERSION = 1;
export const INVITATION_SCHEME = 'hush-invite:';

export interface Invitation {
  /** The inviter's relay, as a pinned address (hush://fingerprint@host:port). */
  relay: string;
  /** The sender ID of the inviter's receive queue. */
  sndId: Uint8Array;
  /** The inviter's X25519 key for end-to-end encryption. */
  e2eKey: Uint8Array;
}

export function formatInvitation(i: Invitation): string {
  const relay = new TextEncoder().encode(i.relay);
  const bytes = new Encoder(64 + relay.length).u8(INVITATION_VERSION).short(relay).short(i.sndId).short(i.e2eKey).done();
  return INVITATION_SCHEME + toBase64Url(bytes);
}

const LINK = /^hush-invite:([A-Za-z0-9_-]+)$/;

/** Parses a link, or a web URL whose fragment is one. Strict: anything else is an error saying what is wrong. */
export function parseInvitation(text: string): Parsed<Invitation> {
  let link = text.trim();
  if (/^https?:\/\//i.test(link)) {
    const hash = link.indexOf('#');
    if (hash < 0) return { ok: false, error: 'the web link has no invitation after #' };
    try {
      link = decodeURIComponent(link.slice(hash + 1));
    } catch {
      return { ok: false, error: 'the invitation in the web link is not valid percent-encoding' };
    }
  }
  const m = LINK.exec(link);
  if (!m) return { ok: false, error: `an invitation starts with ${INVITATION_SCHEME}` };
  const bytes = fromBase64Url(m[1]!);
  if (!bytes) return { ok: false, error: 'the invitation is not valid base64url' };
  return parse(bytes, (d) => {
    if (d.u8() !== INVITATION_VERSION) throw new ParseError('unknown invitation version');
    const relayBytes = d.short();
    const relay = String.fromCharCode(...relayBytes);
    if (!parseAddress(relay).ok) throw new ParseError('the invitation names no valid relay address');
    return { relay, sndId: d.key(ID_LENGTH, 'sender ID'), e2eKey: d.key(32, 'key') };
  });
}
