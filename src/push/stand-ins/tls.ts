// The provider test servers' TLS identity: a committed self-signed certificate
// for localhost and 127.0.0.1. Clients trust TEST_CERT as their CA.
import fs from 'node:fs';

const fixture = (name: string) => fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
export const TEST_CERT = fixture('localhost.crt');
export const TEST_CERT_KEY = fixture('localhost.key');
