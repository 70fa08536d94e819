// The push gateway's HTTP API: a notification server hands it a sealed push to
// deliver; the gateway holds the push credentials (docs/push.md §4). Shared by
// the gateway (src/gateway/server.ts) and its client (./provider.ts).
//
//   POST /v1/push    authorization: Bearer <server key>, content-type: application/json
//     {"provider": "apns"|…|"sealed", "token": b64url, "kind": "message"|"verification"|"check", "data": b64url}
//     200 → a PushResult: {"outcome":"delivered"} | {"outcome":"retry","reason":…,"afterMs"?:…}
//                         | {"outcome":"invalid","reason":"BAD"|…} | {"outcome":"failed","reason":…}
//     400 bad request · 401 unknown key · 413 body too large · 429 rate or quota (retry-after)
//   GET /v1/info     {"sealKey": b64url X25519 public key, "providers": [...], "vapidKey"?: b64url}
//                    no auth: apps need these keys
//
// The JSON is parsed strictly both ways: a field missing, extra or of the wrong
// type is a bad request (server) or a failed push (client).
import { fromBase64Url, toBase64Url } from '../../core/encoding.ts';
import { isInvalidReason, isProvider, isPushKind, MAX_DEVICE_TOKEN, PUSH_DATA_SIZE, type DeviceToken, type Provider } from '../device.ts';
import type { PushRequest, PushResult } from '../provider.ts';

export const PUSH_PATH = '/v1/push';
export const INFO_PATH = '/v1/info';
/** Largest request body: the JSON of one push with the largest token. */
export const MAX_REQUEST_BYTES = 8192;

export interface GatewayInfo {
  /** X25519 public key apps seal device tokens to (b64url). */
  sealKey: string;
  providers: Provider[];
  /** With Web Push: the applicationServerKey (b64url) browsers subscribe with. */
  vapidKey?: string;
}

export function encodePushRequest(r: PushRequest): string {
  return JSON.stringify({ provider: r.device.provider, token: toBase64Url(r.device.token), kind: r.kind, data: toBase64Url(r.data) });
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasOnly = (o: Record<string, unknown>, keys: string[]) => Object.keys(o).every((k) => keys.includes(k));

export function decodePushRequest(body: string): Decoded<PushRequest> {
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return { ok: false, error: 'body is not JSON' };
  }
  if (!isObject(j) || !hasOnly(j, ['provider', 'token', 'kind', 'data'])) return { ok: false, error: 'expected {provider, token, kind, data}' };
  const { provider, token, kind, data } = j;
  if (typeof provider !== 'string' || !isProvider(provider)) return { ok: false, error: 'unknown provider' };
  if (typeof kind !== 'string' || !isPushKind(kind)) return { ok: false, error: 'unknown kind' };
  const t = typeof token === 'string' ? fromBase64Url(token) : undefined;
  if (!t || t.length === 0 || t.length > MAX_DEVICE_TOKEN) return { ok: false, error: 'bad token' };
  const d = typeof data === 'string' ? fromBase64Url(data) : undefined;
  if (!d || d.length !== PUSH_DATA_SIZE) return { ok: false, error: `data must be ${PUSH_DATA_SIZE} bytes` };
  const device: DeviceToken = { provider, token: t };
  return { ok: true, value: { device, kind, data: d } };
}

export const encodePushResult = (r: PushResult): string => JSON.stringify(r);

export function decodePushResult(body: string): Decoded<PushResult> {
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return { ok: false, error: 'response is not JSON' };
  }
  const bad = { ok: false, error: 'not a push result' } as const;
  if (!isObject(j)) return bad;
  switch (j.outcome) {
    case 'delivered':
      return hasOnly(j, ['outcome']) ? { ok: true, value: { outcome: 'delivered' } } : bad;
    case 'invalid':
      return hasOnly(j, ['outcome', 'reason']) && typeof j.reason === 'string' && isInvalidReason(j.reason)
        ? { ok: true, value: { outcome: 'invalid', reason: j.reason } }
        : bad;
    case 'failed':
      return hasOnly(j, ['outcome', 'reason']) && typeof j.reason === 'string' ? { ok: true, value: { outcome: 'failed', reason: j.reason } } : bad;
    case 'retry': {
      if (!hasOnly(j, ['outcome', 'reason', 'afterMs']) || typeof j.reason !== 'string') return bad;
      if (j.afterMs === undefined) return { ok: true, value: { outcome: 'retry', reason: j.reason } };
      return typeof j.afterMs === 'number' && Number.isFinite(j.afterMs) && j.afterMs >= 0
        ? { ok: true, value: { outcome: 'retry', reason: j.reason, afterMs: j.afterMs } }
        : bad;
    }
    default:
      return bad;
  }
}
