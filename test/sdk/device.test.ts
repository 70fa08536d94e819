// The SDK's device-token helpers: a token sealed by the app opens at the gateway
// whose key it was sealed to, and nowhere else.
import assert from 'node:assert/strict';
import { createECDH } from 'node:crypto';
import { test } from 'node:test';
import { toBase64Url } from '../../src/core/encoding.ts';
import { openDeviceToken, SEALED_TOKEN_SIZE } from '../../src/push/gateway/sealed-token.ts';
import { apnsToken, sealedToken, webPushToken } from '../../src/sdk/index.ts';
import { crypto, SMALL_ORDER_KEYS } from '../helpers.ts';

const gateway = crypto.x25519KeyPair();
const device = apnsToken('a1'.repeat(32));

test('sealedToken: sealed to the key /v1/info gives, opened by that gateway only', () => {
  const sealed = sealedToken(device, toBase64Url(gateway.publicKey));
  assert.equal(sealed.provider, 'sealed');
  assert.equal(sealed.token.length, SEALED_TOKEN_SIZE);
  assert.deepEqual(openDeviceToken(crypto, gateway, sealed.token), device);
  assert.equal(openDeviceToken(crypto, crypto.x25519KeyPair(), sealed.token), undefined);
  // Key as bytes too; each seal differs.
  const again = sealedToken(device, gateway.publicKey);
  assert.notDeepEqual(again.token, sealed.token);
  assert.deepEqual(openDeviceToken(crypto, gateway, again.token), device);
  const web = webPushToken({ endpoint: 'https://push.example/abc', keys: { p256dh: toBase64Url(createECDH('prime256v1').generateKeys()), auth: toBase64Url(new Uint8Array(16)) } });
  assert.deepEqual(openDeviceToken(crypto, gateway, sealedToken(web, gateway.publicKey).token), web);
});

test('sealedToken refuses a key that is not a 32-byte X25519 key, or one of small order', () => {
  assert.throws(() => sealedToken(device, 'not base64url!'), TypeError);
  assert.throws(() => sealedToken(device, new Uint8Array(31)), TypeError);
  for (const weak of SMALL_ORDER_KEYS) assert.throws(() => sealedToken(device, weak), TypeError);
  assert.throws(() => sealedToken(sealedToken(device, gateway.publicKey), gateway.publicKey), /cannot seal/);
});
