// FCM HTTP v1 rendering of a push: the body of POST /v1/projects/<id>/messages:send.
//
//   {"message":{"token":<registration token>,
//               "data":{"d":<base64url of the sealed push data>},
//               "android":{"priority":"high"|"normal","ttl":"<seconds>s"}}}
//
// Data-only messages: no `notification`, so Google sees no text at all and the
// app builds the notification itself after opening `d` (FCM hands a data
// message to the app's onMessageReceived, foreground or not). FCM is used for
// Android here (iOS goes to APNs directly), hence only an `android` block.
//
// Priority (Google's "Set and manage Android message priority"): a message push
// is high, so FCM wakes a device in Doze and delivers at once. The two silent
// kinds are normal: a normal-priority data message reaches a dozing device only
// when it leaves Doze (a maintenance window or the user waking it) — fine for a
// periodic check — and FCM deprioritizes an app's high-priority messages to
// normal when they do not lead to a visible notification, which silent pushes
// never do. Verification and check share priority and TTL, so Google cannot
// tell them apart. No collapse_key: Android keeps only 4 per app, and a check
// collapsing a pending verification would lose its code.
import type { PushKind } from '../device.ts';
import { DEFAULT_TTL_SECONDS, type PushRequest } from '../provider.ts';

/** FCM's limit on a message's data payload, keys and values together (bytes; 2048 for topic messages). */
export const FCM_MAX_DATA = 4096;
/** Longest android.ttl FCM accepts: 4 weeks. */
export const FCM_MAX_TTL_SECONDS = 2_419_200;

/**
 * A registration token, as the DeviceToken's bytes carry it: the UTF-8 bytes
 * of the token string the app got from FirebaseMessaging.getToken(). Tokens
 * seen are ~150–200 characters of base64url with a ':' after the instance ID;
 * Google documents no format, so the check is loose: 32–1024 characters of
 * base64/base64url, ':' and '.'.
 */
export const MIN_FCM_TOKEN = 32;
export const MAX_FCM_TOKEN = 1024;
const TOKEN_CHARS = /^[A-Za-z0-9_\-:.+/=]+$/;

export type FcmPriority = 'high' | 'normal';

export interface FcmAndroidConfig {
  priority: FcmPriority;
  /** A protobuf Duration in JSON: seconds with an 's' suffix. */
  ttl: string;
}

export interface FcmMessage {
  message: {
    token: string;
    data: { d: string };
    android: FcmAndroidConfig;
  };
}

export interface FcmRenderOptions {
  ttlSeconds?: Partial<Record<PushKind, number>>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The registration token string of a device token's bytes, or undefined if it cannot be one. */
export function fcmRegistrationToken(bytes: Uint8Array): string | undefined {
  if (bytes.length < MIN_FCM_TOKEN || bytes.length > MAX_FCM_TOKEN) return undefined;
  let s: string;
  try {
    s = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  return TOKEN_CHARS.test(s) ? s : undefined;
}

export const FCM_PRIORITY: Readonly<Record<PushKind, FcmPriority>> = { message: 'high', verification: 'normal', check: 'normal' };

/** Bytes of a data payload as FCM counts them: every key and value, UTF-8. */
export function fcmDataSize(data: Readonly<Record<string, string>>): number {
  let n = 0;
  for (const [k, v] of Object.entries(data)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

/** Checks a configured TTL: whole seconds within FCM's 0–4 weeks. */
export function checkFcmTtl(seconds: number): void {
  if (!(Number.isInteger(seconds) && seconds >= 0 && seconds <= FCM_MAX_TTL_SECONDS))
    throw new RangeError(`FCM ttl must be whole seconds from 0 to ${FCM_MAX_TTL_SECONDS}, got ${seconds}`);
}

/** The message. Throws a RangeError if the data would exceed FCM_MAX_DATA (a sealed push never does). */
export function fcmMessage(token: string, req: Pick<PushRequest, 'kind' | 'data'>, opts: FcmRenderOptions = {}): FcmMessage {
  const d = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength).toString('base64url');
  const data = { d };
  const size = fcmDataSize(data);
  if (size > FCM_MAX_DATA) throw new RangeError(`FCM data payload of ${size} bytes exceeds ${FCM_MAX_DATA}`);
  const ttl = opts.ttlSeconds?.[req.kind] ?? DEFAULT_TTL_SECONDS[req.kind];
  checkFcmTtl(ttl);
  return { message: { token, data, android: { priority: FCM_PRIORITY[req.kind], ttl: `${ttl}s` } } };
}

/** The JSON body, as sent. */
export function fcmBody(token: string, req: Pick<PushRequest, 'kind' | 'data'>, opts: FcmRenderOptions = {}): string {
  return JSON.stringify(fcmMessage(token, req, opts));
}
