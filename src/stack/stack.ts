// The local stack (`hush start`, `npm start`): a relay and a notification
// server with embedded storage, the push-provider test servers standing in for
// Apple, Google and the browsers' push services, and the web app that shows
// the whole path — all on loopback, nothing to configure. Data lives in
// DIR/relay, DIR/ntf and DIR/stack; a second start reuses it.
import fs from 'node:fs';
import path from 'node:path';
import { ApnsProvider } from '../push/apns/provider.ts';
import { FcmProvider } from '../push/fcm/provider.ts';
import { ApnsTestServer } from '../push/stand-ins/apns-server.ts';
import { FcmTestServer } from '../push/stand-ins/fcm-server.ts';
import { WebPushTestServer } from '../push/stand-ins/webpush-server.ts';
import { WebPushProvider } from '../push/webpush/provider.ts';
import { createVapidKey, loadVapidKey } from '../push/webpush/vapid.ts';
import { initNtf, startNtf, type RunningNtf } from '../ntf/run.ts';
import { LOCAL_RELAYS, ntfFiles } from '../ntf/config.ts';
import { initRelay, startRelay, type RunningRelay } from '../relay/run.ts';
import { relayFiles } from '../relay/config.ts';
import { startWebServer, type WebServer } from './web.ts';

/** The APNs topic (bundle ID) of the simulated phones. */
export const STACK_APNS_TOPIC = 'chat.hush.local';

export interface StackOptions {
  dir: string;
  /** Ports used when DIR is first initialized (0: any free port, for tests). */
  ports?: { relay?: number; ntf?: number; relayMetrics?: number; ntfMetrics?: number };
  /** The web app's port (default 5280; 0: any). */
  webPort?: number;
  /** Servers' log level when first initialized (default warn: the console stays readable). */
  logLevel?: string;
}

export interface LocalStack {
  /** The web app. */
  url: string;
  relay: RunningRelay;
  ntf: RunningNtf;
  apns: ApnsTestServer;
  fcm: FcmTestServer;
  webpush: WebPushTestServer;
  /** The VAPID public key (base64url) Web Push subscriptions are made with. */
  vapidPublicKey: string;
  stop(): Promise<void>;
}

export async function startLocalStack(o: StackOptions): Promise<LocalStack> {
  const ports = { relay: 5223, ntf: 5224, relayMetrics: 9464, ntfMetrics: 9465, ...o.ports };
  const logLevel = o.logLevel ?? 'warn';
  const relayDir = path.join(o.dir, 'relay');
  const ntfDir = path.join(o.dir, 'ntf');
  const stackDir = path.join(o.dir, 'stack');
  initOnce(relayDir, relayFiles(relayDir), { port: ports.relay, metrics: { port: ports.relayMetrics }, logLevel }, () => initRelay({ dir: relayDir }));
  // the relay is on loopback, which the relay policy admits only when told
  initOnce(ntfDir, ntfFiles(ntfDir), { port: ports.ntf, metrics: { port: ports.ntfMetrics }, logLevel, relays: LOCAL_RELAYS }, () => initNtf({ dir: ntfDir }));
  const vapid = vapidKey(path.join(stackDir, 'vapid.pem'));

  const stops: Array<() => Promise<unknown>> = [];
  // Once: SIGINT and SIGTERM may both ask; later calls get the same promise.
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const s of [...stops].reverse()) await s().catch(() => {});
    })());
  try {
    // Stand-ins for Apple, Google and browser vendors: they keep nothing, so
    // their keys are made afresh each start.
    // record: false — the web server passes pushes on as events; kept, they would grow without end.
    const apns = await ApnsTestServer.start({ topics: [STACK_APNS_TOPIC], record: false });
    stops.push(() => apns.close());
    const fcm = await FcmTestServer.start();
    stops.push(() => fcm.close());
    const webpush = await WebPushTestServer.start({ record: false });
    stops.push(() => webpush.close());
    const team = apns.keys.create();
    const providers = [
      new ApnsProvider({ host: apns.url, ca: apns.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: STACK_APNS_TOPIC, serves: ['apns'] }),
      new FcmProvider({ serviceAccount: fcm.serviceAccount(), endpoint: fcm.url, ca: fcm.ca }),
      new WebPushProvider({ vapid: { privateKey: vapid.privateKey, subject: 'mailto:operator@hush.localhost' }, ca: webpush.ca, allowPrivateNetworks: true }),
    ];
    const relay = await startRelay(relayDir);
    stops.push(() => relay.stop());
    const ntf = await startNtf(ntfDir, process.env, { providers });
    stops.push(() => ntf.stop());
    const partial = { relay, ntf, apns, fcm, webpush, vapidPublicKey: vapid.publicKey };
    const web: WebServer = await startWebServer(partial, { port: o.webPort ?? 5280 });
    stops.push(() => web.close());
    return { ...partial, url: web.url, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Writes the stack's first config for a server and initializes it, unless done before. */
function initOnce(dir: string, files: { config: string; identity: string }, config: object, init: () => string): void {
  if (fs.existsSync(files.identity)) return;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(files.config)) fs.writeFileSync(files.config, JSON.stringify({ host: '127.0.0.1', ...config }, null, 2) + '\n');
  init();
}

/** The notification server's VAPID key (P-256), made once. */
function vapidKey(file: string): { privateKey: string; publicKey: string } {
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, createVapidKey().privateKey, { mode: 0o600 });
  }
  const privateKey = fs.readFileSync(file, 'utf8');
  return { privateKey, publicKey: loadVapidKey(privateKey).publicKeyB64 };
}
