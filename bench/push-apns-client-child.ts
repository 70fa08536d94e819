// One APNs client of the push benchmark, in a fresh process (no JIT or heap
// left over from another client), as a closed loop with `concurrency` pushes in
// flight over ONE HTTP/2 connection against the APNs test server of
// bench/push-apns-server-child.ts. Prints one line of JSON (ClosedLoopResult).
//   node --import tsx bench/push-apns-client-child.ts <spec.json>
//
// Every client sends the same request: POST /3/device/<token> (cycling one pool
// of 32-byte tokens), apns-topic/-push-type alert/-priority 10/-expiration, one
// provider token, and our real message body: {"aps":{alert,mutable-content,
// category},"d":<PUSH_DATA_SIZE random bytes, base64url>} (~2.9 KB).
//   raw       node:http2 with every request prepared beforehand: the ceiling
//   ours      ApnsProvider (connections 1, maxConcurrentStreams ≥ concurrency),
//             renders each push from its bytes as in production
//   node-apn  @parse/node-apn Provider: one Client, i.e. one HTTP/2 session (its
//             MultiProvider's clientCount is not used: one connection, like ours);
//             no client-side stream cap of its own (Node's http2 follows the
//             server's SETTINGS_MAX_CONCURRENT_STREAMS, 1000); requestTimeout and
//             retries left at their defaults. A new Notification per push with
//             the same body as rawPayload (its base64url prepared beforehand).
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import apn from '@parse/node-apn';
import { PUSH_DATA_SIZE } from '../src/push/device.ts';
import { ApnsJwt } from '../src/push/apns/jwt.ts';
import { apnsBody, renderApns } from '../src/push/apns/payload.ts';
import { ApnsProvider } from '../src/push/apns/provider.ts';
import { closedLoop, type SendOne } from './lib.ts';

export type ApnsClient = 'raw' | 'ours' | 'node-apn';

export interface ApnsClientSpec {
  client: ApnsClient;
  url: string;
  host: string;
  port: number;
  ca: string;
  key: { teamId: string; keyId: string; privateKey: string };
  topic: string;
  concurrency: number;
  warmupMs: number;
  measureMs: number;
  serverPid: number;
}

const spec = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as ApnsClientSpec;

// Pools shared by every client: distinct tokens and data, prepared outside the measurement.
const POOL = 1024;
const tokens = Array.from({ length: POOL }, () => randomBytes(32));
const tokenHex = tokens.map((t) => t.toString('hex'));
const data = Array.from({ length: 64 }, () => randomBytes(PUSH_DATA_SIZE));
const dataB64 = data.map((d) => d.toString('base64url'));
let n = 0;

async function client(): Promise<{ send: SendOne; close: () => Promise<void> }> {
  switch (spec.client) {
    case 'raw': {
      const jwt = new ApnsJwt({ keyId: spec.key.keyId, teamId: spec.key.teamId, key: spec.key.privateKey }).token;
      const session = http2.connect(spec.url, { ca: spec.ca });
      session.on('error', (e) => console.error(`raw h2: ${e.message}`));
      await once(session, 'remoteSettings');
      // one body for all: the ceiling does no per-request work beyond HTTP/2 itself
      const { headers: apnsHeaders } = renderApns({ kind: 'message', data: data[0]! }, { topic: spec.topic });
      const body = Buffer.from(apnsBody({ kind: 'message', data: data[0]! }));
      const headers = tokenHex.map((t) => ({
        ':method': 'POST',
        ':path': `/3/device/${t}`,
        authorization: `bearer ${jwt}`,
        ...apnsHeaders,
        'content-length': String(body.length),
      }));
      const send: SendOne = (done) => {
        const s = session.request(headers[n++ % POOL]!);
        let status = 0;
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('close', () => done(status === 200 ? undefined : `HTTP ${status || 'no response'}`));
        s.end(body);
      };
      return { send, close: async () => void session.close() };
    }
    case 'ours': {
      const provider = new ApnsProvider({
        host: spec.url,
        ca: spec.ca,
        keyId: spec.key.keyId,
        teamId: spec.key.teamId,
        key: spec.key.privateKey,
        topic: spec.topic,
        serves: ['apns'],
        connections: 1,
        maxConcurrentStreams: Math.max(1000, spec.concurrency),
      });
      const send: SendOne = (done) => {
        const i = n++;
        provider
          .send({ device: { provider: 'apns', token: tokens[i % POOL]! }, kind: 'message', data: data[i % data.length]! })
          .then((r) => done(r.outcome === 'delivered' ? undefined : JSON.stringify(r)), (e: unknown) => done(String(e)));
      };
      return { send, close: () => provider.close() };
    }
    case 'node-apn': {
      const provider = new apn.Provider({
        token: { key: spec.key.privateKey, keyId: spec.key.keyId, teamId: spec.key.teamId },
        address: spec.host,
        port: spec.port,
        ca: [spec.ca],
        production: false,
      });
      const { aps } = JSON.parse(apnsBody({ kind: 'message', data: data[0]! })) as { aps: unknown };
      const send: SendOne = (done) => {
        const i = n++;
        const note = new apn.Notification();
        note.topic = spec.topic;
        note.pushType = 'alert';
        note.priority = 10;
        note.expiry = Math.floor(Date.now() / 1000) + 86400;
        note.rawPayload = { aps, d: dataB64[i % data.length] };
        provider.send(note, tokenHex[i % POOL]!).then(
          (r) => done(r.failed.length === 0 && r.sent.length === 1 ? undefined : JSON.stringify(r.failed[0] ?? r)),
          (e: unknown) => done(String(e)),
        );
      };
      return { send, close: () => provider.shutdown() };
    }
  }
}

const c = await client();
// one push first: the connection is up and SETTINGS known before the clock starts
await new Promise<void>((resolve, reject) => c.send((e) => (e === undefined ? resolve() : reject(new Error(e)))));
const r = await closedLoop(c.send, { concurrency: spec.concurrency, warmupMs: spec.warmupMs, measureMs: spec.measureMs, peerPid: spec.serverPid });
await Promise.race([c.close(), new Promise((resolve) => setTimeout(resolve, 2000))]);
console.log(JSON.stringify(r));
process.exit(0);
