// Device tokens as the OS hands them to the app, in the form the notification
// server takes (docs/ntf.md §1).
import { nobleCrypto } from '../core/crypto/noble.ts';
import { fromBase64Url } from '../core/encoding.ts';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { sealDeviceToken } from '../push/gateway/sealed-token.ts';
import { encodeWebPushSubscription, type WebPushSubscriptionJSON } from '../push/webpush/subscription.ts';
import type { DeviceToken } from '../push/device.ts';

/** An APNs device token (the bytes iOS gives, or their hex). */
export function apnsToken(token: Uint8Array | string, sandbox = false): DeviceToken {
  const bytes = typeof token === 'string' ? hexBytes(token) : token;
  return { provider: sandbox ? 'apns-sandbox' : 'apns', token: bytes };
}

/** An FCM registration token. */
export const fcmToken = (token: string): DeviceToken => ({ provider: 'fcm', token: new TextEncoder().encode(token) });

/** A browser's PushSubscription.toJSON(), or a UnifiedPush endpoint with its keys. */
export const webPushToken = (sub: WebPushSubscriptionJSON): DeviceToken => ({ provider: 'webpush', token: encodeWebPushSubscription(sub) });

/**
 * A device token sealed to a push gateway (docs/push.md §5), for a notification
 * server that sends through that gateway: it then holds neither the token nor
 * which push service the device uses. `sealKey` is the gateway's, as its
 * `GET /v1/info` gives it (base64url) or as bytes. Seal again at each
 * registration: every seal is different, so seals of one token are unlinkable.
 */
export function sealedToken(device: DeviceToken, sealKey: Uint8Array | string, crypto: CryptoSuite = nobleCrypto): DeviceToken {
  const key = typeof sealKey === 'string' ? fromBase64Url(sealKey) : sealKey;
  if (key?.length !== 32) throw new TypeError('a gateway sealKey is 32 bytes');
  return sealDeviceToken(crypto, key, device);
}

function hexBytes(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new Error('an APNs token is hex');
  return Uint8Array.from(hex.match(/../g)!, (b) => parseInt(b, 16));
}
