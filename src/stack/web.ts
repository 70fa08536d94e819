// The local stack's web server: the pages in src/web/, their scripts bundled
// for the browser by esbuild on first request (and kept: edits to src/web/*.ts
// show after a restart), and a small API over the
// stack — its addresses, Web Push subscriptions at the Web Push test server
// (what PushManager.subscribe() would do, offline), a stream of the pushes
// the test servers accept (what Apple and the browsers would deliver), and
// metrics for the dashboard.
//
// Loopback only, and only by name: a request whose Host is not
// 127.0.0.1:PORT or localhost:PORT is refused (403), so a web page that
// rebinds its own DNS name to 127.0.0.1 cannot read the API; a subscription
// is made only for a page of this origin (or a client that sends no Origin).
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { ApnsRecordedPush } from '../push/stand-ins/apns-server.ts';
import type { WebPushRecordedMessage } from '../push/stand-ins/webpush-server.ts';
import { dashboardMetrics } from './metrics.ts';
import type { LocalStack } from './stack.ts';

const WEB_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'web');

const PAGES: Record<string, string> = { '/': 'chat.html', '/simulator': 'simulator.html', '/dashboard': 'dashboard.html' };

/** What the browser is told of a push a test server accepted. */
export type PushEvent =
  | { kind: 'webpush'; endpoint: string; message: string }
  | { kind: 'apns'; token: string; pushType: string; payload: Record<string, unknown> };

/** GET /api/config: what a page needs to open a client on the stack. */
export interface WebConfig {
  /** The relay's address. */
  relay: string;
  /** The notification server's address. */
  ntf: string;
}

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

export async function startWebServer(stack: Omit<LocalStack, 'url' | 'stop'>, o: { port: number }): Promise<WebServer> {
  const bundles = new Map<string, Promise<string>>();
  const streams = new Set<http.ServerResponse>();
  const broadcast = (e: PushEvent) => {
    for (const res of streams) res.write(`data: ${JSON.stringify(e)}\n\n`);
  };
  const onWebPush = (m: WebPushRecordedMessage) => broadcast({ kind: 'webpush', endpoint: m.endpoint, message: Buffer.from(m.plaintext).toString('utf8') });
  const onApns = (p: ApnsRecordedPush) =>
    broadcast({ kind: 'apns', token: p.token, pushType: p.headers['apns-push-type'] ?? 'alert', payload: p.payload });
  stack.webpush.on('message', onWebPush);
  stack.apns.on('push', onApns);

  const config = (): WebConfig => ({ relay: stack.relay.address, ntf: stack.ntf.address });
  /** Host headers this server answers (set once it listens). */
  let hosts = new Set<string>();

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname;
    let script: string | false | undefined;
    try {
      const host = req.headers.host;
      if (host === undefined || !hosts.has(host.toLowerCase())) return text(res, 403, 'wrong Host: open the address the stack printed');
      if (req.method === 'GET' && PAGES[p]) return file(res, PAGES[p], 'text/html; charset=utf-8');
      if (req.method === 'GET' && p === '/style.css') return file(res, 'style.css', 'text/css; charset=utf-8');
      script = req.method === 'GET' && (p === '/sw.js' ? 'sw' : /^\/assets\/([a-z-]+)\.js$/.exec(p)?.[1]);
      if (script) {
        if (!fs.existsSync(path.join(WEB_DIR, `${script}.ts`))) return text(res, 404, 'not found');
        if (!bundles.has(script)) bundles.set(script, bundle(script));
        const js = await bundles.get(script)!;
        return void res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }).end(js);
      }
      if (req.method === 'GET' && p === '/api/config') return json(res, config());
      if (req.method === 'POST' && p === '/api/webpush/subscribe') {
        const origin = req.headers.origin;
        if (origin !== undefined && origin.toLowerCase() !== `http://${host.toLowerCase()}`) return text(res, 403, 'cross-origin request');
        return json(res, stack.webpush.subscribe({ applicationServerKey: stack.vapidPublicKey }));
      }
      if (req.method === 'GET' && p === '/api/metrics') return json(res, await dashboardMetrics(stack));
      if (req.method === 'GET' && p === '/api/pushes') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(': pushes accepted by the test servers\n\n');
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      }
      text(res, 404, 'not found');
    } catch (e) {
      if (script) bundles.delete(script); // a failed build is tried again on the next request
      text(res, 500, e instanceof Error ? e.message : 'internal error');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
  return {
    url: `http://127.0.0.1:${port}/`,
    async close() {
      stack.webpush.off('message', onWebPush);
      stack.apns.off('push', onApns);
      for (const res of streams) res.end();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function file(res: http.ServerResponse, name: string, type: string): void {
  fs.readFile(path.join(WEB_DIR, name), (err, body) => {
    if (err) return text(res, 404, 'not found');
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' }).end(body);
  });
}

const json = (res: http.ServerResponse, body: unknown) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
const text = (res: http.ServerResponse, status: number, body: string) => void res.writeHead(status, { 'content-type': 'text/plain' }).end(body);

/** src/web/NAME.ts and what it imports, as one browser ES module. */
async function bundle(name: string): Promise<string> {
  const r = await build({
    entryPoints: [path.join(WEB_DIR, `${name}.ts`)],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    sourcemap: 'inline',
    logLevel: 'silent',
  });
  return r.outputFiles[0]!.text;
}
