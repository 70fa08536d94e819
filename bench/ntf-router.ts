// The push router of the notification-server benchmark: every push the APNs
// test server accepts, in this process. Verification pushes go to the
// registration waiting for them; message pushes are opened and their NMSGs
// reported to the SEND driver (bench/ntf-sender-child.ts) as arrivals.
import type { ChildProcess } from 'node:child_process';
import { openPush } from '../src/ntf/payload.ts';
import { openMeta } from '../src/relay/client.ts';
import type { ApnsTestServer, ApnsRecordedPush } from '../src/push/stand-ins/apns-server.ts';
import { crypto, hrMs } from './ntf-rig.ts';

export interface SubQueue {
  index: number;
  sndId: Uint8Array;
  rcvNtfDhSecret: Uint8Array;
}

interface BenchToken {
  secret: Uint8Array;
  queues: Map<string, SubQueue>;
}

/** A map key of bytes (latin1: one char a byte). */
export const key = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

export class PushRouter {
  readonly verification = new Map<string, (d: string) => void>();
  readonly tokens = new Map<string, BenchToken>();
  lastNonce: string[] = [];
  messagePushes = 0;
  unknown = 0;
  badPushes = 0;
  badMeta = 0;
  sample: ApnsRecordedPush | undefined;
  sender: ChildProcess | undefined;
  /** Whether message pushes are opened and matched (off for the raw HTTP/2 run: only counted). */
  matching = true;
  private batch: number[] = [];
  private flushQueued = false;

  constructor(private readonly apns: ApnsTestServer) {
    apns.on('push', (p) => this.push(p));
  }

  private push(p: ApnsRecordedPush): void {
    const t = hrMs();
    // The test server keeps every push and exchange: nothing here needs them kept.
    if (this.apns.pushes.length > 256) this.apns.pushes.length = 0;
    if (this.apns.exchanges.length > 256) this.apns.exchanges.length = 0;
    if (p.headers['apns-push-type'] !== 'alert') {
      const w = this.verification.get(p.token);
      if (!w) return void this.unknown++;
      this.verification.delete(p.token);
      w(p.payload.d as string);
      return;
    }
    this.messagePushes++;
    this.sample ??= p;
    if (!this.matching) return;
    const tk = this.tokens.get(p.token);
    if (!tk) return void this.unknown++;
    const c = openPush(crypto, tk.secret, Buffer.from(p.payload.d as string, 'base64url'));
    if (!c || c.kind !== 'message') return void this.badPushes++;
    for (const e of c.entries) {
      const q = tk.queues.get(key(e.notifierId));
      if (!q) {
        this.badPushes++;
        continue;
      }
      const n = key(e.nonce);
      if (this.lastNonce[q.index] === n) continue; // an older NMSG, pushed before
      this.lastNonce[q.index] = n;
      if (!openMeta(crypto, q.rcvNtfDhSecret, e)) this.badMeta++;
      this.batch.push(q.index, t);
    }
    if (!this.flushQueued && this.batch.length > 0) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        const items = this.batch;
        this.batch = [];
        // A driver that has exited (the section failing, or stopping it) fails its run through its exit;
        // a write to its closed channel must not become an unhandled 'error' that ends this process
        // before the section's finally kills the servers.
        if (this.sender?.connected) this.sender.send({ t: 'pushed', items }, () => {});
      });
    }
  }

  waitVerification(tokenHex: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.verification.delete(tokenHex);
        reject(new Error('no verification push'));
      }, timeoutMs);
      this.verification.set(tokenHex, (d) => {
        clearTimeout(timer);
        resolve(d);
      });
    });
  }
}
