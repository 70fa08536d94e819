// A device token sealed to a push gateway's key, so a notification server that
// forwards pushes through that gateway never sees the token in clear — nor even
// which push service (Apple, Google, a browser) the device uses, nor the
// token's length: the server only ever holds `{ provider: 'sealed', token: <this> }`.
//
//   sealed = 0x02 ‖ ephPub(32) ‖ ChaCha20-Poly1305(key, nonce 0, padded, aad = 0x02 ‖ gatewayPub)
//   key    = HKDF-SHA256(ikm X25519(eph, gatewayPub), salt ephPub ‖ gatewayPub, info "hush/2 sealed token", 32)
//   padded = long(tag(provider) ‖ long(token)) ‖ zeros, SEALED_PLAIN_SIZE bytes
//
// A fresh ephemeral key per token makes the key single-use, so a zero nonce is
// safe, and two seals of the same token are unlinkable. Isomorphic: the app
// seals when it registers; the gateway opens.
import type { CryptoSuite } from '../../core/crypto/suite.ts';
import { concat, Encoder, padTo, parse, ParseError, unpad } from '../../core/encoding.ts';
import { sharedKey } from '../../core/keys.ts';
import { isProvider, MAX_DEVICE_TOKEN, type DeviceToken, type Provider } from '../device.ts';

/** Also the version in the key's label (core/keys.ts). */
export const SEALED_VERSION = 2;
/** Fits the largest clear token: a Web Push subscription with a 1000-byte endpoint. */
export const SEALED_PLAIN_SIZE = 1200;
export const SEALED_TOKEN_SIZE = 1 + 32 + SEALED_PLAIN_SIZE + 16;
const NONCE = new Uint8Array(12);
/** Providers a sealed token may carry: not 'sealed' itself. */
const sealable = (p: string): p is Provider => isProvider(p) && p !== 'sealed';

/** Undefined for a public key of small order: a gateway key or an ephemeral key anyone could open with. */
const sealingKey = (crypto: CryptoSuite, privateKey: Uint8Array, publicKey: Uint8Array, ephPub: Uint8Array, gatewayPub: Uint8Array) =>
  sharedKey(crypto, privateKey, publicKey, 'sealed token', { version: SEALED_VERSION, salt: concat(ephPub, gatewayPub) });

/** App side: seals a clear device token to the gateway's X25519 public key. */
export function sealDeviceToken(crypto: CryptoSuite, gatewayPub: Uint8Array, device: DeviceToken): DeviceToken {
  if (!sealable(device.provider)) throw new TypeError(`cannot seal a ${device.provider} token`);
  const plain = new Encoder(device.token.length + 24).tag(device.provider).long(device.token).done();
  if (plain.length + 4 > SEALED_PLAIN_SIZE) throw new RangeError('device token too long to seal');
  const eph = crypto.x25519KeyPair();
  const key = sealingKey(crypto, eph.privateKey, gatewayPub, eph.publicKey, gatewayPub);
  if (!key) throw new TypeError('bad gateway key');
  const sealed = crypto.seal(key, NONCE, padTo(plain, SEALED_PLAIN_SIZE), concat(Uint8Array.of(SEALED_VERSION), gatewayPub));
  const token = concat(Uint8Array.of(SEALED_VERSION), eph.publicKey, sealed);
  if (token.length > MAX_DEVICE_TOKEN) throw new RangeError('sealed token too long'); // guards the constants
  return { provider: 'sealed', token };
}

/** Gateway side: the clear device token, or undefined if it was not sealed to this key or is malformed. */
export function openDeviceToken(
  crypto: CryptoSuite,
  gateway: { publicKey: Uint8Array; privateKey: Uint8Array },
  sealed: Uint8Array,
): DeviceToken | undefined {
  if (sealed.length !== SEALED_TOKEN_SIZE || sealed[0] !== SEALED_VERSION) return undefined;
  const ephPub = sealed.subarray(1, 33);
  const key = sealingKey(crypto, gateway.privateKey, ephPub, ephPub, gateway.publicKey);
  if (!key) return undefined;
  const padded = crypto.open(key, NONCE, sealed.subarray(33), concat(Uint8Array.of(SEALED_VERSION), gateway.publicKey));
  if (!padded) return undefined;
  const plain = unpad(padded);
  if (!plain.ok) return undefined;
  const r = parse(plain.value, (d): DeviceToken => {
    const provider = d.tag();
    if (!sealable(provider)) throw new ParseError('unknown provider');
    const token = d.long();
    if (token.length === 0) throw new ParseError('empty token');
    return { provider, token };
  });
  return r.ok ? r.value : undefined;
}
