// A local Web Push endpoint: what a UnifiedPush distributor is on the user's
// machine, so a desktop client gets pushes with no Apple or Google in between.
// The notification server POSTs each push (RFC 8030) encrypted to our keys
// (RFC 8291 aes128gcm); we decrypt it and hand the bytes to the app.
//
// The keys, port and path token live in a side file, so a restart keeps the
// same endpoint (and subscription) whenever the old port is still free.
import { createECDH, randomBytes, type ECDH } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { decryptWebPush, MAX_PUSH_BODY, WebPushDecryptError } from '../push/webpush/ece.ts';
import type { WebPushSubscriptionJSON } from '../push/webpush/subscription.ts';

const b64url = z.string().regex(/^[A-Za-z0-9_-]+$/);
const sideFileSchema = z
  .object({
    privateKey: b64url,
    authSecret: b64url,
    port: z.number().int().min(1).max(65535),
    token: b64url,
  })
  .strict();
type SideFile = z.infer<typeof sideFileSchema>;

export interface PushReceiverOptions {
  /** JSON side file holding the keys, port and path token (created if missing). */
  file: string;
  /** A decrypted push message, as text (PushMessageData.text()); called after the push service got its 201. */
  onPush(message: string): void;
}

export class PushReceiver {
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  private readonly authSecret: Buffer;

  private constructor(
    private readonly ecdh: ECDH,
    private readonly state: SideFile,
    private readonly onPush: (message: string) => void,
  ) {
    this.authSecret = Buffer.from(state.authSecret, 'base64url');
  }

  static async start(o: PushReceiverOptions): Promise<PushReceiver> {
    const saved = readSideFile(o.file);
    const ecdh = createECDH('prime256v1');
    if (!saved) ecdh.generateKeys();
    else
      try {
        ecdh.setPrivateKey(Buffer.from(saved.privateKey, 'base64url'));
      } catch {
        throw corrupt(o.file);
      }
    const r = new PushReceiver(
      ecdh,
      saved ?? {
        privateKey: ecdh.getPrivateKey().toString('base64url'),
        authSecret: randomBytes(16).toString('base64url'),
        port: 1, // set below to the port bound
        token: randomBytes(16).toString('base64url'),
      },
      o.onPush,
    );
    // The port saved in the file if it is free, else any.
    try {
      await listen(r.server, saved?.port ?? 0);
    } catch (e) {
      // The saved port is taken: any port will do, at the price of a new endpoint.
      if (!saved || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      await listen(r.server, 0);
    }
    const port = (r.server.address() as AddressInfo).port;
    if (!saved || saved.port !== port) writeSideFile(o.file, { ...r.state, port });
    r.state.port = port;
    return r;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.state.port}/push/${this.state.token}`;
  }

  /** The subscription to register, in the form a browser's PushSubscription.toJSON() has. */
  subscription(): WebPushSubscriptionJSON {
    return { endpoint: this.endpoint, keys: { p256dh: this.ecdh.getPublicKey().toString('base64url'), auth: this.state.authSecret } };
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      // the notification server keeps its connection alive; close() alone would wait for it
      this.server.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const refuse = (status: number, why: string, headers: http.OutgoingHttpHeaders = {}) => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(why + '\n');
      req.resume(); // drain what the sender still sends, so the connection stays usable
    };
    if (req.url !== `/push/${this.state.token}`) return refuse(404, 'no such push resource');
    if (req.method !== 'POST') return refuse(405, 'only POST', { allow: 'POST' });
    if (req.headers['content-encoding'] !== 'aes128gcm') return refuse(415, 'content-encoding must be aes128gcm');
    // RFC 8030 §5.2: TTL is required
    const ttl = req.headers.ttl;
    if (typeof ttl !== 'string' || !/^[0-9]+$/.test(ttl)) return refuse(400, 'TTL header required');
    if (Number(req.headers['content-length'] ?? 0) > MAX_PUSH_BODY) return refuse(413, `body over ${MAX_PUSH_BODY} bytes`, { connection: 'close' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_PUSH_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_PUSH_BODY) return refuse(413, `body over ${MAX_PUSH_BODY} bytes`);
      let data: Uint8Array;
      try {
        data = decryptWebPush(Buffer.concat(chunks), { uaPrivate: this.ecdh, uaPublic: this.ecdh.getPublicKey(), authSecret: this.authSecret });
      } catch (e) {
        return refuse(400, `cannot decrypt: ${e instanceof WebPushDecryptError ? e.message : 'bad body'}`);
      }
      res.writeHead(201).end();
      this.onPush(Buffer.from(data).toString('utf8'));
    });
  }
}

function listen(server: http.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => reject(e);
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      resolve();
    });
  });
}

function readSideFile(file: string): SideFile | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  // Never replace a damaged file silently: its keys are what the registered subscription encrypts to.
  let parsed;
  try {
    parsed = sideFileSchema.safeParse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) throw corrupt(file);
  return parsed.data;
}

const corrupt = (file: string) => new Error(`${file} is corrupt (delete it to get a new push endpoint)`);

/** Written atomically and private to the user: it holds the private key. */
function writeSideFile(file: string, s: SideFile): void {
  const tmp = `${file}.tmp`;
  fs.rmSync(tmp, { force: true }); // a left-over one would keep its mode
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}
