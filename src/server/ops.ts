// Operations endpoint of every Hush server: Prometheus /metrics and /healthz on
// their own port, apart from the protocol port.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** What /healthz says: 200 when ok, else 503 with the reason; any other fields are details. */
export interface Health {
  ok: boolean;
  reason?: string;
  [k: string]: unknown;
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

const json = { 'content-type': 'application/json' };

export async function startOps(registry: Registry, host: string, port: number, health: () => Health): Promise<OpsServer> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      // a collect callback that throws must cost one scrape, not the process
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (e) => res.writeHead(500).end(`metrics failed: ${message(e)}\n`),
      );
    } else if (req.method === 'GET' && req.url === '/healthz') {
      let h: Health;
      try {
        h = health();
      } catch (e) {
        h = { ok: false, reason: `health check failed: ${message(e)}` };
      }
      res.writeHead(h.ok ? 200 : 503, json).end(JSON.stringify(h));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
