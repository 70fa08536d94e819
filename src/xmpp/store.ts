// The app server's registrations: a node (what a user's server publishes to)
// → the device token to wake and the node's secret. In memory, every change a
// journal record, written before the registration's reply leaves. Nothing
// about the user is kept: not the account that registered, not its server.
import path from 'node:path';
import { Encoder, latin1Bytes, parse, ParseError } from '../core/encoding.ts';
import { deviceKey, readDevice, writeDevice, type DeviceToken } from '../push/device.ts';
import { openJournal, type JournalOptions } from '../server/journal.ts';
import { RecordedStore } from '../server/recorded-store.ts';

export interface Registration {
  /** Random, given to the client; its server publishes to it. */
  node: string;
  /** Checked against each publish's publish-options: base64url of random bytes, as the client got it. */
  secret: string;
  device: DeviceToken;
}

export type XmppRecord = { t: 'REG'; reg: Registration } | { t: 'DEL'; node: string };

export class RegistrationStore extends RecordedStore<XmppRecord> {
  private readonly nodes = new Map<string, Registration>();
  /** One registration per device token: registering again returns it. */
  private readonly devices = new Map<string, Registration>();

  get size(): number {
    return this.nodes.size;
  }

  byNode = (node: string) => this.nodes.get(node);
  byDevice = (device: DeviceToken) => this.devices.get(deviceKey(device));

  add(reg: Registration): void {
    this.record({ t: 'REG', reg });
  }

  delete(node: string): void {
    if (this.nodes.has(node)) this.record({ t: 'DEL', node });
  }

  protected apply(r: XmppRecord): void {
    if (r.t === 'REG') {
      const old = this.devices.get(deviceKey(r.reg.device));
      if (old) this.nodes.delete(old.node);
      this.nodes.set(r.reg.node, r.reg);
      this.devices.set(deviceKey(r.reg.device), r.reg);
      return;
    }
    const reg = this.nodes.get(r.node);
    if (!reg) return;
    this.nodes.delete(r.node);
    this.devices.delete(deviceKey(reg.device));
  }

  *liveRecords(): Generator<XmppRecord> {
    for (const reg of this.nodes.values()) yield { t: 'REG', reg };
  }
}

function encode(r: XmppRecord): Uint8Array {
  const e = new Encoder(128).tag(r.t);
  if (r.t === 'DEL') return e.short(latin1Bytes(r.node)).done();
  return writeDevice(e.short(latin1Bytes(r.reg.node)).short(latin1Bytes(r.reg.secret)), r.reg.device).done();
}

const decode = (b: Uint8Array) =>
  parse(
    b,
    (d): XmppRecord => {
      const t = d.tag();
      if (t === 'DEL') return { t, node: d.shortLatin1() };
      if (t !== 'REG') throw new ParseError('unknown record');
      return { t, reg: { node: d.shortLatin1(), secret: d.shortLatin1(), device: readDevice(d) } };
    },
    true,
  );

/** The store with its journal in `dir` (xmpp.journal). */
export function openRegistrationStore(dir: string, opts: Omit<JournalOptions, 'file'> = {}) {
  const store = new RegistrationStore();
  return { store, journal: openJournal(store, { encode, decode }, { ...opts, file: path.join(dir, 'xmpp.journal') }) };
}
