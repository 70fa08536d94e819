// Relay protocol client for recipients, senders and notifiers. Isomorphic:
// crypto and WebSocket come through the seams (noble and the platform's
// WebSocket by default).
import type { ServerAddress } from '../core/address.ts';
import { CommandClient, CommandError, type CommandClientOptions, type ProtocolSpec } from '../core/command-client.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import type { Parsed } from '../core/encoding.ts';
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
  type RelayResponse,
} from './protocol.ts';

/** Thrown for an ERR from the relay; `error` is the relay's error tag. */
export { CommandError as RelayCommandError };

/** A server-initiated transmission: MSG, NMSG, END, ENDS or DELD, with the entity it concerns. */
export type RelayEvent = RelayResponse & { entityId: Uint8Array };

export type RelayClientOptions = CommandClientOptions<RelayResponse>;

export interface QueueIds {
  rcvId: Uint8Array;
  sndId: Uint8Array;
  srvDhKey: Uint8Array;
  ntf?: NotifierIds;
}

const EMPTY = new Uint8Array(0);

const RELAY_SPEC: ProtocolSpec<RelayCommand, RelayResponse> = {
  protocol: RELAY_PROTOCOL,
  versions: RELAY_VERSIONS,
  blockSize: RELAY_BLOCK_SIZE,
  encodeCommand,
  decodeResponse,
  ping: { type: 'PING' },
};

export class RelayClient extends CommandClient<RelayCommand, RelayResponse> {
  /** The relay's creation password, from the address connected to (hush://fp:password@host:port); sent in NEW only. */
  private password: Uint8Array | undefined;

  static async connect(address: string | ServerAddress, opts: RelayClientOptions = {}): Promise<RelayClient> {
    const { conn, crypto, address: a } = await CommandClient.open(RELAY_SPEC, address, opts);
    const client = new RelayClient(conn, crypto, RELAY_SPEC);
    if (a.password !== undefined) client.password = new TextEncoder().encode(a.password);
    return client;
  }

  /**
   * NEW: creates a queue; with `ntf`, notifier credentials in the same round trip.
   * Throws RelayCommandError PASSWORD (the address has no or a wrong password) or RATE (too many NEWs: later).
   */
  async newQueue(
    rcvAuth: KeyPair,
    rcvDhKey: Uint8Array,
    ntf?: { ntfAuthKey: Uint8Array; rcvNtfDhKey: Uint8Array },
  ): Promise<QueueIds> {
    const cmd: RelayCommand = {
      type: 'NEW',
      rcvAuthKey: rcvAuth.publicKey,
      rcvDhKey,
      ...(ntf ? { ntf } : {}),
      ...(this.password ? { password: this.password } : {}),
    };
    const { type: _, ...ids } = await this.expect('IDS', EMPTY, cmd, rcvAuth.privateKey);
    return ids;
  }

  subscribe = (rcvId: Uint8Array, rcvAuthKey: Uint8Array) => this.ok(rcvId, { type: 'SUB' }, rcvAuthKey);

  /** GET: the oldest message, still sealed, or undefined if the queue is empty. */
  async get(rcvId: Uint8Array, rcvAuthKey: Uint8Array): Promise<Extract<RelayResponse, { type: 'MSG' }> | undefined> {
    const r = await this.command(rcvId, { type: 'GET' }, rcvAuthKey);
    if (r.type === 'MSG') return r;
    if (r.type === 'OK') return undefined;
    throw new CommandError('UNEXPECTED');
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

  /** NACK: the NMSG with this nonce is safe with the notifier; the relay may forget it. */
  acknowledgeNotification = (notifierId: Uint8Array, nonce: Uint8Array) => this.ok(notifierId, { type: 'NACK', nonce });

  /** NUNS: this connection stops getting the queue's NMSGs (also those it gets through its service). */
  unsubscribeNotifier = (notifierId: Uint8Array) => this.ok(notifierId, { type: 'NUNS' });

  /** NSUBS: identifies this connection as a notification service and subscribes all its queues. */
  async subscribeService(serviceKey: KeyPair): Promise<number> {
    const r = await this.expect('SOKS', EMPTY, { type: 'NSUBS', serviceKey: serviceKey.publicKey }, serviceKey.privateKey);
    return r.count;
  }

}

/** Opens a MSG with the queue's secret X25519(recipient DH key, relay's srvDhKey). */
export function openMessage(
  crypto: CryptoSuite,
  rcvDhSecret: Uint8Array,
  msg: { msgId: Uint8Array; sealed: Uint8Array },
): ReceivedMessage | undefined {
  return decoded(crypto.open(rcvDhSecret, msg.msgId, msg.sealed), (plain) => decodeMessagePlain(msg.msgId, plain));
}

/** Opens NMSG meta with X25519(recipient's notifier DH key, relay's srvNtfDhKey). */
export function openMeta(
  crypto: CryptoSuite,
  rcvNtfDhSecret: Uint8Array,
  nmsg: { nonce: Uint8Array; sealedMeta: Uint8Array },
): MessageMeta | undefined {
  return decoded(crypto.open(rcvNtfDhSecret, nmsg.nonce, nmsg.sealedMeta), decodeMeta);
}

/** What opened, decoded; undefined if it did not open or does not decode. */
function decoded<T>(plain: Uint8Array | undefined, decode: (plain: Uint8Array) => Parsed<T>): T | undefined {
  const m = plain && decode(plain);
  return m?.ok ? m.value : undefined;
}
