// The Web Push test service of the push benchmark, in a process of its own (as
// bench/push-apns-server-child.ts): messages not kept (record: false) and not
// decrypted (decrypt: false: the push service alone, which cannot read them
// either; every header, the VAPID JWT and the aes128gcm header are still
// checked). SUBSCRIPTIONS subscriptions, each locked to one VAPID key as a
// browser's applicationServerKey does.
//   IPC out: {t:'ready', url, ca, vapid: {privateKey (PEM), publicKey (b64url)}, subscriptions}
//   IPC in:  {t:'counts'} → {t:'counts', accepted, rejected, verified}
import { createVapidKey } from '../src/push/webpush/vapid.ts';
import { WebPushTestServer } from '../src/push/stand-ins/webpush-server.ts';
import { serveTestServer } from './lib.ts';

const SUBSCRIPTIONS = 64;
const server = await WebPushTestServer.start({ record: false, decrypt: false });
const vapid = createVapidKey();
const subscriptions = Array.from({ length: SUBSCRIPTIONS }, () => server.subscribe({ applicationServerKey: vapid.publicKey }));

serveTestServer(server, { url: server.url, ca: server.ca, vapid, subscriptions });
