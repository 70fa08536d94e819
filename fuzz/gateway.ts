// Push gateway inputs: random HTTP requests to its API (methods, paths,
// headers, bodies — the push JSON with fuzzed fields most often), over HTTP/2
// and HTTP/1.1 through Node's clients, and raw over TLS where those clients
// would refuse to send: HTTP/1.1 request text, and HTTP/2 frames with header
// blocks written by hand. Each request is one input; it must get a response,
// or its stream or connection closed, within the hang bound. Every request is
// complete (bodies ended, streams half-closed): one left open would wait for
// its client, and that is a slow client, not an unanswered input.
import http2, { type ClientHttp2Session } from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { toBase64Url } from '../src/core/encoding.ts';
import { INFO_PATH, MAX_REQUEST_BYTES, PUSH_PATH } from '../src/push/gateway/protocol.ts';
import { PROVIDERS, PUSH_DATA_SIZE } from '../src/push/device.ts';
import { text } from './commands.ts';
import { mutate, type Prng } from './prng.ts';
import type { Outcome } from './session.ts';

export interface GatewayTarget {
  /** https://127.0.0.1:port */
  url: string;
  port: number;
  /** The CA of the gateway's certificate. */
  ca: string;
  /** A server key the gateway knows (its account allows a high rate). */
  key: string;
  hangMs: number;
}

export interface Input {
  outcome: Outcome;
  input: Uint8Array;
  kind: string;
  /** For a hang: the state of the connection it was sent on. */
  state?: string;
}

const utf8 = (s: string) => new TextEncoder().encode(s);

/** Header name characters HTTP allows (tchar). */
const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
const token = (r: Prng, max = 16) => {
  let s = '';
  for (let i = r.range(1, max); i > 0; i--) s += r.pick([...TCHAR]);
  return s;
};

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

/** A request to the gateway's API: fuzzed method, path, authorization, content type, extra headers and body. */
function request(r: Prng, t: GatewayTarget): Request {
  const method = r.weighted<() => string>([
    [12, () => 'POST'],
    [4, () => 'GET'],
    [1, () => r.pick(['PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE'])],
    [1, () => token(r, 10).toUpperCase()],
  ])();
  const path = r.weighted<() => string>([
    [12, () => PUSH_PATH],
    [3, () => INFO_PATH],
    [1, () => r.pick(['/', '/v1', '/v1/', `${PUSH_PATH}/`, `${PUSH_PATH}?a=1`, `/${PUSH_PATH}`, '/v1/../v1/push', '/V1/PUSH', '*', '/%00', '/%zz'])],
    [1, () => `/${token(r, 40)}`],
    [1, () => '/' + 'a'.repeat(r.pick([1000, 8000, 20000]))],
  ])();
  const headers: Record<string, string> = {};
  const auth = r.weighted<() => string | undefined>([
    [10, () => `Bearer ${t.key}`],
    [2, () => undefined],
    [1, () => `Bearer ${token(r, 60)}`],
    [1, () => r.pick(['Bearer', 'Bearer ', `bearer ${t.key}`, `Basic ${t.key}`, `Bearer ${t.key}x`, `Bearer ${t.key.slice(0, -1)}`])],
    [1, () => `Bearer ${'k'.repeat(r.pick([100, 4000, 12000]))}`],
  ])();
  if (auth !== undefined) headers.authorization = auth;
  const type = r.weighted<() => string | undefined>([
    [8, () => 'application/json'],
    [1, () => undefined],
    [1, () => r.pick(['text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', '*/*'])],
  ])();
  if (type !== undefined) headers['content-type'] = type;
  for (let i = r.chance(0.2) ? r.range(1, 4) : 0; i > 0; i--) headers[token(r)] = text(r, 40).replace(/[^\x20-\x7e]/g, '');
  return { method, path, headers, body: method === 'GET' || method === 'HEAD' ? (r.chance(0.9) ? new Uint8Array(0) : body(r)) : body(r) };
}

/** A push request body: the JSON with a field (or its text) fuzzed, random bytes, or too large. */
function body(r: Prng): Uint8Array {
  const kind = r.weighted<string>([
    [4, 'valid'],
    [6, 'field'],
    [3, 'text'],
    [1, 'random'],
    [1, 'large'],
    [1, 'empty'],
  ]);
  const push: Record<string, unknown> = {
    provider: 'apns',
    token: toBase64Url(r.bytes(32)),
    kind: r.pick(['message', 'verification', 'check']),
    data: toBase64Url(r.bytes(PUSH_DATA_SIZE)),
  };
  switch (kind) {
    case 'valid':
      return utf8(JSON.stringify(push));
    case 'field': {
      const field = r.pick(['provider', 'token', 'kind', 'data', 'extra']);
      const value = r.weighted<() => unknown>([
        [3, () => jsonValue(r, 2)],
        [2, () => (field === 'provider' ? r.pick([...PROVIDERS, 'APNS', '']) : text(r, 64))],
        [2, () => toBase64Url(r.bytes(r.length(3000, [0, 1, 2048, 2049, PUSH_DATA_SIZE - 1, PUSH_DATA_SIZE + 1])))],
        [1, () => undefined],
      ])();
      if (value === undefined) delete push[field];
      else push[field] = value;
      return utf8(JSON.stringify(push));
    }
    case 'text':
      return mutate(r, utf8(JSON.stringify(push)), MAX_REQUEST_BYTES + 16);
    case 'random':
      return r.bytes(r.length(MAX_REQUEST_BYTES + 16));
    case 'large':
      return r.bytes(r.pick([MAX_REQUEST_BYTES, MAX_REQUEST_BYTES + 1, 65_536, 300_000]));
    default:
      return new Uint8Array(0);
  }
}

function jsonValue(r: Prng, depth: number): unknown {
  switch (r.int(depth > 0 ? 8 : 6)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1e308, -0, 2 ** 53 + 1, 0.5]);
    case 3:
      return text(r, 32);
    case 4:
      return '\u0000\ud800\uffff';
    case 5:
      return 'x'.repeat(r.pick([100, 10_000]));
    case 6:
      return Array.from({ length: r.int(4) }, () => jsonValue(r, depth - 1));
    default:
      return { [text(r, 8)]: jsonValue(r, depth - 1), __proto__: jsonValue(r, depth - 1) };
  }
}

/** Resolves with `outcome` once, or 'hang' after the bound. */
function settle(hangMs: number): { done: Promise<Outcome>; finish: (o: Outcome) => void } {
  let finish!: (o: Outcome) => void;
  const done = new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => resolve('hang'), hangMs);
    finish = (o) => {
      clearTimeout(timer);
      resolve(o);
    };
  });
  return { done, finish };
}

const describe = (q: Request) => utf8(`${q.method} ${q.path} ${JSON.stringify(q.headers)}\n${Buffer.from(q.body).toString('latin1')}`);

/** HTTP/2 connections the requests are spread over: a session the server drops (after too many bad streams) takes only its share. */
const SESSIONS = 4;
/**
 * Requests per HTTP/2 connection before a new one. Node's client accounts
 * memory per session (maxSessionMemory) and, past it, leaves new streams
 * unsent without an error: a connection is retired long before that.
 */
const REQUESTS_PER_SESSION = 1000;

export class GatewayFuzz {
  private readonly h2: Array<{ session: ClientHttp2Session; requests: number } | undefined> = [];
  private readonly agent: https.Agent;
  /** One TLS context for every raw connection: making one per connection costs more than the handshake. */
  private readonly secureContext: tls.SecureContext;

  constructor(private readonly t: GatewayTarget) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: t.ca });
    this.secureContext = tls.createSecureContext({ ca: t.ca });
  }

  /** One input of a kind drawn by weight. */
  next(r: Prng): Promise<Input> {
    return r.weighted<() => Promise<Input>>([
      [12, () => this.viaHttp2(r)],
      [4, () => this.viaHttp1(r)],
      [1, () => this.rawHttp1(r)],
      [1, () => this.rawHttp2(r)],
    ])();
  }

  private session(i: number): ClientHttp2Session {
    let h = this.h2[i];
    if (!h || h.session.closed || h.session.destroyed || h.requests >= REQUESTS_PER_SESSION) {
      h?.session.close(); // its requests in flight go on
      const session = http2.connect(this.t.url, { ca: this.t.ca });
      session.on('error', () => {});
      this.h2[i] = h = { session, requests: 0 };
    }
    h.requests++;
    return h.session;
  }

  /** A request through Node's HTTP/2 client (one that client refuses to send is drawn again). */
  private async viaHttp2(r: Prng): Promise<Input> {
    for (;;) {
      const q = request(r, this.t);
      const { done, finish } = settle(this.t.hangMs);
      const headers: http2.OutgoingHttpHeaders = { ':method': q.method, ':path': q.path, ...q.headers };
      if (r.chance(0.1)) headers['content-length'] = String(q.body.length + r.range(-2, 2));
      const session = this.session(r.int(SESSIONS));
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: q.body.length === 0 });
      } catch {
        finish('closed');
        continue;
      }
      stream.on('response', () => finish('answered'));
      stream.on('error', () => finish('closed'));
      stream.on('close', () => finish('closed'));
      stream.resume();
      if (q.body.length > 0) stream.end(q.body);
      const outcome = await done;
      const state = outcome === 'hang' ? `session closed ${session.closed}, destroyed ${session.destroyed}; stream ${stream.id} ${JSON.stringify(stream.state)}` : undefined;
      return { outcome, input: describe(q), kind: 'http2', ...(state ? { state } : {}) };
    }
  }

  /** A request through Node's HTTP/1.1 client on kept-alive connections. */
  private async viaHttp1(r: Prng): Promise<Input> {
    for (;;) {
      const q = request(r, this.t);
      const { done, finish } = settle(this.t.hangMs);
      let req;
      try {
        req = https.request({ host: '127.0.0.1', port: this.t.port, method: q.method, path: q.path, headers: q.headers, agent: this.agent });
      } catch {
        finish('closed');
        continue;
      }
      req.on('response', (res) => {
        finish('answered');
        res.resume();
      });
      req.on('error', () => finish('closed'));
      req.on('close', () => finish('closed'));
      req.end(q.body);
      return { outcome: await done, input: describe(q), kind: 'http1' };
    }
  }

  /** Request text no client library writes: a bad request line, header lines, framing; then the end of the stream. */
  private rawHttp1(r: Prng): Promise<Input> {
    const q = request(r, this.t);
    const version = r.weighted<() => string>([
      [8, () => 'HTTP/1.1'],
      [1, () => r.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1x', 'http/1.1', ''])],
    ])();
    const lines = [`${q.method} ${q.path} ${version}`, 'host: 127.0.0.1'];
    for (const [k, v] of Object.entries(q.headers)) lines.push(`${k}: ${v}`);
    const framing = r.weighted<() => string[]>([
      [4, () => [`content-length: ${q.body.length}`]],
      [1, () => [`content-length: ${q.body.length + r.range(-3, 3)}`]],
      [1, () => [`content-length: ${r.pick(['-1', '1e3', '0x10', '99999999999999999999', ' 5', '5, 6'])}`]],
      [1, () => ['transfer-encoding: chunked']],
      [1, () => ['transfer-encoding: chunked', `content-length: ${q.body.length}`]],
      [1, () => []],
    ])();
    lines.push(...framing);
    if (r.chance(0.1)) lines.push(r.pick(['no colon', ' folded: line', 'x:\u0000', 'expect: 100-continue', 'connection: upgrade', 'upgrade: h2c']));
    const chunked = framing.includes('transfer-encoding: chunked');
    const payload = chunked ? Buffer.concat([Buffer.from(`${q.body.length.toString(16)}\r\n`), q.body, Buffer.from(r.chance(0.8) ? '\r\n0\r\n\r\n' : '\r\nzz\r\n')]) : Buffer.from(q.body);
    let head = Buffer.from(lines.join(r.chance(0.95) ? '\r\n' : '\n') + '\r\n\r\n', 'latin1');
    if (r.chance(0.1)) head = Buffer.from(mutate(r, head, 64 * 1024));
    const bytes = new Uint8Array(Buffer.concat([head, payload]));
    return this.raw(['http/1.1'], bytes, 'raw-http1', () => true);
  }

  /**
   * The HTTP/2 preface and SETTINGS, sometimes a frame with random fields, then
   * a request on a new stream whose header block is written by hand (literal
   * fields: any names and values). Answered by that stream's HEADERS or
   * RST_STREAM, or by GOAWAY.
   */
  private rawHttp2(r: Prng): Promise<Input> {
    const q = request(r, this.t);
    const fields: Array<[string, string]> = [
      [':method', q.method],
      [':scheme', r.chance(0.95) ? 'https' : 'http'],
      [':path', q.path],
      [':authority', '127.0.0.1'],
      ...Object.entries(q.headers),
    ];
    if (r.chance(0.3)) {
      // a field no client library would write: upper case, a bad character, a second pseudo-header, a connection header
      const bad: Array<[string, string]> = [
        ['Authorization', 'x'],
        ['x\u0000y', 'z'],
        [':path', '/again'],
        [':status', '200'],
        ['connection', 'close'],
        ['te', 'gzip'],
        ['', 'empty'],
        ['x', '\r\ninjected: 1'],
      ];
      fields.splice(r.int(fields.length + 1), 0, r.pick(bad));
    }
    if (r.chance(0.1)) fields.splice(r.int(fields.length), 1);
    const block = hpackLiterals(fields);
    const frames: Uint8Array[] = [utf8('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, new Uint8Array(0))];
    let end = false;
    // The request's stream: above any the frame before it names, as a new stream must be (one
    // below is taken as closed, and its frames may be ignored).
    let id = 1;
    if (r.chance(0.2)) {
      // any frame type but GOAWAY (after which the server may just stop), with random fields
      const type = r.pick([0, 1, 2, 3, 4, 5, 6, 8, 9, 0x0a, 0xff]);
      const stream = r.pick([0, 1, 3, r.int(2 ** 30)]);
      id = (stream | 1) + 2;
      frames.push(frame(type, r.int(256), stream, r.bytes(r.length(64, [0, 4, 5, 6, 8]))));
    }
    if (r.chance(0.05)) {
      // bytes with no frame structure: the server may wait for the rest of a frame, so the stream ends here
      frames.push(r.bytes(r.range(1, 64)));
      end = true;
    }
    const flags = 0x4 | (q.body.length === 0 ? 0x1 : 0); // END_HEADERS, END_STREAM if no body
    frames.push(frame(1, flags, id, block));
    if (q.body.length > 0) {
      for (let o = 0; o < q.body.length; o += 16_384) {
        const last = o + 16_384 >= q.body.length;
        frames.push(frame(0, last ? 0x1 : 0, id, q.body.subarray(o, o + 16_384)));
      }
    }
    const bytes = new Uint8Array(Buffer.concat(frames));
    let buffered = Buffer.alloc(0);
    return this.raw(['h2'], bytes, 'raw-http2', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        const type = buffered[3]!;
        const stream = buffered.readUInt32BE(5) & 0x7fffffff;
        if (type === 7 || ((type === 1 || type === 3) && stream === id)) return true; // GOAWAY, or the request's response or reset
        if (buffered.length < 9 + length) return false;
        buffered = buffered.subarray(9 + length);
      }
      return false;
    }, end);
  }

  /** Writes `bytes` on a new TLS connection (ALPN `alpn`) and waits until `answered` says the server has, or it closes. */
  private async raw(alpn: string[], bytes: Uint8Array, kind: string, answered: (chunk: Buffer) => boolean, end = alpn[0] !== 'h2'): Promise<Input> {
    const { done, finish } = settle(this.t.hangMs);
    const socket = tls.connect({ host: '127.0.0.1', port: this.t.port, secureContext: this.secureContext, ALPNProtocols: alpn });
    socket.on('data', (chunk: Buffer) => {
      if (answered(chunk)) finish('answered');
    });
    socket.on('error', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('end', () => finish('closed'));
    socket.once('secureConnect', () => {
      socket.write(bytes);
      if (end) socket.end();
    });
    const outcome = await done;
    socket.destroy();
    return { outcome, input: bytes, kind };
  }

  /** True if the gateway answers GET /v1/info. */
  async alive(): Promise<boolean> {
    const { done, finish } = settle(this.t.hangMs);
    const s = http2.connect(this.t.url, { ca: this.t.ca });
    s.on('error', () => finish('closed'));
    const req = s.request({ ':method': 'GET', ':path': INFO_PATH }, { endStream: true });
    req.on('response', (h) => finish(h[':status'] === 200 ? 'answered' : 'closed'));
    req.on('error', () => finish('closed'));
    req.resume();
    const ok = (await done) === 'answered';
    s.destroy();
    return ok;
  }

  close(): void {
    for (const h of this.h2) h?.session.destroy();
    this.agent.destroy();
  }
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK header block of literal fields without indexing, new names, no Huffman coding (RFC 7541 §6.2.2). */
function hpackLiterals(fields: Array<[string, string]>): Uint8Array {
  const parts: Buffer[] = [];
  const str = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    parts.push(hpackInt(b.length, 7, 0), b);
  };
  for (const [name, value] of fields) {
    parts.push(Buffer.of(0));
    str(name);
    str(value);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1). */
function hpackInt(v: number, n: number, high: number): Buffer {
  const max = (1 << n) - 1;
  if (v < max) return Buffer.of(high | v);
  const out = [high | max];
  v -= max;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}
