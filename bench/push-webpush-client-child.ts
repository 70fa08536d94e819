// One Web Push client of the push benchmark, in a fresh process, as a closed
// loop with `concurrency` sends in flight against the Web Push test service of
// bench/push-webpush-server-child.ts. Prints one line of JSON (ClosedLoopResult).
//   node --import tsx bench/push-webpush-client-child.ts <spec.json>
//
// Both send a message push: the same 2076-byte plaintext (PUSH_DATA_SIZE random
// bytes, from one pool), aes128gcm (2179 bytes on the wire), VAPID, TTL 86400,
// Urgency high, Topic msg, to the subscriptions in turn.
// The test service offers HTTP/2 and HTTP/1.1 by ALPN, as browser vendors' do.
//   ours      WebPushProvider {maxSockets: concurrency}: finds h2 offered, so one
//             HTTP/2 connection (keep-alive HTTP/1.1 where h2 is not offered)
//   web-push  web-push's sendNotification with vapidDetails and
//             agent: new https.Agent({ca, keepAlive: true, maxSockets: concurrency}):
//             HTTP/1.1, which is all it speaks, over kept-alive connections
//             (without keepAlive it would pay a TLS handshake per push)
import { createPrivateKey, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import webpush from 'web-push';
import { PUSH_DATA_SIZE } from '../src/push/device.ts';
import { WebPushProvider } from '../src/push/webpush/provider.ts';
import { encodeWebPushSubscription, type WebPushSubscriptionJSON } from '../src/push/webpush/subscription.ts';
import { closedLoop, type SendOne } from './lib.ts';

export type WebPushClient = 'ours' | 'web-push';

export interface WebPushClientSpec {
  client: WebPushClient;
  url: string;
  ca: string;
  vapid: { privateKey: string; publicKey: string };
  subscriptions: WebPushSubscriptionJSON[];
  concurrency: number;
  warmupMs: number;
  measureMs: number;
  serverPid: number;
}

const SUBJECT = 'mailto:bench@hush.invalid';
const spec = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as WebPushClientSpec;
const data = Array.from({ length: 64 }, () => randomBytes(PUSH_DATA_SIZE));
const subs = spec.subscriptions;
let n = 0;

function client(): { send: SendOne; close: () => Promise<void> } {
  switch (spec.client) {
    case 'ours': {
      const provider = new WebPushProvider({ vapid: { privateKey: spec.vapid.privateKey, subject: SUBJECT }, ca: spec.ca, maxSockets: spec.concurrency, allowPrivateNetworks: true });
      const tokens = subs.map((s) => encodeWebPushSubscription(s));
      const send: SendOne = (done) => {
        const i = n++;
        provider
          .send({ device: { provider: 'webpush', token: tokens[i % tokens.length]! }, kind: 'message', data: data[i % data.length]! })
          .then((r) => done(r.outcome === 'delivered' ? undefined : JSON.stringify(r)), (e: unknown) => done(String(e)));
      };
      return { send, close: () => provider.close() };
    }
    case 'web-push': {
      // web-push takes the private key as the raw base64url scalar
      const d = createPrivateKey(spec.vapid.privateKey).export({ format: 'jwk' }).d!;
      const agent = new https.Agent({ ca: spec.ca, keepAlive: true, maxSockets: spec.concurrency });
      const options: webpush.RequestOptions = {
        vapidDetails: { subject: SUBJECT, publicKey: spec.vapid.publicKey, privateKey: d },
        TTL: 86400,
        urgency: 'high',
        topic: 'msg',
        contentEncoding: 'aes128gcm',
        agent,
      };
      const send: SendOne = (done) => {
        const i = n++;
        webpush.sendNotification(subs[i % subs.length]!, data[i % data.length]!, options).then(
          (r) => done(r.statusCode >= 200 && r.statusCode < 300 ? undefined : `HTTP ${r.statusCode}`),
          (e: unknown) => done(String((e as { statusCode?: number; body?: string }).statusCode ?? e) + ` ${(e as { body?: string }).body ?? ''}`),
        );
      };
      return { send, close: async () => agent.destroy() };
    }
  }
}

const c = client();
// one push first: a connection is up before the clock starts
await new Promise<void>((resolve, reject) => c.send((e) => (e === undefined ? resolve() : reject(new Error(e)))));
const r = await closedLoop(c.send, { concurrency: spec.concurrency, warmupMs: spec.warmupMs, measureMs: spec.measureMs, peerPid: spec.serverPid });
await Promise.race([c.close(), new Promise((resolve) => setTimeout(resolve, 2000))]);
console.log(JSON.stringify(r));
process.exit(0);
