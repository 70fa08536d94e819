// The push vocabulary shared by everything that names a device or a push: the
// notification server's protocol and stores, the push providers, the push
// gateway and the SDK. Portable: no Node imports.
import { latin1, ParseError, type Decoder, type Encoder } from '../core/encoding.ts';

/** Push providers a token can name. Which ones a server accepts is its configuration. */
// 'sealed': a token sealed to a push gateway's key (src/push/gateway/sealed-token.ts), opaque to the notification server.
export const PROVIDERS = ['apns', 'apns-sandbox', 'fcm', 'webpush', 'sealed', 'test'] as const;
export type Provider = (typeof PROVIDERS)[number];
const PROVIDER_SET: ReadonlySet<string> = new Set(PROVIDERS);
export const isProvider = (s: string): s is Provider => PROVIDER_SET.has(s);

export const MAX_DEVICE_TOKEN = 2048;

export interface DeviceToken {
  provider: Provider;
  /** Provider-specific bytes: APNs token, FCM registration token, Web Push subscription. */
  token: Uint8Array;
}

/** A device token as a map key: equal for the same provider and token bytes. */
export const deviceKey = (d: DeviceToken) => `${d.provider}\u0000${latin1(d.token)}`;

/** A device token as the NTF protocol and its journal write it: tag(provider) ‖ long(token). */
export const writeDevice = (e: Encoder, d: DeviceToken) => e.tag(d.provider).long(d.token);

export function readDevice(d: Decoder): DeviceToken {
  const provider = d.tag();
  if (!isProvider(provider)) throw new ParseError('unknown provider');
  const token = d.long();
  if (token.length === 0 || token.length > MAX_DEVICE_TOKEN) throw new ParseError('bad device token length');
  // a copy (not slice(): a Node Buffer's is a view): a token is kept, and a view would keep the block it came in alive
  return { provider, token: new Uint8Array(token) };
}

/** Why a provider refused a device token for good: the token becomes INVALID(reason). */
export const INVALID_REASONS = ['BAD', 'TOPIC', 'EXPIRED', 'UNREGISTERED'] as const;
export type InvalidReason = (typeof INVALID_REASONS)[number];
const REASON_SET: ReadonlySet<string> = new Set(INVALID_REASONS);
export const isInvalidReason = (s: string): s is InvalidReason => REASON_SET.has(s);

/** Kinds of push; their order is the kind byte of the sealed push content (src/ntf/payload.ts). */
export const PUSH_KINDS = ['verification', 'message', 'check'] as const;
export type PushKind = (typeof PUSH_KINDS)[number];
const KIND_SET: ReadonlySet<string> = new Set(PUSH_KINDS);
export const isPushKind = (s: string): s is PushKind => KIND_SET.has(s);

/** Padded plain text of every push, whatever its kind (src/ntf/payload.ts seals it). */
export const PUSH_PLAIN_SIZE = 2048;
/** The fixed size of the data every push carries: 12-byte nonce + padded plain text + 16-byte tag. */
export const PUSH_DATA_SIZE = 12 + PUSH_PLAIN_SIZE + 16;
