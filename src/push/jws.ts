// Compact JWS (RFC 7515) as the push services' JWTs use it: base64url JSON
// header and claims, signed with ES256 (P-256, the signature raw r ‖ s as RFC
// 7518 §3.4 wants, not DER) or RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
// Signers: APNs provider token, VAPID, FCM service-account assertion; the test
// servers verify with the same code.
import { sign, verify, type KeyObject } from 'node:crypto';
import { fromBase64Url } from '../core/encoding.ts';

export type JwsAlg = 'ES256' | 'RS256';

/** The key type each algorithm takes: a key of another type never signs or verifies (no algorithm confusion). */
function fits(alg: JwsAlg, key: KeyObject): boolean {
  if (alg === 'RS256') return key.asymmetricKeyType === 'rsa';
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

const ES256 = { dsaEncoding: 'ieee-p1363' } as const;
const b64json = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Signs `header.claims`; header.alg names the algorithm. */
export function signJws(header: { alg: JwsAlg } & Record<string, unknown>, claims: object, key: KeyObject): string {
  if (!fits(header.alg, key)) throw new TypeError(`${header.alg} needs ${header.alg === 'RS256' ? 'an RSA' : 'a P-256'} key`);
  const input = `${b64json(header)}.${b64json(claims)}`;
  const data = Buffer.from(input);
  const sig = header.alg === 'ES256' ? sign('sha256', data, { key, ...ES256 }) : sign('sha256', data, key);
  return `${input}.${sig.toString('base64url')}`;
}

export interface DecodedJws {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** What the signature covers: the first two parts as sent. */
  signingInput: string;
  signature: Uint8Array;
}

/** Splits and parses a compact JWS, signature not checked; or says why it is not one. */
export function decodeJws(token: string): DecodedJws | { error: string } {
  const parts = token.split('.');
  if (parts.length !== 3) return { error: 'not a JWS compact serialization' };
  const json = (s: string): Record<string, unknown> | undefined => {
    const b = fromBase64Url(s);
    if (!b) return undefined;
    try {
      const v: unknown = JSON.parse(Buffer.from(b).toString('utf8'));
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  const header = json(parts[0]!);
  const claims = json(parts[1]!);
  if (!header || !claims) return { error: 'header or claims are not JSON objects' };
  const signature = fromBase64Url(parts[2]!);
  if (!signature) return { error: 'signature is not base64url' };
  return { header, claims, signingInput: `${parts[0]}.${parts[1]}`, signature };
}

/** Whether jws is signed with alg (its header must say so) by the private half of key. */
export function verifyJws(jws: DecodedJws, alg: JwsAlg, key: KeyObject): boolean {
  if (jws.header.alg !== alg || !fits(alg, key)) return false;
  const data = Buffer.from(jws.signingInput);
  if (alg === 'RS256') return verify('sha256', data, key, jws.signature);
  return jws.signature.length === 64 && verify('sha256', data, { key, ...ES256 }, jws.signature);
}
