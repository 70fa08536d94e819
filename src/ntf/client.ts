// NTF protocol client: what a device (through the SDK) uses to register its
// push token and its queues' notifier credentials. Isomorphic.
import type { ServerAddress } from '../core/address.ts';
import { CommandClient, type CommandClientOptions, type ProtocolSpec } from '../core/command-client.ts';
import type { KeyPair } from '../core/crypto/suite.ts';
import {
  decodeResponse,
  encodeCommand,
  NTF_BLOCK_SIZE,
  NTF_PROTOCOL,
  NTF_VERSIONS,
  type NtfCommand,
  type NtfResponse,
  type SubStatus,
  type TokenStatus,
} from './protocol.ts';
import type { DeviceToken } from '../push/device.ts';

export { CommandError as NtfCommandError } from '../core/command-client.ts';

const EMPTY = new Uint8Array(0);

const NTF_SPEC: ProtocolSpec<NtfCommand, NtfResponse> = {
  protocol: NTF_PROTOCOL,
  versions: NTF_VERSIONS,
  blockSize: NTF_BLOCK_SIZE,
  encodeCommand,
  decodeResponse,
  ping: { type: 'PING' },
};

export class NtfClient extends CommandClient<NtfCommand, NtfResponse> {
  /** The server's creation password, from the address connected to (hush://fp:password@host:port); sent in TNEW only. */
  private password: Uint8Array | undefined;

  static async connect(address: string | ServerAddress, opts: CommandClientOptions<NtfResponse> = {}): Promise<NtfClient> {
    const { conn, crypto, address: a } = await CommandClient.open(NTF_SPEC, address, opts);
    const client = new NtfClient(conn, crypto, NTF_SPEC);
    if (a.password !== undefined) client.password = new TextEncoder().encode(a.password);
    return client;
  }

  /**
   * TNEW: registers a device token; the server then pushes a sealed verification code to it.
   * Throws NtfCommandError PASSWORD (the address has no or a wrong password) or RATE (too many TNEWs, or
   * verification pushes to this device token: later).
   */
  async registerToken(device: DeviceToken, tknAuth: KeyPair, tknDhKey: Uint8Array) {
    const { tokenId, srvDhKey } = await this.expect(
      'IDTKN',
      EMPTY,
      { type: 'TNEW', device, tknAuthKey: tknAuth.publicKey, tknDhKey, ...(this.password ? { password: this.password } : {}) },
      tknAuth.privateKey,
    );
    return { tokenId, srvDhKey };
  }

  verifyToken = (tokenId: Uint8Array, tknAuthKey: Uint8Array, code: Uint8Array) =>
    this.ok(tokenId, { type: 'TVFY', code }, tknAuthKey);

  async checkToken(tokenId: Uint8Array, tknAuthKey: Uint8Array): Promise<TokenStatus> {
    const { type: _, ...status } = await this.expect('TKN', tokenId, { type: 'TCHK' }, tknAuthKey);
    return status as TokenStatus;
  }

  replaceToken = (tokenId: Uint8Array, tknAuthKey: Uint8Array, device: DeviceToken) =>
    this.ok(tokenId, { type: 'TRPL', device }, tknAuthKey);

  deleteToken = (tokenId: Uint8Array, tknAuthKey: Uint8Array) => this.ok(tokenId, { type: 'TDEL' }, tknAuthKey);

  /** TCRN: periodic "check messages" pushes every `minutes` (0 = off, at least 20). */
  setCron = (tokenId: Uint8Array, tknAuthKey: Uint8Array, minutes: number) =>
    this.ok(tokenId, { type: 'TCRN', minutes }, tknAuthKey);

  /** SNEW: asks the server to subscribe to a queue's notifications at a relay. */
  async createSubscription(
    tokenId: Uint8Array,
    tknAuthKey: Uint8Array,
    relay: string,
    notifierId: Uint8Array,
    ntfAuthKey: Uint8Array,
  ): Promise<Uint8Array> {
    const r = await this.expect('IDSUB', tokenId, { type: 'SNEW', relay, notifierId, ntfAuthKey }, tknAuthKey);
    return r.subId;
  }

  async checkSubscription(subId: Uint8Array, tknAuthKey: Uint8Array): Promise<SubStatus> {
    return (await this.expect('SUB', subId, { type: 'SCHK' }, tknAuthKey)).status;
  }

  deleteSubscription = (subId: Uint8Array, tknAuthKey: Uint8Array) => this.ok(subId, { type: 'SDEL' }, tknAuthKey);
}
