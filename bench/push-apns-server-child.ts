// The APNs test server of the push benchmark, in a process of its own so that
// the clients measured and the server do not share an event loop (2 cores: one
// each). Pushes are not kept (record: false); its answer counts are.
//   IPC out: {t:'ready', url, host, port, ca, key: {teamId, keyId, privateKey}}
//   IPC in:  {t:'counts'} → {t:'counts', accepted, rejected}
import { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { serveTestServer } from './lib.ts';

const topic = process.argv[2] ?? 'chat.hush.bench';
const server = await ApnsTestServer.start({ topics: [topic], record: false });
const key = server.keys.create();

serveTestServer(server, {
  url: server.url,
  host: server.host,
  port: server.port,
  ca: server.ca,
  key: { teamId: key.teamId, keyId: key.keyId, privateKey: key.privateKey },
});
