// What the FCM test server (fcm-server.ts) answers about a send's body, and
// Google's error bodies, as Google documents in "FCM error codes" and the v1
// REST reference (Message, AndroidConfig, ErrorCode): errors in the JSON shape
// {"error":{"code","message","status","details"?}}; a malformed message gets
// 400 INVALID_ARGUMENT with the FcmError detail and, where Google names it, the
// google.rpc.BadRequest field.
import type { Answer } from './google-oauth.ts';

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';
/** Loose registration-token syntax: Google documents none. */
const REGISTRATION_TOKEN = /^[A-Za-z0-9_\-:.+/=]{1,4096}$/;
const TTL = /^\d+(\.\d{1,9})?s$/;
const MAX_TTL_SECONDS = 2_419_200;

export const UNAUTHENTICATED_MISSING =
  'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
export const UNAUTHENTICATED_INVALID =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';

export const FCM_ERROR_CODES = [
  'UNREGISTERED',
  'QUOTA_EXCEEDED',
  'UNAVAILABLE',
  'INTERNAL',
  'SENDER_ID_MISMATCH',
  'THIRD_PARTY_AUTH_ERROR',
  'INVALID_ARGUMENT',
] as const;
export type FcmErrorCode = (typeof FCM_ERROR_CODES)[number];

/** Each FCM error code's HTTP status, canonical status and Google's message. */
const FCM_ERRORS: Record<FcmErrorCode, { code: number; status: string; message: string }> = {
  UNREGISTERED: { code: 404, status: 'NOT_FOUND', message: 'Requested entity was not found.' },
  QUOTA_EXCEEDED: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded for the message target.' },
  UNAVAILABLE: { code: 503, status: 'UNAVAILABLE', message: 'The service is currently unavailable.' },
  INTERNAL: { code: 500, status: 'INTERNAL', message: 'Internal error encountered.' },
  SENDER_ID_MISMATCH: { code: 403, status: 'PERMISSION_DENIED', message: 'SenderId mismatch' },
  THIRD_PARTY_AUTH_ERROR: { code: 401, status: 'UNAUTHENTICATED', message: 'Auth error from APNS or Web Push Service' },
  INVALID_ARGUMENT: { code: 400, status: 'INVALID_ARGUMENT', message: 'The registration token is not a valid FCM registration token' },
};

/** Canonical google.rpc statuses of HTTP codes, for errors without an FCM code. */
const CANONICAL: Record<number, [string, string]> = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', UNAUTHENTICATED_INVALID],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  409: ['ABORTED', 'The operation was aborted.'],
  429: ['RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'],
  500: ['INTERNAL', 'Internal error encountered.'],
  501: ['UNIMPLEMENTED', 'Operation is not implemented, or supported, or enabled.'],
  503: ['UNAVAILABLE', 'The service is currently unavailable.'],
  504: ['DEADLINE_EXCEEDED', 'The request timed out.'],
};

const MESSAGE_FIELDS = new Set(['name', 'data', 'notification', 'android', 'webpush', 'apns', 'fcm_options', 'fcmOptions', 'token', 'topic', 'condition']);
const ANDROID_FIELDS = new Set([
  'collapse_key',
  'collapseKey',
  'priority',
  'ttl',
  'restricted_package_name',
  'restrictedPackageName',
  'data',
  'notification',
  'fcm_options',
  'fcmOptions',
  'direct_boot_ok',
  'directBootOk',
]);
const RESERVED_DATA_KEY = (k: string) => k === 'from' || k === 'gcm' || k.startsWith('google');

const isDict = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Google's error body. */
export function googleError(code: number, status: string, message: string, details?: unknown[]): { error: Record<string, unknown> } {
  return { error: { code, message, status, ...(details?.length ? { details } : {}) } };
}

const fcmErrorDetail = (errorCode: string) => ({ '@type': FCM_ERROR_TYPE, errorCode });
const badRequestDetail = (field: string, description: string) => ({ '@type': BAD_REQUEST_TYPE, fieldViolations: [{ field, description }] });

/** Google's answer for an FCM error code (its own HTTP status unless `status` says otherwise). */
export function fcmError(code: FcmErrorCode, status?: number): Answer {
  const e = FCM_ERRORS[code];
  const httpStatus = status ?? e.code;
  return { status: httpStatus, body: googleError(httpStatus, e.status, e.message, [fcmErrorDetail(code)]), errorCode: code };
}

/** Google's answer for a bare HTTP status: its canonical google.rpc status. */
export function canonicalError(status: number): Answer {
  const [canonical, message] = CANONICAL[status] ?? ['UNKNOWN', 'Unknown error.'];
  const a: Answer = { status, body: googleError(status, canonical, message), errorCode: canonical };
  if (status === 401) a.headers = { 'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' };
  return a;
}

/** 400 INVALID_ARGUMENT for a malformed message, with the FcmError and (given a field) the BadRequest detail. */
function invalidArgument(message: string, field?: string): Answer {
  const details: unknown[] = [fcmErrorDetail('INVALID_ARGUMENT')];
  if (field !== undefined) details.push(badRequestDetail(field, message));
  return { status: 400, body: googleError(400, 'INVALID_ARGUMENT', message, details), errorCode: 'INVALID_ARGUMENT' };
}

/**
 * A send's body (of `contentType`; undefined if over the size limit) read: its
 * `message` and text, or Google's answer to what is wrong with it; with the
 * message's registration token, if it names one.
 */
export function readSendBody(
  contentType: string,
  body: Buffer | undefined,
): { message: Record<string, unknown>; text: string; token: string | undefined } | { answer: Answer; token?: string } {
  const type = contentType.toLowerCase();
  if (!type.startsWith('application/json')) return { answer: invalidArgument(`Invalid JSON payload received. Unexpected content type: ${type || 'none'}.`) };
  if (!body) return { answer: invalidArgument('Request payload size exceeds the limit: 1048576 bytes.') };
  const text = body.toString('utf8');
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    return { answer: invalidArgument('Invalid JSON payload received. Unexpected token.', '') };
  }
  if (!isDict(payload)) return { answer: invalidArgument('Invalid JSON payload received. Expected an object.', '') };
  for (const k of Object.keys(payload))
    if (k !== 'message' && k !== 'validate_only' && k !== 'validateOnly')
      return { answer: invalidArgument(`Invalid JSON payload received. Unknown name "${k}": Cannot find field.`, '') };
  const message = payload.message;
  if (!isDict(message)) return { answer: invalidArgument('Invalid JSON payload received. Expected an object at \'message\'.', 'message') };
  const token = typeof message.token === 'string' ? message.token : undefined;
  const bad = checkMessage(message);
  return bad ? { answer: bad, token } : { message, text, token };
}

/** The message's problem as Google reports it, if it has one. */
function checkMessage(message: Record<string, unknown>): Answer | undefined {
  for (const k of Object.keys(message))
    if (!MESSAGE_FIELDS.has(k)) return invalidArgument(`Invalid JSON payload received. Unknown name "${k}" at 'message': Cannot find field.`, 'message');
  const targets = (['token', 'topic', 'condition'] as const).filter((k) => message[k] !== undefined);
  if (targets.length === 0) return invalidArgument('Recipient of the message is not set.', 'message');
  if (targets.length > 1)
    return invalidArgument(`Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '${targets[1]}'`, 'message');
  const target = targets[0]!;
  if (typeof message[target] !== 'string') return invalidArgument(`Invalid value at 'message.${target}' (TYPE_STRING), ${JSON.stringify(message[target])}`, `message.${target}`);
  if (target === 'token' && !REGISTRATION_TOKEN.test(message.token as string))
    return invalidArgument('The registration token is not a valid FCM registration token', 'message.token');

  const top = checkData(message.data, 'message.data');
  if ('status' in top) return top;
  for (const k of ['notification', 'webpush', 'apns', 'fcm_options', 'fcmOptions'] as const)
    if (message[k] !== undefined && !isDict(message[k])) return invalidArgument(`Invalid value at 'message.${k}', ${JSON.stringify(message[k])}`, `message.${k}`);

  let androidSize = 0;
  if (message.android !== undefined) {
    const android = checkAndroid(message.android);
    if ('status' in android) return android;
    androidSize = android.size;
  }
  // Google counts keys and values; android.data replaces data on Android. Its answer names no field.
  const limit = target === 'topic' ? 2048 : 4096;
  if (Math.max(top.size, androidSize) > limit) return invalidArgument('Request contains an invalid argument.');
  return undefined;
}

/** message.android's problem, if it has one, else the size of its data. */
function checkAndroid(android: unknown): Answer | { size: number } {
  if (!isDict(android)) return invalidArgument(`Invalid value at 'message.android', ${JSON.stringify(android)}`, 'message.android');
  for (const k of Object.keys(android))
    if (!ANDROID_FIELDS.has(k)) return invalidArgument(`Invalid JSON payload received. Unknown name "${k}" at 'message.android': Cannot find field.`, 'message.android');
  const p = android.priority;
  if (p !== undefined && !(typeof p === 'string' && ['normal', 'high'].includes(p.toLowerCase())))
    return invalidArgument(
      `Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), ${JSON.stringify(p)}`,
      'message.android.priority',
    );
  const ttl = android.ttl;
  if (ttl !== undefined) {
    if (typeof ttl !== 'string' || !TTL.test(ttl))
      return invalidArgument(`Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), ${JSON.stringify(ttl)}`, 'message.android.ttl');
    if (Number.parseFloat(ttl) > MAX_TTL_SECONDS) return invalidArgument('TTL must be a duration between 0 and 2419200 seconds (4 weeks).', 'message.android.ttl');
  }
  for (const k of ['collapse_key', 'collapseKey', 'restricted_package_name', 'restrictedPackageName'] as const)
    if (android[k] !== undefined && typeof android[k] !== 'string')
      return invalidArgument(`Invalid value at 'message.android.${k}' (TYPE_STRING), ${JSON.stringify(android[k])}`, `message.android.${k}`);
  return checkData(android.data, 'message.android.data');
}

/** A data map's problem (at `at`), if it has one, else its size: keys and values, in bytes. */
function checkData(v: unknown, at: string): Answer | { size: number } {
  if (v === undefined) return { size: 0 };
  if (!isDict(v)) return invalidArgument(`Invalid value at '${at}' (type.googleapis.com/google.protobuf.Struct), ${JSON.stringify(v)}`, at);
  let size = 0;
  let i = 0;
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') return invalidArgument(`Invalid value at '${at}[${i}].value' (TYPE_STRING), ${JSON.stringify(x)}`, `${at}[${i}].value`);
    if (RESERVED_DATA_KEY(k)) return invalidArgument(`Invalid data payload key: ${k}`, at);
    size += Buffer.byteLength(k) + Buffer.byteLength(x);
    i++;
  }
  return { size };
}
