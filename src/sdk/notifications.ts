// The notification lifecycle (docs/sdk.md §5): the device token at the
// notification server (TNEW → verification push → TVFY → ACTIVE → TCRN), the
// mode (instant: a subscription per contact; periodic: check pushes only;
// off: no token), per-contact subscriptions (NKEY at the relay, SNEW at the
// notification server), and the periodic check that repairs what broke.
//
// Commands of one kind are issued together in one tick, so the protocol client
// packs them into as few blocks as fit: NKEYs per relay, SNEWs per server.
import { CommandError } from '../core/command-client.ts';
import { sharedKey } from '../core/keys.ts';
import type { TokenStatus } from '../ntf/protocol.ts';
import type { DeviceToken } from '../push/device.ts';
import { TERMINAL_SUB_STATUSES } from '../ntf/protocol.ts';
import { b64, receivers, save, type Context } from './context.ts';
import type { Contact, NotificationMode, Receiver } from './records.ts';

const isAuth = (e: unknown) => e instanceof CommandError && e.error === 'AUTH';

export interface NotificationHooks {
  /** The token's status changed (undefined: no token). */
  status(s: TokenStatus | undefined): void;
}

const sameDevice = (a: DeviceToken, b: DeviceToken) => a.provider === b.provider && b64(a.token) === b64(b.token);

export class Notifications {
  constructor(
    private readonly ctx: Context,
    private readonly hooks: NotificationHooks,
  ) {}

  get status(): TokenStatus | undefined {
    return this.ctx.token?.status;
  }

  /** Serializes lifecycle work: token and subscription changes never interleave. */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    return this.ctx.locks.run('notifications', fn);
  }

  private async setStatus(s: TokenStatus): Promise<void> {
    const t = this.ctx.token!;
    const changed = t.status.status !== s.status || (s.status === 'INVALID' && t.status.status === 'INVALID' && s.reason !== t.status.reason);
    t.status = s;
    await save(this.ctx, { token: true });
    if (changed) this.hooks.status(s);
  }

  private withNtf<T>(fn: (c: import('../ntf/client.ts').NtfClient) => Promise<T>): Promise<T> {
    return this.ctx.ntf.with(this.ctx.token!.server, fn);
  }

  /** The app's device token (new, or changed by the OS): registered, or replaced with TRPL. */
  registerDevice(device: DeviceToken): Promise<void> {
    return this.run(async () => {
      this.ctx.settings.device = device;
      await save(this.ctx, { settings: true });
      await this.ensureToken();
    });
  }

  setMode(mode: NotificationMode): Promise<void> {
    return this.run(async () => {
      this.ctx.settings.mode = mode;
      await save(this.ctx, { settings: true });
      if (mode === 'off') await this.deleteToken();
      else await this.ensureToken();
      await this.apply();
    });
  }

  /** The user turned one contact's notifications on or off (off = no subscription for its queue). */
  setContactEnabled(contact: Contact, enabled: boolean): Promise<void> {
    return this.run(async () => {
      contact.ntf.enabled = enabled;
      await save(this.ctx, { contacts: [contact] });
      await this.syncSubscriptions();
    });
  }

  /** A verification push arrived: TVFY, then the mode's TCRN and subscriptions. */
  verify(code: Uint8Array): Promise<void> {
    return this.run(async () => {
      const t = this.ctx.token;
      if (!t?.tokenId) return;
      await this.withNtf((c) => c.verifyToken(t.tokenId!, t.tknAuth.privateKey, code));
      await this.setStatus({ status: 'ACTIVE' });
      await this.apply();
    });
  }

  /** Contacts were added or removed: their subscriptions follow. */
  sync(): Promise<void> {
    return this.run(() => this.syncSubscriptions());
  }

  /**
   * The periodic check: TCHK (a token the server no longer knows is registered
   * again), SCHK of every subscription (a terminal one is made again with new
   * notifier credentials), and the mode re-applied.
   */
  check(): Promise<void> {
    return this.run(async () => {
      const t = this.ctx.token;
      if (this.ctx.settings.mode === 'off') return;
      if (!t?.tokenId) return this.ensureToken();
      let status: TokenStatus;
      try {
        status = await this.withNtf((c) => c.checkToken(t.tokenId!, t.tknAuth.privateKey));
      } catch (e) {
        if (!isAuth(e)) throw e;
        await this.forgetToken(); // the server lost it: start over there
        return this.ensureToken();
      }
      await this.setStatus(status);
      if (status.status === 'REGISTERED' || status.status === 'CONFIRMED') return this.ensureToken(); // code pushed again
      if (status.status !== 'ACTIVE') return;
      await this.checkSubscriptions();
      await this.apply();
    });
  }

  // ---- token

  private async ensureToken(): Promise<void> {
    const { ctx } = this;
    const device = ctx.settings.device;
    if (!device || ctx.settings.mode === 'off' || !ctx.ntfServer) return;
    let t = ctx.token;
    if (t && t.server !== ctx.ntfServer) await this.deleteToken();
    t = ctx.token;
    if (t?.tokenId && !sameDevice(t.device, device)) {
      try {
        await this.withNtf((c) => c.replaceToken(t!.tokenId!, t!.tknAuth.privateKey, device));
        t.device = device;
        return this.setStatus({ status: 'REGISTERED' });
      } catch (e) {
        if (!isAuth(e)) throw e;
        await this.forgetToken();
        t = undefined;
      }
    }
    if (t?.tokenId && t.status.status === 'ACTIVE') return;
    if (t) t.device = device; // a registration that never completed goes on with the current token
    if (!t) {
      const { crypto } = ctx;
      t = ctx.token = { server: ctx.ntfServer, device, tknAuth: crypto.x25519KeyPair(), tknDh: crypto.x25519KeyPair(), status: { status: 'NEW' } };
      await save(ctx, { token: true });
      this.hooks.status(t.status);
    }
    // TNEW, or TNEW again with the same keys: the server pushes the code again.
    const { tokenId, srvDhKey } = await this.withNtf((c) => c.registerToken(device, t!.tknAuth, t!.tknDh.publicKey));
    const secret = sharedKey(ctx.crypto, t.tknDh.privateKey, srvDhKey, 'ntf token');
    if (!secret) throw new Error('the notification server sent a bad key');
    t.tokenId = tokenId;
    t.secret = secret;
    await this.setStatus({ status: 'REGISTERED' });
  }

  private async deleteToken(): Promise<void> {
    const t = this.ctx.token;
    if (!t) return;
    if (t.tokenId)
      await this.withNtf((c) => c.deleteToken(t.tokenId!, t.tknAuth.privateKey)).catch((e) => {
        if (!isAuth(e)) throw e;
      });
    await this.forgetToken(); // TDEL deleted the subscriptions with the token
    this.hooks.status(undefined);
  }

  /** Drops the token and, as they went with it at the server, every subscription ID. */
  private async forgetToken(): Promise<void> {
    this.ctx.token = undefined;
    const all = receivers(this.ctx);
    for (const c of all) delete c.ntf.subId, delete c.ntf.subStatus;
    await save(this.ctx, { token: true, contacts: all });
  }

  /** TCRN for the mode (periodic: check pushes; instant: none), then the subscriptions. */
  private async apply(): Promise<void> {
    const t = this.ctx.token;
    if (t?.tokenId && t.status.status === 'ACTIVE') {
      const cron = this.ctx.settings.mode === 'periodic' ? this.ctx.settings.periodicMinutes : 0;
      if (t.cron !== cron) {
        await this.withNtf((c) => c.setCron(t.tokenId!, t.tknAuth.privateKey, cron));
        t.cron = cron;
        await save(this.ctx, { token: true });
      }
    }
    await this.syncSubscriptions();
  }

  // ---- subscriptions

  private wants(c: Receiver): boolean {
    const t = this.ctx.token;
    return this.ctx.settings.mode === 'instant' && t?.status.status === 'ACTIVE' && c.ntf.enabled;
  }

  /**
   * Brings every contact's notifier and subscription in line with the mode and
   * its setting. In instant mode, while the token is not ACTIVE (awaiting
   * verification after a TRPL, say), enabled contacts' subscriptions stay as
   * they are — wanted again once it is; muted ones still go.
   */
  private async syncSubscriptions(): Promise<void> {
    const { ctx } = this;
    const t = ctx.token;
    const hold = ctx.settings.mode === 'instant' && t !== undefined && t.status.status !== 'ACTIVE';
    const contacts = receivers(ctx).filter((c) => !(hold && c.ntf.enabled));
    const changed = new Set<Receiver>();
    // 1. SDEL what is no longer wanted, 2. NKEY / NDEL at the relays, 3. SNEW what is wanted.
    if (t?.tokenId)
      await this.batch(
        contacts.filter((c) => !this.wants(c) && c.ntf.subId),
        (c) =>
          this.withNtf((n) => n.deleteSubscription(c.ntf.subId!, t.tknAuth.privateKey)).catch((e) => {
            if (!isAuth(e)) throw e;
          }),
        (c) => {
          delete c.ntf.subId, delete c.ntf.subStatus;
          changed.add(c);
        },
      );
    const byRelay = new Map<string, Receiver[]>();
    for (const c of contacts) {
      const want = this.wants(c);
      if (want === (c.ntf.notifier !== undefined)) continue;
      byRelay.set(c.rcv.relay, [...(byRelay.get(c.rcv.relay) ?? []), c]);
    }
    await Promise.all(
      [...byRelay].map(([relay, list]) =>
        this.batch(
          list,
          async (c) => {
            const r = await ctx.relays.get(relay);
            if (!this.wants(c)) return r.disableNotifications(c.rcv.rcvId, c.rcv.rcvAuth.privateKey).then(() => undefined);
            const ntfAuth = ctx.crypto.x25519KeyPair();
            const ntfDh = ctx.crypto.x25519KeyPair();
            const ids = await r.enableNotifications(c.rcv.rcvId, c.rcv.rcvAuth.privateKey, ntfAuth.publicKey, ntfDh.publicKey);
            const rcvNtfDhSecret = sharedKey(ctx.crypto, ntfDh.privateKey, ids.srvNtfDhKey, 'relay notifier');
            if (!rcvNtfDhSecret) throw new Error('the relay sent a bad key');
            return { notifierId: ids.notifierId, ntfAuth, rcvNtfDhSecret };
          },
          (c, notifier) => {
            if (notifier) c.ntf.notifier = notifier;
            else delete c.ntf.notifier;
            changed.add(c);
          },
        ),
      ),
    );
    if (t?.tokenId)
      await this.batch(
        contacts.filter((c) => this.wants(c) && c.ntf.notifier && !c.ntf.subId),
        (c) => this.withNtf((n) => n.createSubscription(t.tokenId!, t.tknAuth.privateKey, c.rcv.relay, c.ntf.notifier!.notifierId, c.ntf.notifier!.ntfAuth.privateKey)),
        (c, subId) => {
          c.ntf.subId = subId;
          c.ntf.subStatus = 'NEW';
          changed.add(c);
        },
      );
    if (changed.size) await save(ctx, { contacts: changed });
  }

  /** SCHK every subscription; a terminal one (or one the server does not know) gets new credentials. */
  private async checkSubscriptions(): Promise<void> {
    const t = this.ctx.token!;
    const changed = new Set<Receiver>();
    const broken: Receiver[] = [];
    await this.batch(
      receivers(this.ctx).filter((c) => c.ntf.subId),
      (c) =>
        this.withNtf((n) => n.checkSubscription(c.ntf.subId!, t.tknAuth.privateKey)).catch((e) => {
          if (isAuth(e)) return 'AUTH' as const;
          throw e;
        }),
      (c, status) => {
        c.ntf.subStatus = status;
        changed.add(c);
        if (TERMINAL_SUB_STATUSES.has(status)) broken.push(c);
      },
    );
    // NKEY replaces the notifier at the relay; the old subscription is deleted first.
    await this.batch(
      broken,
      (c) =>
        this.withNtf((n) => n.deleteSubscription(c.ntf.subId!, t.tknAuth.privateKey)).catch((e) => {
          if (!isAuth(e)) throw e;
        }),
      () => {},
    );
    for (const c of broken) delete c.ntf.subId, delete c.ntf.notifier;
    if (changed.size) await save(this.ctx, { contacts: changed });
  }

  /**
   * Starts `op` for every item in the same tick (so the commands share blocks)
   * and applies each result; failures are reported, the others still applied.
   */
  private async batch<T>(items: Receiver[], op: (c: Receiver) => Promise<T>, apply: (c: Receiver, r: T) => void): Promise<void> {
    const results = await Promise.allSettled(items.map(op));
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') apply(items[i]!, r.value);
      else this.ctx.fail('a notification subscription change failed', r.reason);
    });
  }
}
