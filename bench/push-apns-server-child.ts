// The APNs test server of the push benchmark, in a process of its own so that
// the clients measured and the server do not share an event loop (2 cores: one
// each). Pushes are not kept (record: false); its answer counts are.
//   IPC out: {t:'ready', url, host, port, ca, key: {teamId, keyId, privateKey}}
//   IPC in:  {t:'counts'} → {t:'counts', accepted, rejected}
// SIGTERM or a lost parent ends it (a normal exit: --cpu-prof writes its profile).
import { ApnsTestServer } from '../src/push/testkit/apns-server.ts';

const topic = process.argv[2] ?? 'chat.hush.bench';
const server = await ApnsTestServer.start({ topics: [topic], record: false });
const key = server.keys.create();

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('disconnect', () => void stop());
process.on('message', (m: { t?: string }) => {
  if (m?.t === 'counts') process.send!({ t: 'counts', ...server.counts });
});
process.send!({
  t: 'ready',
  url: server.url,
  host: server.host,
  port: server.port,
  ca: server.ca,
  key: { teamId: key.teamId, keyId: key.keyId, privateKey: key.privateKey },
});
