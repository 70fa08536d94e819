// Typed clients on top of ProtocolClient: a protocol supplies its codec, and
// gets `command` (send, decode, throw on ERR) and `expect` (a response of one
// type) — the same for the relay and the notification server.
import { parseAddress, type ServerAddress } from './address.ts';
import { ProtocolClient, type KeepaliveOptions, type WebSocketFactory } from './client.ts';
import { nobleCrypto } from './crypto/noble.ts';
import type { CryptoSuite } from './crypto/suite.ts';
import type { Parsed } from './encoding.ts';

export interface ProtocolSpec<C, R extends { type: string }> {
  protocol: string;
  versions: [number, number];
  blockSize: number;
  encodeCommand(c: C): Uint8Array;
  decodeResponse(b: Uint8Array): Parsed<R>;
  /** The command that probes a quiet link (keepalive). */
  ping: C;
}

const EMPTY = new Uint8Array(0);

/** An ERR response (its tag in `error`), or UNEXPECTED for a response that does not fit the command. */
export class CommandError extends Error {
  constructor(readonly error: string) {
    super(`server answered ${error}`);
    this.name = 'CommandError';
  }
}

export interface CommandClientOptions<R> {
  crypto?: CryptoSuite;
  webSocket?: WebSocketFactory;
  timeoutMs?: number;
  /** Server-initiated transmissions, decoded, with the entity they concern. */
  onEvent?: (e: R & { entityId: Uint8Array }) => void;
  onClose?: (reason: string) => void;
  keepalive?: Partial<KeepaliveOptions> | false;
  onPing?: (rttMs: number) => void;
}

export class CommandClient<C, R extends { type: string }> {
  protected constructor(
    readonly conn: ProtocolClient,
    readonly crypto: CryptoSuite,
    private readonly spec: ProtocolSpec<C, R>,
  ) {}

  protected static async open<C, R extends { type: string }>(
    spec: ProtocolSpec<C, R>,
    address: string | ServerAddress,
    opts: CommandClientOptions<R>,
  ): Promise<{ conn: ProtocolClient; crypto: CryptoSuite; address: ServerAddress }> {
    let a = address;
    if (typeof a === 'string') {
      const parsed = parseAddress(a);
      if (!parsed.ok) throw new Error(parsed.error);
      a = parsed.value;
    }
    const crypto = opts.crypto ?? nobleCrypto;
    const conn = await ProtocolClient.connect({
      address: a,
      protocol: spec.protocol,
      versions: spec.versions,
      blockSize: spec.blockSize,
      crypto,
      ...(opts.webSocket ? { webSocket: opts.webSocket } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.onClose ? { onClose: opts.onClose } : {}),
      ...(opts.keepalive !== undefined ? { keepalive: opts.keepalive } : {}),
      ...(opts.onPing ? { onPing: opts.onPing } : {}),
      ping: spec.encodeCommand(spec.ping),
      onEvent: (entityId, command) => {
        const r = spec.decodeResponse(command);
        if (r.ok) opts.onEvent?.({ ...r.value, entityId });
      },
    });
    return { conn, crypto, address: a };
  }

  /** Sends a command; resolves with the response, throws CommandError on ERR. */
  async command(entityId: Uint8Array, c: C, authKey?: Uint8Array): Promise<R> {
    const bytes = await this.conn.request(entityId, this.spec.encodeCommand(c), authKey);
    const r = this.spec.decodeResponse(bytes);
    if (!r.ok) throw new CommandError('UNEXPECTED');
    if (r.value.type === 'ERR') throw new CommandError((r.value as unknown as { error: string }).error);
    return r.value;
  }

  protected async expect<T extends R['type']>(
    type: T,
    entityId: Uint8Array,
    c: C,
    authKey?: Uint8Array,
  ): Promise<Extract<R, { type: T }>> {
    const r = await this.command(entityId, c, authKey);
    if (r.type !== type) throw new CommandError('UNEXPECTED');
    return r as Extract<R, { type: T }>;
  }

  protected async ok(entityId: Uint8Array, c: C, authKey?: Uint8Array): Promise<void> {
    await this.expect('OK' as R['type'], entityId, c, authKey);
  }

  /** PING: resolves when the server answers PONG. */
  async ping(): Promise<void> {
    await this.expect('PONG' as R['type'], EMPTY, this.spec.ping);
  }

  get connected(): boolean {
    return this.conn.connected;
  }

  close(): void {
    this.conn.close();
  }
}
