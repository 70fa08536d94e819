// What the push-provider test servers (apns-server.ts, fcm-server.ts,
// webpush-server.ts) share: a loopback server with the committed test
// certificate (tls.ts) speaking HTTP/2 over TLS (HTTP/1.1 too, by ALPN, with
// allowHTTP1), or plain HTTP/1.1; its TCP connections and HTTP/2 sessions
// tracked, so that tests can count them, send GOAWAY on them and cut them.
//
// A server extends ProviderTestServer, has a private constructor and a static
// start() that returns `new Server(opts).listen(opts)`, and serves requests by
// overriding onRequest (the compatibility API: HTTP/2 streams and HTTP/1.1
// requests alike) or onStream (the HTTP/2 core API).
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import http2, {
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
  type Settings,
} from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { TEST_CERT, TEST_CERT_KEY } from './tls.ts';

export type AnyRequest = Http2ServerRequest | http.IncomingMessage;
export type AnyResponse = Http2ServerResponse | http.ServerResponse;

export interface ProviderTestServerConfig {
  /** HTTPS with the test certificate (default), or plain HTTP/1.1. */
  tls?: boolean;
  /** Over TLS, HTTP/1.1 too, by ALPN (default false: HTTP/2 only). */
  allowHTTP1?: boolean;
  /** HTTP/2 SETTINGS sent on each connection. */
  settings?: Settings;
  /** Each HTTP/2 connection's receive window, in bytes (default Node's, 65,535). */
  connectionWindowSize?: number;
}

export interface ListenOptions {
  host?: string;
  port?: number;
}

/** An HTTP/2 connection, numbered 1, 2, … in order of arrival. */
export interface SessionInfo {
  id: number;
  /** The highest stream id it carried: GOAWAY's last-stream-id. */
  maxStreamId: number;
}

/** A TCP connection, numbered 1, 2, … in order of arrival. */
export interface SocketInfo {
  id: number;
  socket: Socket;
}

const noop = () => {};

/**
 * Collects a request body of at most `limit` bytes and hands it over at its end:
 * undefined past the limit (`size` still counts every byte).
 */
export function readBody(req: AnyRequest, limit: number, done: (body: Buffer | undefined, size: number) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= limit) chunks.push(c);
  });
  req.on('error', noop);
  req.on('end', () => done(size > limit ? undefined : Buffer.concat(chunks), size));
}

export abstract class ProviderTestServer<E extends Record<keyof E, unknown[]>> extends EventEmitter<E> {
  /** The test certificate: clients trust it as their CA. */
  readonly ca = TEST_CERT;

  protected readonly server: http.Server | Http2SecureServer;
  /** HTTP/2 connections open now. */
  protected readonly sessions = new Map<Http2Session, SessionInfo>();
  /** TCP connections open now, by remote address:port. */
  protected readonly sockets = new Map<string, SocketInfo>();
  /** HTTP/2 connections accepted so far. */
  protected sessionCount = 0;
  /** TCP connections accepted so far. */
  protected socketCount = 0;
  /** Requests received and not answered yet. */
  protected inFlight = 0;
  private readonly secure: boolean;
  private address: AddressInfo | undefined;

  protected constructor(config: ProviderTestServerConfig) {
    super();
    this.secure = config.tls ?? true;
    const server = this.secure
      ? http2.createSecureServer({
          cert: TEST_CERT,
          key: TEST_CERT_KEY,
          allowHTTP1: config.allowHTTP1 ?? false,
          ...(config.settings ? { settings: config.settings } : {}),
        })
      : http.createServer();
    this.server = server;
    // raw TCP sockets: destroying one ends its TLS session too, even mid-handshake
    server.on('connection', (sock: Socket) => {
      const k = `${sock.remoteAddress}:${sock.remotePort}`;
      this.sockets.set(k, { id: ++this.socketCount, socket: sock });
      sock.on('close', () => this.sockets.delete(k));
    });
    if (this.onRequest) server.on('request', (req: AnyRequest, res: AnyResponse) => this.onRequest!(req, res));
    if (server instanceof http.Server) {
      server.on('clientError', (_e: Error, sock: Socket) => sock.destroy());
      return;
    }
    const connectionWindow = config.connectionWindowSize ?? 65_535;
    server.on('session', (s) => {
      this.sessions.set(s, { id: ++this.sessionCount, maxStreamId: 0 });
      // SETTINGS can only set the per-stream window; the connection's is widened by WINDOW_UPDATE
      if (connectionWindow > 65_535) s.setLocalWindowSize(connectionWindow);
      s.on('error', noop);
      s.on('close', () => this.sessions.delete(s));
    });
    // Node passes the raw header list too (not in @types/node): it shows repeated headers
    if (this.onStream)
      server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders?: string[]) =>
        this.onStream!(stream, headers, rawHeaders ?? []),
      );
    server.on('sessionError', noop);
    server.on('tlsClientError', noop);
  }

  /** Serves a request: an HTTP/2 stream or an HTTP/1.1 request (Node's compatibility API). */
  protected onRequest?(req: AnyRequest, res: AnyResponse): void;

  /** Serves an HTTP/2 stream (Node's core API), with the raw header list. */
  protected onStream?(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void;

  /** Starts listening (default 127.0.0.1, a free port). */
  protected async listen(opts: ListenOptions): Promise<this> {
    this.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
    await once(this.server, 'listening');
    this.address = this.server.address() as AddressInfo;
    return this;
  }

  get host(): string {
    return this.address!.address;
  }
  get port(): number {
    return this.address!.port;
  }
  /** https://127.0.0.1:<port> (http: with `tls: false`) */
  get url(): string {
    return `${this.secure ? 'https' : 'http'}://${this.host}:${this.port}`;
  }
  /** Requests received and not answered yet. */
  get pending(): number {
    return this.inFlight;
  }

  /** Cuts every connection (the TCP socket, no GOAWAY), with whatever is in flight. */
  dropConnections(): void {
    for (const { socket } of this.sockets.values()) socket.destroy();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions.keys()) s.destroy();
    for (const { socket } of this.sockets.values()) socket.destroy();
    // everything is destroyed, so this should not wait; never let a test hang on it
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }

  /**
   * Sends GOAWAY (with `data`, if any) on every open HTTP/2 connection. With
   * NO_ERROR requests in flight are still answered and then the connection
   * closes; with an error code it is torn down at once.
   */
  protected goawayAll(code: number, data?: Buffer): void {
    for (const [s, info] of this.sessions) {
      if (s.closed || s.destroyed) continue;
      s.goaway(code, info.maxStreamId, data);
      if (code === http2.constants.NGHTTP2_NO_ERROR) s.close();
      else setTimeout(() => s.destroy(), 10).unref();
    }
  }

  /** The stream's connection, its highest stream id noted. */
  protected noteStream(stream: ServerHttp2Stream): SessionInfo | undefined {
    const session = stream.session;
    const info = session ? this.sessions.get(session) : undefined;
    if (info && stream.id !== undefined && stream.id > info.maxStreamId) info.maxStreamId = stream.id;
    return info;
  }

  /** The TCP connection under a socket (an HTTP/2 session's TLS socket, a request's socket). */
  protected socketOf(sock: { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined): SocketInfo | undefined {
    return sock ? this.sockets.get(`${sock.remoteAddress}:${sock.remotePort}`) : undefined;
  }

  /**
   * Counts a request in `pending` until the returned settle() is called (it is
   * answered) or its response closes, whichever comes first.
   */
  protected admit(res: AnyResponse): () => void {
    this.inFlight++;
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        this.inFlight--;
      }
    };
    res.on('close', settle);
    return settle;
  }

  /** Resolves with the first `n` of `list` once it has them, waking on each `event`. */
  protected async waitFor<T>(list: readonly T[], event: keyof E & string, n: number, timeoutMs: number, what: string): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    while (list.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited for ${n} ${what}, got ${list.length}`);
      await Promise.race([once(this as EventEmitter, event), new Promise((r) => setTimeout(r, Math.min(left, 100)))]);
    }
    return list.slice(0, n);
  }
}
