// The push-provider interface: how a notification server (or a push gateway)
// hands a sealed push to Apple, Google, a Web Push service — or a test.
import type { DeviceToken, InvalidReason, Provider, PushKind } from './device.ts';

export interface PushRequest {
  device: DeviceToken;
  /** Providers render kinds differently: a message is a visible alert the app may rewrite, the others are silent. */
  kind: PushKind;
  /** The sealed, fixed-size push data (PUSH_DATA_SIZE bytes, sealed by src/ntf/payload.ts). */
  data: Uint8Array;
}

export type PushResult =
  | { outcome: 'delivered' }
  /** Worth trying again: rate limit, server error, lost connection. */
  | { outcome: 'retry'; reason: string; afterMs?: number }
  /** The device token is dead: the token becomes INVALID(reason). */
  | { outcome: 'invalid'; reason: InvalidReason }
  /** This push will never go through, but the token may be fine (e.g. our credentials). */
  | { outcome: 'failed'; reason: string };

export interface PushProvider {
  /** The token providers this one delivers for. */
  readonly serves: readonly Provider[];
  /** Web Push: the VAPID public key (b64url) apps subscribe with, as applicationServerKey. */
  readonly applicationServerKey?: string;
  send(req: PushRequest): Promise<PushResult>;
  close(): Promise<void>;
}

/** Seconds a provider keeps an undelivered push of each kind (APNs apns-expiration, FCM ttl, Web Push TTL). */
export const DEFAULT_TTL_SECONDS: Readonly<Record<PushKind, number>> = {
  message: 24 * 3600,
  // background kinds alike, so the provider cannot tell them apart; a stale check is superseded by the next (TCRN ≥ 20 min)
  verification: 3600,
  check: 3600,
};
