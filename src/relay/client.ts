// Relay protocol client for recipients, senders and notifiers. Isomorphic:
// crypto and WebSocket come through the seams (noble and the platform's
// WebSocket by default).
import { parseAddress, type ServerAddress } from '../core/address.ts';
import { ProtocolClient, type WebSocketFactory } from '../core/client.ts';
import { nobleCrypto } from '../core/crypto/noble.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import {
  decodeMessagePlain,
  decodeMeta,
  decodeResponse,
  encodeCommand,
  RELAY_BLOCK_SIZE,
  RELAY_PROTOCOL,
  RELAY_VERSIONS,
  type MessageMeta,
  type NotifierIds,
  type ReceivedMessage,
  type RelayCommand,
  type RelayError,
  type RelayResponse,
} from './protocol.ts';

export class RelayCommandError extends Error {
  constructor(readonly error: RelayError | 'UNEXPECTED') {
    super(`relay answered ${error}`);
    this.name = 'RelayCommandError';
  }
}

/** A server-initiated transmission: MSG, NMSG, END, ENDS or DELD, with the entity it concerns. */
export type RelayEvent = RelayResponse & { entityId: Uint8Array };

export interface RelayClientOptions {
  crypto?: CryptoSuite;
  webSocket?: WebSocketFactory;
  timeoutMs?: number;
  onEvent?: (e: RelayEvent) => void;
  onClose?: (reason: string) => void;
}

export interface QueueIds {
  rcvId: Uint8Array;
  sndId: Uint8Array;
  srvDhKey: Uint8Array;
  ntf?: NotifierIds;
}

const EMPTY = new Uint8Array(0);

export class RelayClient {
  private constructor(
    readonly conn: ProtocolClient,
    readonly crypto: CryptoSuite,
  ) {}

  static async connect(address: string | ServerAddress, opts: RelayClientOptions = {}): Promise<RelayClient> {
    let a = address;
    if (typeof a === 'string') {
      const parsed = parseAddress(a);
      if (!parsed.ok) throw new Error(parsed.error);
      a = parsed.value;
    }
    const crypto = opts.crypto ?? nobleCrypto;
    const conn = await ProtocolClient.connect({
      address: a,
      protocol: RELAY_PROTOCOL,
      versions: RELAY_VERSIONS,
      blockSize: RELAY_BLOCK_SIZE,
      crypto,
      ...(opts.webSocket ? { webSocket: opts.webSocket } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.onClose ? { onClose: opts.onClose } : {}),
      onEvent: (entityId, command) => {
        const r = decodeResponse(command);
        if (r.ok) opts.onEvent?.({ ...r.value, entityId });
      },
    });
    return new RelayClient(conn, crypto);
  }

  /** Sends a command; resolves with the response, throws RelayCommandError on ERR. */
  async command(entityId: Uint8Array, c: RelayCommand, authKey?: Uint8Array): Promise<RelayResponse> {
    const bytes = await this.conn.request(entityId, encodeCommand(c), authKey);
    const r = decodeResponse(bytes);
    if (!r.ok) throw new RelayCommandError('UNEXPECTED');
    if (r.value.type === 'ERR') throw new RelayCommandError(r.value.error);
    return r.value;
  }

  private async expect<T extends RelayResponse['type']>(
    type: T,
    entityId: Uint8Array,
    c: RelayCommand,
    authKey?: Uint8Array,
  ): Promise<Extract<RelayResponse, { type: T }>> {
    const r = await this.command(entityId, c, authKey);
    if (r.type !== type) throw new RelayCommandError('UNEXPECTED');
    return r as Extract<RelayResponse, { type: T }>;
  }

  private ok(entityId: Uint8Array, c: RelayCommand, authKey: Uint8Array): Promise<void> {
    return this.expect('OK', entityId, c, authKey).then(() => undefined);
  }

  /** NEW: creates a queue; with `ntf`, notifier credentials in the same round trip. */
  async newQueue(
    rcvAuth: KeyPair,
    rcvDhKey: Uint8Array,
    ntf?: { ntfAuthKey: Uint8Array; rcvNtfDhKey: Uint8Array },
  ): Promise<QueueIds> {
    const cmd: RelayCommand = { type: 'NEW', rcvAuthKey: rcvAuth.publicKey, rcvDhKey, ...(ntf ? { ntf } : {}) };
    const { type: _, ...ids } = await this.expect('IDS', EMPTY, cmd, rcvAuth.privateKey);
    return ids;
  }

  subscribe = (rcvId: Uint8Array, rcvAuthKey: Uint8Array) => this.ok(rcvId, { type: 'SUB' }, rcvAuthKey);

  /** GET: the oldest message, still sealed, or undefined if the queue is empty. */
  async get(rcvId: Uint8Array, rcvAuthKey: Uint8Array): Promise<Extract<RelayResponse, { type: 'MSG' }> | undefined> {
    const r = await this.command(rcvId, { type: 'GET' }, rcvAuthKey);
    if (r.type === 'MSG') return r;
    if (r.type === 'OK') return undefined;
    throw new RelayCommandError('UNEXPECTED');
  }

  ack = (rcvId: Uint8Array, rcvAuthKey: Uint8Array, msgId: Uint8Array) =>
    this.ok(rcvId, { type: 'ACK', msgId }, rcvAuthKey);

  secure = (rcvId: Uint8Array, rcvAuthKey: Uint8Array, sndAuthKey: Uint8Array) =>
    this.ok(rcvId, { type: 'KEY', sndAuthKey }, rcvAuthKey);

  async enableNotifications(
    rcvId: Uint8Array,
    rcvAuthKey: Uint8Array,
    ntfAuthKey: Uint8Array,
    rcvNtfDhKey: Uint8Array,
  ): Promise<NotifierIds> {
    const { type: _, ...ids } = await this.expect('NID', rcvId, { type: 'NKEY', ntfAuthKey, rcvNtfDhKey }, rcvAuthKey);
    return ids;
  }

  disableNotifications = (rcvId: Uint8Array, rcvAuthKey: Uint8Array) => this.ok(rcvId, { type: 'NDEL' }, rcvAuthKey);
  suspend = (rcvId: Uint8Array, rcvAuthKey: Uint8Array) => this.ok(rcvId, { type: 'OFF' }, rcvAuthKey);
  deleteQueue = (rcvId: Uint8Array, rcvAuthKey: Uint8Array) => this.ok(rcvId, { type: 'DEL' }, rcvAuthKey);

  /** SEND; `sndAuthKey` is required once the recipient has secured the queue with KEY. */
  send(sndId: Uint8Array, body: Uint8Array, opts: { notify?: boolean; sndAuthKey?: Uint8Array } = {}): Promise<void> {
    return this.expect('OK', sndId, { type: 'SEND', notify: opts.notify ?? false, body }, opts.sndAuthKey).then(
      () => undefined,
    );
  }

  subscribeNotifier = (notifierId: Uint8Array, ntfAuthKey: Uint8Array) =>
    this.ok(notifierId, { type: 'NSUB' }, ntfAuthKey);

  /** NSUBS: identifies this connection as a notification service and subscribes all its queues. */
  async subscribeService(serviceKey: KeyPair): Promise<number> {
    const r = await this.expect('SOKS', EMPTY, { type: 'NSUBS', serviceKey: serviceKey.publicKey }, serviceKey.privateKey);
    return r.count;
  }

  ping = () => this.expect('PONG', EMPTY, { type: 'PING' }).then(() => undefined);

  close(): void {
    this.conn.close();
  }
}

/** Opens a MSG with the queue's secret X25519(recipient DH key, relay's srvDhKey). */
export function openMessage(
  crypto: CryptoSuite,
  rcvDhSecret: Uint8Array,
  msg: { msgId: Uint8Array; sealed: Uint8Array },
): ReceivedMessage | undefined {
  const plain = crypto.open(rcvDhSecret, msg.msgId, msg.sealed);
  const m = plain && decodeMessagePlain(msg.msgId, plain);
  return m?.ok ? m.value : undefined;
}

/** Opens NMSG meta with X25519(recipient's notifier DH key, relay's srvNtfDhKey). */
export function openMeta(
  crypto: CryptoSuite,
  rcvNtfDhSecret: Uint8Array,
  nmsg: { nonce: Uint8Array; sealedMeta: Uint8Array },
): MessageMeta | undefined {
  const plain = crypto.open(rcvNtfDhSecret, nmsg.nonce, nmsg.sealedMeta);
  const m = plain && decodeMeta(plain);
  return m?.ok ? m.value : undefined;
}
