// APNs rendering of a push: the JSON body and the request headers.
//
// Apple sees only what it must: a generic alert (the app's Notification Service
// Extension replaces it on the device after opening `d`), or a silent
// background wake-up, plus the sealed fixed-size blob `d` (base64url). Every
// kind of push therefore has the same shape of body and one size per kind,
// well under Apple's 4096-byte limit for the whole JSON.
//
//   message:      {"aps":{"alert":{"title":…,"body":…},"mutable-content":1,"category":"MESSAGE"},"d":"…"}
//                 apns-push-type alert, apns-priority 10
//   verification: {"aps":{"content-available":1},"d":"…"}   background, priority 5
//   check:        {"aps":{"content-available":1},"d":"…"}   background, priority 5
// The two background kinds share every header and their lifetime, so Apple
// cannot tell a verification from a periodic check.
import { PUSH_DATA_SIZE, type PushKind } from '../device.ts';
import { DEFAULT_TTL_SECONDS, type PushRequest } from '../provider.ts';

/** Largest JSON body APNs accepts for a (non-VoIP) notification, in bytes. */
export const APNS_MAX_PAYLOAD = 4096;

export interface ApnsAlert {
  title: string;
  body: string;
}

/** What the device shows if the extension cannot run (and all that Apple sees). */
export const DEFAULT_ALERT: ApnsAlert = { title: 'New message', body: 'You have a new message' };

/** The category of message alerts, so the app can attach actions to them. */
export const MESSAGE_CATEGORY = 'MESSAGE';

export type ApnsPushType = 'alert' | 'background';

export interface ApnsHeaders {
  'apns-push-type': ApnsPushType;
  'apns-priority': '10' | '5';
  /** UNIX seconds after which Apple drops the push if it could not deliver it. */
  'apns-expiration': string;
  'apns-topic': string;
  'apns-collapse-id'?: string;
}

export interface ApnsRenderOptions {
  /** The app's bundle ID. */
  topic: string;
  alert?: ApnsAlert;
  ttlSeconds?: Partial<Record<PushKind, number>>;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

export interface ApnsRendered {
  headers: ApnsHeaders;
  body: Buffer;
}

// The body is a fixed JSON prefix per kind and alert (encoded once), then `d`:
// base64url is ASCII and needs no escaping, so the body is assembled in one
// buffer without JSON or UTF-8 encoding per push (this is the send path).
interface Prefix {
  text: string;
  utf8: Buffer;
}
const BACKGROUND_PREFIX = bodyPrefix({ 'content-available': 1 });
const alertPrefixes = new WeakMap<ApnsAlert, Prefix>();

function bodyPrefix(aps: object): Prefix {
  const empty = JSON.stringify({ aps, d: '' });
  const text = empty.slice(0, -2); // up to and including d's opening quote
  return { text, utf8: Buffer.from(text) };
}

function prefixOf(kind: PushKind, alert: ApnsAlert): Prefix {
  if (kind !== 'message') return BACKGROUND_PREFIX;
  let p = alertPrefixes.get(alert);
  if (!p) {
    p = bodyPrefix({ alert: { title: alert.title, body: alert.body }, 'mutable-content': 1, category: MESSAGE_CATEGORY });
    alertPrefixes.set(alert, p);
  }
  return p;
}

/** The JSON body as sent: UTF-8 bytes. Throws if it would exceed APNS_MAX_PAYLOAD (only a very long custom alert can). */
export function apnsBodyBytes(req: Pick<PushRequest, 'kind' | 'data'>, alert: ApnsAlert = DEFAULT_ALERT): Buffer {
  const prefix = prefixOf(req.kind, alert).utf8;
  const d = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength).toString('base64url');
  const size = prefix.length + d.length + 2;
  if (size > APNS_MAX_PAYLOAD) throw new RangeError(`APNs payload of ${size} bytes exceeds ${APNS_MAX_PAYLOAD}`);
  const body = Buffer.allocUnsafe(size);
  prefix.copy(body);
  body.write(d, prefix.length, 'latin1');
  body[size - 2] = 0x22; // "
  body[size - 1] = 0x7d; // }
  return body;
}

/** Whether a message push (its data always PUSH_DATA_SIZE bytes) with this alert fits APNs's limit. */
export const alertFits = (alert: ApnsAlert) =>
  prefixOf('message', alert).utf8.length + Math.ceil((PUSH_DATA_SIZE * 4) / 3) + 2 <= APNS_MAX_PAYLOAD;

/** The JSON body as text. */
export const apnsBody = (req: Pick<PushRequest, 'kind' | 'data'>, alert: ApnsAlert = DEFAULT_ALERT): string => apnsBodyBytes(req, alert).toString('utf8');

export function apnsHeaders(kind: PushKind, opts: ApnsRenderOptions): ApnsHeaders {
  const now = opts.now ?? Date.now;
  const ttl = opts.ttlSeconds?.[kind] ?? DEFAULT_TTL_SECONDS[kind];
  const alert = kind === 'message';
  const headers: ApnsHeaders = {
    'apns-push-type': alert ? 'alert' : 'background',
    // Apple requires 5 for background pushes; 10 delivers alerts at once
    'apns-priority': alert ? '10' : '5',
    'apns-expiration': String(Math.floor(now() / 1000) + ttl),
    'apns-topic': opts.topic,
  };
  return headers;
}

export function renderApns(req: Pick<PushRequest, 'kind' | 'data'>, opts: ApnsRenderOptions): ApnsRendered {
  return { headers: apnsHeaders(req.kind, opts), body: apnsBodyBytes(req, opts.alert) };
}
