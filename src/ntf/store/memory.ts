// In-memory NTF store: the state every backend reads from. Each mutation is an
// NtfRecord, applied here and handed to `persist` (journal append, SQL batch).
import { equalBytes, latin1 } from '../../core/encoding.ts';
import type { TokenStatus } from '../protocol.ts';
import { deviceKey, type DeviceToken } from '../../push/device.ts';
import { RecordedStore } from '../../server/recorded-store.ts';
import type { NtfRecord } from './records.ts';
import type {
  LastNotification,
  NtfStore,
  NtfStoreCounts,
  SentNotification,
  StoredNotification,
  StoredSubStatus,
  SubRecord,
  TokenRecord,
} from './store.ts';

/** Last notifications kept per token: more than a push carries would never be sent. */
export const LAST_PER_TOKEN = 16;

const statusReason = (t: TokenRecord) => (t.status.status === 'INVALID' ? t.status.reason : undefined);
const deviceAuthKey = (d: DeviceToken, authKey: Uint8Array) => `${deviceKey(d)}\u0000${latin1(authKey)}`;

export class MemoryNtfStore extends RecordedStore<NtfRecord> implements NtfStore {
  protected readonly tokens = new Map<string, TokenRecord>();
  private readonly devices = new Map<string, TokenRecord>();
  /** provider + device token → its tokens, whatever their auth keys */
  private readonly byDevice = new Map<string, Set<TokenRecord>>();
  private readonly crons = new Set<TokenRecord>();
  /** Tokens not ACTIVE. */
  private readonly inactive = new Set<TokenRecord>();
  protected readonly subs = new Map<string, SubRecord>();
  /** relay → notifierId → subscription */
  private readonly byRelay = new Map<string, RelaySubs>();
  private readonly byToken = new Map<string, Set<SubRecord>>();
  /** tokenId → subId → latest notification, in arrival order */
  protected readonly last = new Map<string, Map<string, StoredNotification>>();
  /**
   * Pending notifications → their token, oldest first: arrival order, which is
   * ts order as the server's clock stamps them; sorted by ts after a load
   * (`unsorted`), since a compacted journal or a database lists them by token.
   */
  private pending = new Map<StoredNotification, string>();
  private unsorted = false;
  private readonly tokenCounts: NtfStoreCounts['tokens'] = { NEW: 0, REGISTERED: 0, CONFIRMED: 0, ACTIVE: 0, INVALID: 0, EXPIRED: 0 };
  private readonly subCounts: NtfStoreCounts['subscriptions'] = { NEW: 0, PENDING: 0, ACTIVE: 0, END: 0, DELETED: 0, AUTH: 0 };

  token = (tokenId: string) => this.tokens.get(tokenId);
  tokenOfDevice = (device: DeviceToken, tknAuthKey: Uint8Array) => this.devices.get(deviceAuthKey(device, tknAuthKey));
  cronTokens = () => this.crons.values();
  inactiveTokens = () => this.inactive.values();
  sub = (subId: string) => this.subs.get(subId);
  subOfNotifier = (relay: string, notifierId: string) => this.byRelay.get(relay)?.get(notifierId);
  subsOfToken = (tokenId: string) => this.byToken.get(tokenId)?.values() ?? [].values();
  subscriptionCount = (tokenId: string) => this.byToken.get(tokenId)?.size ?? 0;
  subsOfRelay = (relay: string) => this.byRelay.get(relay)?.values() ?? [].values();
  relays = () => this.byRelay.keys();
  tokenIds = () => this.tokens.keys();
  subIds = () => this.subs.keys();

  tokensOfDevice = (device: DeviceToken) => this.byDevice.get(deviceKey(device))?.values() ?? [].values();

  lastNotifications(tokenId: string, limit: number): StoredNotification[] {
    const all = [...(this.last.get(tokenId)?.values() ?? [])];
    return all.slice(Math.max(0, all.length - limit));
  }

  lastNotification = (tokenId: string, subId: string) => this.last.get(tokenId)?.get(subId);

  pendingPushes(): { count: number; oldestTs: number | undefined } {
    return { count: this.pending.size, oldestTs: this.oldestPending()?.ts };
  }

  pendingTokens(before: number): Set<string> {
    this.sortPending();
    const tokens = new Set<string>();
    for (const [n, tokenId] of this.pending) {
      if (n.ts >= before) break;
      tokens.add(tokenId);
    }
    return tokens;
  }

  private oldestPending(): StoredNotification | undefined {
    this.sortPending();
    return this.pending.keys().next().value;
  }

  private sortPending(): void {
    if (!this.unsorted) return;
    this.pending = new Map([...this.pending].sort(([a], [b]) => a.ts - b.ts));
    this.unsorted = false;
  }

  override load(r: NtfRecord): void {
    super.load(r);
    if (r.t === 'LAST') this.unsorted = true;
  }

  createToken(t: TokenRecord): boolean {
    if (this.tokens.has(t.tokenId)) return false;
    this.record({ t: 'TNEW', token: t });
    return true;
  }

  setTokenStatus(tokenId: string, status: TokenStatus, at: number): void {
    const from = this.tokens.get(tokenId)?.status.status;
    this.record({ t: 'TSTAT', tokenId, status, at, ...(from ? { from } : {}) });
  }

  replaceDevice(tokenId: string, device: DeviceToken, code: Uint8Array, at: number): void {
    this.record({ t: 'TDEV', tokenId, device, code, at });
  }

  renewCode(tokenId: string, code: Uint8Array, at: number): void {
    this.record({ t: 'TCODE', tokenId, code, at });
  }

  setCron(tokenId: string, minutes: number, nextAt: number): void {
    this.record({ t: 'TCRN', tokenId, minutes, nextAt });
  }

  deleteToken(tokenId: string): void {
    this.record({ t: 'TDEL', tokenId });
  }

  createSub(s: SubRecord): boolean {
    if (!this.tokens.has(s.tokenId) || this.subs.has(s.subId) || this.subOfNotifier(s.relay, s.notifierId)) return false;
    this.record({ t: 'SNEW', sub: s });
    return true;
  }

  setSubStatus(subId: string, status: StoredSubStatus): void {
    if (this.subs.get(subId)?.status !== status) this.record({ t: 'SSTAT', subId, status });
  }

  deleteSub(subId: string): void {
    this.record({ t: 'SDEL', subId });
  }

  setLastNotification(tokenId: string, n: LastNotification): void {
    this.record({ t: 'LAST', tokenId, n });
  }

  markPushed(tokenId: string, sent: SentNotification[]): void {
    const kept = this.last.get(tokenId);
    const now = sent.filter((x) => {
      const n = kept?.get(x.subId);
      return n !== undefined && !n.pushed && equalBytes(n.nonce, x.nonce);
    });
    if (now.length > 0) this.record({ t: 'SENT', tokenId, sent: now });
  }

  /**
   * Makes memory hold `t` as token `tokenId` (undefined: deleted), as another
   * instance stored it; nothing is logged. Returns the subscriptions a deletion removed.
   */
  syncToken(tokenId: string, t: TokenRecord | undefined): SubRecord[] {
    const old = this.tokens.get(tokenId);
    if (!t) {
      const subs = old ? [...this.subsOfToken(tokenId)] : [];
      if (old) this.apply({ t: 'TDEL', tokenId });
      return subs;
    }
    if (!old) {
      this.apply({ t: 'TNEW', token: t });
      return [];
    }
    // Only the device, code, cron and status change after TNEW; each through its own record, status last.
    if (old.device.provider !== t.device.provider || !equalBytes(old.device.token, t.device.token))
      this.apply({ t: 'TDEV', tokenId, device: t.device, code: t.code, at: t.statusAt });
    else if (!equalBytes(old.code, t.code)) this.apply({ t: 'TCODE', tokenId, code: t.code, at: t.statusAt });
    if (old.cronMinutes !== t.cronMinutes || old.cronNextAt !== t.cronNextAt)
      this.apply({ t: 'TCRN', tokenId, minutes: t.cronMinutes, nextAt: t.cronNextAt });
    if (old.status.status !== t.status.status || old.statusAt !== t.statusAt || statusReason(old) !== statusReason(t))
      this.apply({ t: 'TSTAT', tokenId, status: t.status, at: t.statusAt });
    old.verified = t.verified;
    return [];
  }

  /** Makes memory hold `s` as subscription `subId` (undefined: deleted), as another instance stored it; nothing is logged. */
  syncSub(subId: string, s: SubRecord | undefined): 'added' | 'removed' | undefined {
    const old = this.subs.get(subId);
    if (!s) {
      if (!old) return undefined;
      this.apply({ t: 'SDEL', subId });
      return 'removed';
    }
    if (old) {
      if (old.status !== s.status) this.apply({ t: 'SSTAT', subId, status: s.status });
      return undefined;
    }
    this.apply({ t: 'SNEW', sub: s });
    return this.subs.has(subId) ? 'added' : undefined;
  }

  /** Drops the last notifications of subscriptions at `relay` from memory (not from the log): another instance holds that relay now. */
  forgetRelayNotifications(relay: string): void {
    for (const s of this.subsOfRelay(relay)) {
      const kept = this.last.get(s.tokenId);
      if (!kept) continue;
      this.forget(kept, s.subId);
      if (kept.size === 0) this.last.delete(s.tokenId);
    }
  }

  counts(): NtfStoreCounts {
    return { tokens: { ...this.tokenCounts }, subscriptions: { ...this.subCounts } };
  }

  /** Applies a record; records for unknown tokens or subscriptions are ignored. */
  protected apply(r: NtfRecord): void {
    switch (r.t) {
      case 'TNEW': {
        const t = { ...r.token };
        this.tokens.set(t.tokenId, t);
        this.devices.set(deviceAuthKey(t.device, t.tknAuthKey), t);
        this.linkDevice(t);
        this.tokenCounts[t.status.status]++;
        if (t.cronMinutes > 0) this.crons.add(t);
        if (t.status.status !== 'ACTIVE') this.inactive.add(t);
        return;
      }
      case 'SNEW': {
        const t = this.tokens.get(r.sub.tokenId);
        if (!t) return;
        let relay = this.byRelay.get(r.sub.relay);
        if (!relay) this.byRelay.set(r.sub.relay, (relay = new RelaySubs(r.sub.relay)));
        // The token's and the relay's strings, not copies: a million subscriptions repeat a few of them.
        const s = { ...r.sub, tokenId: t.tokenId, relay: relay.address };
        this.subs.set(s.subId, s);
        relay.set(s.notifierId, s);
        let set = this.byToken.get(s.tokenId);
        if (!set) this.byToken.set(s.tokenId, (set = new Set()));
        set.add(s);
        this.subCounts[s.status]++;
        return;
      }
      case 'SSTAT': {
        const s = this.subs.get(r.subId);
        if (!s) return;
        this.subCounts[s.status]--;
        s.status = r.status;
        this.subCounts[s.status]++;
        return;
      }
      case 'SDEL': {
        const s = this.subs.get(r.subId);
        if (s) this.unlinkSub(s);
        return;
      }
    }
    const t = this.tokens.get(r.tokenId);
    if (!t) return;
    switch (r.t) {
      case 'TSTAT':
        this.setStatus(t, r.status, r.at);
        if (t.status.status === 'ACTIVE') t.verified = true;
        else this.endPending(t.tokenId);
        break;
      case 'TDEV':
        this.devices.delete(deviceAuthKey(t.device, t.tknAuthKey));
        this.unlinkDevice(t);
        t.device = r.device;
        this.devices.set(deviceAuthKey(t.device, t.tknAuthKey), t);
        this.linkDevice(t);
        this.setCode(t, r.code, r.at);
        break;
      case 'TCODE':
        this.setCode(t, r.code, r.at);
        break;
      case 'TCRN':
        t.cronMinutes = r.minutes;
        t.cronNextAt = r.nextAt;
        if (r.minutes > 0) this.crons.add(t);
        else this.crons.delete(t);
        break;
      case 'TDEL':
        for (const s of [...this.subsOfToken(t.tokenId)]) this.unlinkSub(s);
        this.tokens.delete(t.tokenId);
        this.devices.delete(deviceAuthKey(t.device, t.tknAuthKey));
        this.unlinkDevice(t);
        this.crons.delete(t);
        this.inactive.delete(t);
        this.endPending(t.tokenId);
        this.last.delete(t.tokenId);
        this.tokenCounts[t.status.status]--;
        break;
      case 'LAST': {
        let m = this.last.get(t.tokenId);
        if (!m) this.last.set(t.tokenId, (m = new Map()));
        const n: StoredNotification = { ...r.n, pushed: t.status.status !== 'ACTIVE' };
        this.forget(m, r.n.subId); // re-inserted last: Map order is arrival order
        m.set(n.subId, n);
        if (!n.pushed) this.pending.set(n, t.tokenId);
        if (m.size > LAST_PER_TOKEN) this.forget(m, m.keys().next().value!);
        break;
      }
      case 'SENT':
        for (const x of r.sent) {
          const n = this.last.get(t.tokenId)?.get(x.subId);
          if (n && equalBytes(n.nonce, x.nonce)) this.settle(n);
        }
        break;
    }
  }

  /** No push is owed for `n` any more. */
  private settle(n: StoredNotification): void {
    n.pushed = true;
    this.pending.delete(n);
  }

  /** The token's pending notifications are no longer owed a push (it left ACTIVE, or is deleted). */
  private endPending(tokenId: string): void {
    for (const n of this.last.get(tokenId)?.values() ?? []) if (!n.pushed) this.settle(n);
  }

  private forget(m: Map<string, StoredNotification>, subId: string): void {
    const n = m.get(subId);
    if (!n) return;
    m.delete(subId);
    this.pending.delete(n);
  }

  private linkDevice(t: TokenRecord): void {
    const key = deviceKey(t.device);
    let set = this.byDevice.get(key);
    if (!set) this.byDevice.set(key, (set = new Set()));
    set.add(t);
  }

  private unlinkDevice(t: TokenRecord): void {
    const key = deviceKey(t.device);
    const set = this.byDevice.get(key);
    set?.delete(t);
    if (set?.size === 0) this.byDevice.delete(key);
  }

  private setStatus(t: TokenRecord, status: TokenStatus, at: number): void {
    this.tokenCounts[t.status.status]--;
    t.status = status;
    t.statusAt = at;
    this.tokenCounts[t.status.status]++;
    if (status.status === 'ACTIVE') this.inactive.delete(t);
    else this.inactive.add(t);
  }

  /** A new code puts the token back to REGISTERED: it must be verified again. */
  private setCode(t: TokenRecord, code: Uint8Array, at: number): void {
    t.code = code;
    this.setStatus(t, { status: 'REGISTERED' }, at);
    this.endPending(t.tokenId);
  }

  private unlinkSub(s: SubRecord): void {
    this.subs.delete(s.subId);
    const relay = this.byRelay.get(s.relay);
    relay?.delete(s.notifierId);
    if (relay?.size === 0) this.byRelay.delete(s.relay);
    const set = this.byToken.get(s.tokenId);
    set?.delete(s);
    if (set?.size === 0) this.byToken.delete(s.tokenId);
    const kept = this.last.get(s.tokenId);
    if (kept) this.forget(kept, s.subId);
    this.subCounts[s.status]--;
  }

  /** Records that rebuild the live state (compaction, export). */
  *liveRecords(): Generator<NtfRecord> {
    for (const token of this.tokens.values()) {
      yield { t: 'TNEW', token };
      for (const sub of this.subsOfToken(token.tokenId)) yield { t: 'SNEW', sub };
      const kept = [...(this.last.get(token.tokenId)?.values() ?? [])];
      for (const n of kept) yield { t: 'LAST', tokenId: token.tokenId, n };
      // Other tokens' notifications come back pushed (owed nothing) from LAST alone.
      const sent = token.status.status === 'ACTIVE' ? kept.filter((n) => n.pushed).map(({ subId, nonce }) => ({ subId, nonce })) : [];
      if (sent.length > 0) yield { t: 'SENT', tokenId: token.tokenId, sent };
    }
  }
}

/** A relay's subscriptions by notifier ID, and the one address string they share. */
class RelaySubs extends Map<string, SubRecord> {
  constructor(readonly address: string) {
    super();
  }
}
