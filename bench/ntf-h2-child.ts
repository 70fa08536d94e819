// Raw node:http2 client of the notification-server benchmark, in a process of
// its own: the same request the notification server sent (a captured push:
// path, headers, provider token and body), repeated over one connection with
// `streams` requests in flight, against the same APNs test server. The
// ceiling for pushes on this machine. Prints "started" when the first request
// goes out, then one line of JSON when done.
//   node --import tsx bench/ntf-h2-child.ts <spec.json>
//   spec: { url, caFile, path, headers, authorization, body, streams, durationMs }
import fs from 'node:fs';
import http2 from 'node:http2';

interface Spec {
  url: string;
  caFile: string;
  path: string;
  headers: Record<string, string>;
  authorization: string;
  body: string;
  streams: number;
  durationMs: number;
}

const spec = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Spec;
const session = http2.connect(spec.url, { ca: fs.readFileSync(spec.caFile) });
session.on('error', (e) => {
  console.error(`h2: ${e.message}`);
  process.exit(1);
});
await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));

const body = Buffer.from(spec.body);
const headers = {
  ':method': 'POST',
  ':path': spec.path,
  authorization: spec.authorization,
  ...spec.headers,
  'content-length': String(body.length),
};
let ok = 0;
let failed = 0;
let inFlight = 0;
let running = true;

function one(): void {
  inFlight++;
  const s = session.request(headers);
  let status = 0;
  s.on('response', (h) => (status = Number(h[':status'])));
  s.on('data', () => {});
  s.on('error', () => {});
  s.on('close', () => {
    inFlight--;
    if (status === 200) ok++;
    else failed++;
    if (running) one();
  });
  s.end(body);
}

const start = performance.now();
for (let i = 0; i < spec.streams; i++) one();
console.log('started');
await new Promise((r) => setTimeout(r, spec.durationMs));
running = false;
const elapsed = performance.now() - start;
const deadline = performance.now() + 5000;
while (inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
console.log(JSON.stringify({ ok, failed, elapsedMs: elapsed, perS: (ok * 1000) / elapsed }));
session.close();
process.exit(0);
