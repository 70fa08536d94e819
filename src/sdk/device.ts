// Device tokens as the OS hands them to the app, in the form the notification
// server takes (docs/ntf.md §1).
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

function hexBytes(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new Error('an APNs token is hex');
  return Uint8Array.from(hex.match(/../g)!, (b) => parseInt(b, 16));
}
