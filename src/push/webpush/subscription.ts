// A Web Push subscription (RFC 8030 push resource + RFC 8291 keys) as the bytes
// of a DeviceToken {provider: 'webpush'}. UnifiedPush endpoints are Web Push
// endpoints, so they use this form too. Isomorphic: the browser SDK encodes what
// PushSubscription.toJSON() gives it, the server decodes.
//
// Layout (all lengths in bytes):
//
//   short(p256dh)   1 + 65   the user agent's ECDH key: an uncompressed P-256 point (0x04 ‖ x ‖ y)
//   short(auth)     1 + 16   the authentication secret
//   endpoint        the rest: the push resource URL, ASCII, 1..1000
//
// So a token is at most 1083 bytes, well within MAX_DEVICE_TOKEN. The endpoint
// must be https: (RFC 8030 §3 requires TLS); plain http: only for a loopback
// host, where a local UnifiedPush distributor or a test push service listens.
// 1000 bytes is UnifiedPush's limit on an endpoint; browsers' are far shorter.
import { p256 } from '@noble/curves/nist.js';
import { Encoder, fromBase64Url, parse, ParseError, toBase64Url, type Parsed } from '../../core/encoding.ts';
import { MAX_DEVICE_TOKEN } from '../device.ts';

/** Length of the user agent's public key (uncompressed P-256 point). */
export const P256DH_LENGTH = 65;
/** Length of the RFC 8291 authentication secret. */
export const AUTH_SECRET_LENGTH = 16;
/** Longest endpoint URL, in bytes (UnifiedPush's limit). */
export const MAX_ENDPOINT = 1000;
/** Longest encoded subscription. */
export const MAX_WEBPUSH_TOKEN = 2 + P256DH_LENGTH + AUTH_SECRET_LENGTH + MAX_ENDPOINT;

/** The shape of a browser's PushSubscription.toJSON() (keys in base64url). */
export interface WebPushSubscriptionJSON {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface WebPushSubscription {
  endpoint: string;
  /** 65 bytes, 0x04 ‖ x ‖ y. */
  p256dh: Uint8Array;
  /** 16 bytes. */
  auth: Uint8Array;
}

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Why an endpoint is unacceptable, or undefined if it is fine. */
export function endpointProblem(endpoint: string): string | undefined {
  if (endpoint.length === 0) return 'empty endpoint';
  if (endpoint.length > MAX_ENDPOINT) return `endpoint over ${MAX_ENDPOINT} bytes`;
  for (let i = 0; i < endpoint.length; i++) {
    const c = endpoint.charCodeAt(i);
    // printable ASCII without space: a URL as sent on the wire, no IRI forms
    if (c < 0x21 || c > 0x7e) return 'endpoint is not printable ASCII';
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'endpoint is not an absolute URL';
  }
  if (url.username || url.password) return 'endpoint has credentials';
  if (url.hash || endpoint.includes('#')) return 'endpoint has a fragment';
  if (url.protocol === 'https:') return url.hostname ? undefined : 'endpoint has no host';
  if (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname)) return undefined;
  return 'endpoint must be https: (http: only on loopback)';
}

function keyProblem(p256dh: Uint8Array, auth: Uint8Array): string | undefined {
  if (p256dh.length !== P256DH_LENGTH || p256dh[0] !== 0x04) return `p256dh must be a ${P256DH_LENGTH}-byte uncompressed P-256 point`;
  // RFC 8291 §7: the application server must check the key is on the curve;
  // checked here so a bad key is refused when the token is registered, not at each push
  try {
    p256.Point.fromBytes(p256dh);
  } catch {
    return 'p256dh is not a point on P-256';
  }
  if (auth.length !== AUTH_SECRET_LENGTH) return `auth must be ${AUTH_SECRET_LENGTH} bytes`;
  return undefined;
}

// Some older browsers padded their base64url; the padding carries nothing.
const b64 = (s: string) => fromBase64Url(s.replace(/=+$/, ''));

/** DeviceToken bytes of a subscription as PushSubscription.toJSON() gives it. Throws TypeError if invalid. */
export function encodeWebPushSubscription(sub: WebPushSubscriptionJSON): Uint8Array {
  const p256dh = typeof sub?.keys?.p256dh === 'string' ? b64(sub.keys.p256dh) : undefined;
  const auth = typeof sub?.keys?.auth === 'string' ? b64(sub.keys.auth) : undefined;
  if (!p256dh || !auth) throw new TypeError('subscription keys must be base64url strings');
  return encodeWebPushSubscriptionBytes({ endpoint: sub.endpoint, p256dh, auth });
}

/** DeviceToken bytes of a subscription with binary keys. Throws TypeError if invalid. */
export function encodeWebPushSubscriptionBytes(sub: WebPushSubscription): Uint8Array {
  if (typeof sub.endpoint !== 'string') throw new TypeError('endpoint must be a string');
  const problem = endpointProblem(sub.endpoint) ?? keyProblem(sub.p256dh, sub.auth);
  if (problem) throw new TypeError(problem);
  const e = new Encoder(2 + P256DH_LENGTH + AUTH_SECRET_LENGTH + sub.endpoint.length).short(sub.p256dh).short(sub.auth);
  for (let i = 0; i < sub.endpoint.length; i++) e.u8(sub.endpoint.charCodeAt(i));
  const out = e.done();
  if (out.length > MAX_DEVICE_TOKEN) throw new TypeError('subscription too long'); // cannot happen with MAX_ENDPOINT
  return out;
}

/** Strict decoding; never throws. Key and endpoint copies do not alias `bytes`. */
export function decodeWebPushSubscription(bytes: Uint8Array): Parsed<WebPushSubscription> {
  return parse(bytes, (d): WebPushSubscription => {
    const p256dh = d.key(P256DH_LENGTH, 'p256dh').slice();
    const auth = d.key(AUTH_SECRET_LENGTH, 'auth').slice();
    const raw = d.raw(d.remaining);
    let endpoint = '';
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i]!;
      if (c < 0x21 || c > 0x7e) throw new ParseError('endpoint is not printable ASCII');
      endpoint += String.fromCharCode(c);
    }
    const problem = endpointProblem(endpoint) ?? keyProblem(p256dh, auth);
    if (problem) throw new ParseError(problem);
    return { endpoint, p256dh, auth };
  });
}

/** The PushSubscription.toJSON() shape of a decoded subscription (for Web Push libraries). */
export function webPushSubscriptionJSON(sub: WebPushSubscription): WebPushSubscriptionJSON {
  return { endpoint: sub.endpoint, keys: { p256dh: toBase64Url(sub.p256dh), auth: toBase64Url(sub.auth) } };
}
