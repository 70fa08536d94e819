// `init` of any Hush server: a config file (kept if present), validated before
// any key exists so a bad setting leaves init repeatable, then the keys; the
// result is the address clients use.
import fs from 'node:fs';
import { formatAddress, fingerprintOf } from '../core/address.ts';
import { nodeCrypto } from '../node/crypto.ts';
import { createKeyFile } from './identity.ts';

export interface ServerInit {
  dir: string;
  configFile: string;
  identityFile: string;
  /** Further key files to create, e.g. a service key. */
  keyFiles?: Array<[string, 'ed25519' | 'x25519']>;
  initialConfig: Record<string, unknown>;
  /** Loads and validates the config (with env overrides). */
  load(): { host: string; port: number; publicHost?: string | undefined; tls?: unknown };
}

export function initServer(o: ServerInit): string {
  if (fs.existsSync(o.identityFile)) throw new Error(`${o.identityFile} exists: already initialized`);
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(o.configFile)) fs.writeFileSync(o.configFile, JSON.stringify(o.initialConfig, null, 2) + '\n');
  const c = o.load();
  for (const [file, type] of o.keyFiles ?? []) if (!fs.existsSync(file)) createKeyFile(file, type);
  const identity = createKeyFile(o.identityFile);
  return formatAddress({
    fingerprint: fingerprintOf(nodeCrypto, identity.publicKey),
    host: c.publicHost ?? c.host,
    port: c.port,
    tls: c.tls !== undefined,
  });
}
