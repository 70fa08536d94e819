// The device simulator (/simulator): a panel of phones, each an SDK client in
// this page with its own random APNs device token at the stack's notification
// server. A phone sleeps — it never calls start(), so it holds no SUB — and
// learns of messages only through pushes: the APNs test server records each
// push it accepts and the web server streams them (/api/pushes); the phone
// whose token it is hands the payload to client.handlePush, as an iOS
// Notification Service Extension would, and shows the notifications that
// returns on its lock screen — at most its "max notifications" of them (the
// rest in one summary). Offline, a phone misses its pushes but the last, which
// the APNs test server would hold for it: handled once it is back, it brings
// every chat's messages at once.
//
// Phones are kept across reloads (IndexedDB, one database per phone, listed in
// localStorage) while they belong to the stack that serves the page; a second
// tab of the simulator gets phones in memory (one client per store).
import { apnsToken, HushClient, MemoryStore, openIndexedDbClient, type Notification, type PreviewMode, type TokenStatus } from '../sdk/index.ts';
import { errorText, runAction } from './actions.ts';
import { loadConfig, openPushFeed, type PushEvent, type WebConfig } from './push-bridge.ts';

interface SavedPhone {
  n: number;
  name: string;
  token: string;
  relay: string;
  ntf: string;
}

const SAVED = 'hush-sim-phones';
const DB_PREFIX = 'hush-sim-';
const NAMES = ['Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan', 'Judy', 'Mallory', 'Niaj', 'Olivia'];
const LOG_LINES = 30;
const PER_THREAD = 4;

// ---- small DOM helpers

type Attrs = Record<string, string | undefined>;
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

const $ = <T extends Element>(sel: string, root: ParentNode = document): T => {
  const e = root.querySelector<T>(sel);
  if (!e) throw new Error(`no ${sel}`);
  return e;
};

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const hhmm = (d: Date) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
const stamp = (d: Date) => `${hhmm(d)}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

function statusText(s: TokenStatus | undefined): string {
  if (!s) return 'no token';
  return s.status === 'INVALID' ? `INVALID (${s.reason})` : s.status;
}

// ---- one phone

interface Shown extends Notification {
  at: number;
}

export class Phone {
  readonly el: HTMLElement;
  private readonly lock = h('div', { class: 'lock-screen' });
  private readonly badgeEl = h('span', { class: 'badge zero', title: 'app icon badge' }, '0');
  private readonly log = h('ul', { class: 'push-log' });
  private readonly statusEl = h('span', { class: 'token-status' });
  private readonly contactsEl = h('ul', { class: 'phone-contacts' });
  private readonly toSelect = h('select', { class: 'to', title: 'send to' });
  private readonly offlineEl = h('span', { class: 'offline-note' });
  /** Notifications on the lock screen, oldest first. */
  readonly shown: Shown[] = [];
  private closed = false;
  /** handlePush's maxNotifications (undefined: no limit). */
  private maxNotifications: number | undefined;
  /** Offline: the pushes missed, and the last one, which APNs holds for the device. */
  private offline: { missed: number; last?: Extract<PushEvent, { kind: 'apns' }> } | undefined;

  private constructor(
    readonly n: number,
    readonly name: string,
    readonly token: string,
    readonly client: HushClient,
    private readonly persistent: boolean,
    private readonly onRemove: (p: Phone) => void,
  ) {
    this.el = h(
      'article',
      { class: 'phone', 'data-name': name },
      this.device(),
      this.card(),
      h('div', { class: 'card' }, h('span', { class: 'label' }, 'push path'), this.log),
    );
    this.listen();
    this.renderStatus();
    this.renderContacts();
    this.renderLock();
  }

  /** The phone itself: status bar, clock, lock screen, and the home button that opens the app. */
  private device(): HTMLElement {
    const openApp = h('button', { class: 'open-app', type: 'button', title: 'open the app: read everything, clear the lock screen' }, 'Open app');
    openApp.addEventListener('click', () => void this.openApp());
    const time = h('div', { class: 'time' });
    const date = h('div', { class: 'date' });
    const sbTime = h('span', { class: 'sb-time' });
    const tick = () => {
      const d = new Date();
      time.textContent = hhmm(d);
      sbTime.textContent = hhmm(d);
      date.textContent = d.toLocaleDateString(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
    };
    tick();
    const timer = setInterval(() => (this.closed ? clearInterval(timer) : tick()), 1000);
    return h(
      'div',
      { class: 'device' },
      h(
        'div',
        { class: 'screen' },
        h('div', { class: 'notch' }),
        h('div', { class: 'statusbar' }, sbTime, h('span', { class: 'app-icon', title: 'Hush' }, h('span', { class: 'glyph' }), this.badgeEl)),
        h('div', { class: 'clock' }, time, date),
        this.lock,
        h('div', { class: 'home' }, openApp),
      ),
    );
  }

  /** The controls beside the phone: its token, preview mode, invitations, contacts and a message to send. */
  private card(): HTMLElement {
    const remove = h('button', { class: 'remove', type: 'button', title: 'close this phone and delete its data' }, 'Remove');
    remove.addEventListener('click', () => void this.remove());
    return h(
      'div',
      { class: 'card' },
      h('div', { class: 'row' }, h('span', { class: 'name' }, this.name), this.statusEl, remove),
      h('div', { class: 'row' }, h('span', { class: 'label' }, 'APNs token'), h('span', { class: 'token', title: this.token }, `${this.token.slice(0, 16)}…`)),
      h('div', { class: 'row' }, this.previewSelect()),
      this.deliveryRow(),
      ...this.inviteRows(),
      this.acceptRow(),
      this.contactsEl,
      this.composeForm(),
    );
  }

  /** Runs what the user asked for, `control` disabled meanwhile; a failure is noted as `<what> failed: …`. */
  private act(control: { disabled: boolean }, what: string, action: () => Promise<void>): void {
    void runAction(action, (e) => this.note(`${what} failed: ${errorText(e)}`, true), control);
  }

  private previewSelect(): HTMLSelectElement {
    const preview = h('select', { class: 'preview', title: 'what notifications show' });
    for (const [value, label] of [
      ['message', 'preview: message'],
      ['contact', 'preview: contact name only'],
      ['hidden', 'preview: hidden'],
    ] as const) {
      preview.append(h('option', { value }, label));
    }
    preview.value = this.client.previewMode;
    preview.addEventListener('change', () => {
      const mode = preview.value as PreviewMode;
      this.act(preview, 'preview mode', async () => {
        await this.client.setPreviewMode(mode);
        this.note(`preview mode: ${mode}`);
      });
    });
    return preview;
  }

  /** Max notifications per push (the rest in a summary), and offline (pushes held by APNs). */
  private deliveryRow(): HTMLElement {
    const max = h('input', { class: 'max-notifications', type: 'number', min: '1', step: '1', placeholder: 'no limit', title: 'at most this many notifications per push: the other chats in one summary' });
    max.addEventListener('change', () => {
      const n = max.value === '' ? undefined : Number(max.value);
      if (n !== undefined && !(Number.isInteger(n) && n >= 1)) {
        this.note('max notifications: a whole number from 1, or empty for no limit', true);
        max.value = this.maxNotifications === undefined ? '' : String(this.maxNotifications);
        return;
      }
      this.maxNotifications = n;
      this.note(`max notifications: ${n ?? 'no limit'}`);
    });
    const offline = h('input', { class: 'offline', type: 'checkbox' });
    offline.addEventListener('change', () => {
      if (offline.checked) this.offline = { missed: 0 };
      else {
        const last = this.offline?.last;
        this.offline = undefined;
        this.note(last ? 'online: APNs delivers the last push' : 'online');
        if (last) void this.push(last);
      }
      this.renderOffline();
    });
    return h(
      'div',
      { class: 'row' },
      h('label', { class: 'label' }, 'max notifications ', max),
      h('label', { class: 'label', title: 'no network: pushes are missed, APNs keeps the last one for when the phone is back' }, offline, ' offline'),
      this.offlineEl,
    );
  }

  private renderOffline(): void {
    const o = this.offline;
    this.offlineEl.textContent = o ? `${o.missed} push${o.missed === 1 ? '' : 'es'} missed` : '';
  }

  /** Invite, and the link it makes (to give the other side, or open in the web chat). */
  private inviteRows(): HTMLElement[] {
    const invite = h('button', { class: 'invite', type: 'button' }, 'Invite');
    const invitation = h('div', { class: 'invitation', title: 'give this link to the other side once' });
    const openInChat = h('a', { class: 'invite-chat', target: '_blank', rel: 'noopener', hidden: '' }, 'open in the web chat');
    invite.addEventListener('click', () =>
      this.act(invite, 'invitation', async () => {
        const { link } = await this.client.createInvitation();
        invitation.textContent = link;
        openInChat.href = `/#${link}`;
        openInChat.hidden = false;
        this.note('invitation created');
        this.renderContacts();
      }),
    );
    return [h('div', { class: 'row' }, invite, openInChat), invitation];
  }

  private acceptRow(): HTMLElement {
    const acceptLink = h('input', { class: 'accept-link', type: 'text', placeholder: 'paste an invitation link', autocomplete: 'off' });
    const accept = h('button', { class: 'accept', type: 'button' }, 'Accept');
    accept.addEventListener('click', () => {
      const link = acceptLink.value.trim();
      if (!link) return;
      this.act(accept, 'accept', async () => {
        await this.client.acceptInvitation(link);
        acceptLink.value = '';
        this.note('invitation accepted; waiting for the other side');
        this.renderContacts();
      });
    });
    return h('div', { class: 'row' }, acceptLink, accept);
  }

  private composeForm(): HTMLFormElement {
    const text = h('input', { class: 'text', type: 'text', placeholder: 'message', autocomplete: 'off' });
    const send = h('button', { class: 'send', type: 'submit' }, 'Send');
    const compose = h('form', { class: 'row compose' }, this.toSelect, text, send);
    compose.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const to = this.toSelect.value;
      const body = text.value;
      if (!to || !body) return;
      this.act(send, 'send', async () => {
        await this.client.send(to, body);
        text.value = '';
        this.note(`sent to ${this.toSelect.selectedOptions[0]?.textContent ?? 'contact'}`);
      });
    });
    return compose;
  }

  /** The client's events, in the push log and on the card. */
  private listen(): void {
    const client = this.client;
    client.on('tokenStatus', (s) => {
      this.renderStatus();
      this.note(`token ${statusText(s)}`);
    });
    client.on('contact', (e) => {
      this.renderContacts();
      this.note(`connected: ${e.name || 'New contact'}`);
    });
    client.on('message', () => this.renderContacts());
    client.on('call', () => this.renderContacts());
    // `what` only: the SDK writes it to carry no keys or IDs; the error's own text is not
    client.on('error', (e) => this.note(`error: ${e.what}`, true));
  }

  static async open(o: {
    n: number;
    name?: string;
    token: string;
    config: WebConfig;
    persistent: boolean;
    onRemove: (p: Phone) => void;
  }): Promise<Phone> {
    const opts = { relays: [o.config.relay], ntfServer: o.config.ntf, ...(o.name !== undefined ? { name: o.name } : {}) };
    const client = o.persistent
      ? await openIndexedDbClient(`${DB_PREFIX}${o.n}`, opts)
      : await HushClient.open({ ...opts, store: new MemoryStore(), closeStore: true });
    return new Phone(o.n, o.name ?? '', o.token, client, o.persistent, o.onRemove);
  }

  /** Registers the device token (TNEW; the verification push makes it ACTIVE). Again after a reload: nothing if ACTIVE. */
  async register(): Promise<void> {
    this.note(`registering the APNs token`);
    try {
      await this.client.registerDevice(apnsToken(this.token));
    } catch (e) {
      this.note(`registration failed: ${errorText(e)}`, true);
    }
    this.renderStatus();
  }

  /** What the OS does with a push for this phone: wakes the push handler and shows what it returns. */
  async push(p: Extract<PushEvent, { kind: 'apns' }>): Promise<Notification[]> {
    if (this.offline) {
      this.offline.missed++;
      this.offline.last = p;
      this.note(`${p.pushType} push missed (offline): APNs keeps the last one`);
      this.renderOffline();
      return [];
    }
    const at = Date.now();
    const started = performance.now();
    this.note(`${p.pushType} push received`, false, at);
    let shown: Notification[];
    try {
      const max = this.maxNotifications;
      shown = await this.client.handlePush(p.payload, { deadlineMs: 25_000, ...(max ? { maxNotifications: max } : {}) });
    } catch (e) {
      this.note(`push handler failed: ${errorText(e)}`, true);
      return [];
    }
    const ms = Math.round(performance.now() - started);
    const what = shown.length ? shown.map((n) => `${n.category} “${n.title}”`).join(', ') : 'nothing to show';
    this.note(`handled in ${ms} ms → ${what}`);
    const now = Date.now();
    for (const n of shown) this.shown.push({ ...n, at: now });
    this.renderLock();
    this.renderContacts();
    return shown;
  }

  /** The user opens the app: every chat read, the lock screen cleared. */
  async openApp(): Promise<void> {
    for (const c of this.client.contacts()) if (c.unread > 0) await this.client.markRead(c.id).catch(() => {});
    this.shown.length = 0;
    this.renderLock();
    this.renderContacts();
    this.note('app opened: all read');
  }

  async remove(): Promise<void> {
    await this.close();
    if (this.persistent) indexedDB.deleteDatabase(`${DB_PREFIX}${this.n}`);
    this.el.remove();
    this.onRemove(this);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.close().catch(() => {});
  }

  note(text: string, error = false, at = Date.now()): void {
    const li = h('li', error ? { class: 'error' } : {}, h('span', { class: 't' }, stamp(new Date(at))), ' ', text);
    this.log.prepend(li);
    while (this.log.childElementCount > LOG_LINES) this.log.lastElementChild?.remove();
  }

  private renderStatus(): void {
    const s = this.client.tokenStatus;
    this.statusEl.textContent = statusText(s);
    this.statusEl.dataset.status = s?.status ?? 'none';
  }

  private renderContacts(): void {
    const list = this.client.contacts();
    this.contactsEl.replaceChildren(
      ...list.map((c) =>
        h(
          'li',
          { 'data-state': c.state },
          h('span', {}, c.name || (c.state === 'invited' ? 'invitation' : 'New contact')),
          h('span', { class: 'c-state' }, c.state === 'ready' ? 'connected' : c.state === 'invited' ? 'waiting for the other side' : 'accepted, waiting for the answer'),
          h('span', { class: 'c-unread' }, c.unread ? `${c.unread} unread` : ''),
        ),
      ),
    );
    const selected = this.toSelect.value;
    const ready = list.filter((c) => c.state === 'ready');
    this.toSelect.replaceChildren(...ready.map((c) => h('option', { value: c.id }, c.name || 'New contact')));
    if (ready.some((c) => c.id === selected)) this.toSelect.value = selected;
    const badge = this.client.badge;
    this.badgeEl.textContent = String(badge);
    this.badgeEl.classList.toggle('zero', badge === 0);
  }

  /** The lock screen: notifications grouped by thread, the newest thread (and notification) first. */
  private renderLock(): void {
    const threads = new Map<string, Shown[]>();
    for (let i = this.shown.length - 1; i >= 0; i--) {
      const n = this.shown[i]!;
      let t = threads.get(n.threadId);
      if (!t) threads.set(n.threadId, (t = []));
      t.push(n);
    }
    const groups = [...threads].map(([threadId, items]) => {
      const g = h('div', { class: 'thread', 'data-thread': threadId });
      items.slice(0, PER_THREAD).forEach((n, i) => g.append(this.renderNotification(n, i > 0)));
      if (items.length > PER_THREAD) g.append(h('div', { class: 'more' }, `+${items.length - PER_THREAD} earlier`));
      return g;
    });
    this.lock.replaceChildren(...groups);
  }

  private renderNotification(n: Shown, older: boolean): HTMLElement {
    return h(
      'div',
      { class: older ? 'notification older' : 'notification', 'data-category': n.category, 'data-at': String(n.at), 'data-thread': n.threadId },
      h(
        'div',
        { class: 'head' },
        h('span', { class: 'app' }, 'Hush'),
        h('span', { class: 'category', 'data-category': n.category }, n.category),
        h('span', { class: 'when' }, hhmm(new Date(n.at))),
      ),
      h('div', { class: 'title' }, n.title),
      h('div', { class: 'body' }, n.body),
      h('div', { class: 'n-badge' }, `badge ${n.badge}${n.count > 1 ? ` · ${n.count} events` : ''}`),
    );
  }
}

// ---- the simulator

export class Simulator {
  readonly phones = new Map<string, Phone>();
  private readonly byToken = new Map<string, Phone>();
  private config: WebConfig | undefined;
  /** Saved phones of this stack that could not be opened: kept (saved, their data untouched) for the next load. */
  private readonly unopened: SavedPhone[] = [];
  private persistent = false;
  private next = 1;
  /** Resolves when the page is connected to the stack and saved phones are back. */
  readonly ready: Promise<void>;

  constructor() {
    this.ready = this.init();
  }

  private async init(): Promise<void> {
    const status = $<HTMLElement>('#status');
    try {
      this.config = await loadConfig();
      // the stream of pushes the test servers accept; open before any token is registered (the verification push)
      await openPushFeed((p) => {
        this.feed(p);
        if (p.kind === 'apns') void this.byToken.get(p.token)?.push(p);
      });
      this.persistent = await this.holdLock();
      await this.restore();
      status.textContent = this.persistent ? 'connected · phones are kept across reloads' : 'connected · phones live in this tab only (the simulator is open in another tab)';
      if (this.unopened.length) {
        status.textContent += ` · ${this.unopened.length === 1 ? 'a saved phone' : 'saved phones'} could not be opened (kept: reload to try again)`;
        status.classList.add('error');
      }
      const add = $<HTMLButtonElement>('#add-phone');
      add.disabled = false;
      $<HTMLFormElement>('#add-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const input = $<HTMLInputElement>('#phone-name');
        const name = input.value.trim();
        input.value = '';
        void runAction(() => this.addPhone(name || undefined), (e) => this.fail(e), add);
      });
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }

  private fail(e: unknown): void {
    const status = $<HTMLElement>('#status');
    status.textContent = `error: ${errorText(e)}`;
    status.classList.add('error');
  }

  private feed(p: PushEvent): void {
    const list = $<HTMLElement>('#push-feed');
    const to =
      p.kind === 'apns'
        ? `${this.byToken.get(p.token)?.name ?? 'device'} ${p.token.slice(0, 8)}… (${p.pushType})`
        : `${(() => {
            try {
              return new URL(p.endpoint).host;
            } catch {
              return 'endpoint';
            }
          })()}`;
    list.prepend(h('li', {}, `${stamp(new Date())} `, h('span', { class: `k ${p.kind}` }, p.kind === 'apns' ? 'APNs' : 'Web Push'), ` → ${to}`));
    while (list.childElementCount > 200) list.lastElementChild?.remove();
  }

  /** One tab owns the saved phones (one client per store). */
  private async holdLock(): Promise<boolean> {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (!locks) return true;
    return new Promise<boolean>((resolve) => {
      void locks.request('hush-simulator', { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        // Held while the page lives.
        return lock ? new Promise<void>(() => {}) : undefined;
      });
    });
  }

  private saved(): SavedPhone[] {
    try {
      const v = JSON.parse(localStorage.getItem(SAVED) ?? '[]') as unknown;
      return Array.isArray(v) ? (v as SavedPhone[]) : [];
    } catch {
      return [];
    }
  }

  private save(): void {
    if (!this.persistent || !this.config) return;
    const open: SavedPhone[] = [...this.phones.values()].map((p) => ({ n: p.n, name: p.name, token: p.token, relay: this.config!.relay, ntf: this.config!.ntf }));
    const list = [...open, ...this.unopened].sort((a, b) => a.n - b.n);
    localStorage.setItem(SAVED, JSON.stringify(list));
  }

  /**
   * Phones saved for this stack come back; those of another stack (other keys,
   * other ports) are deleted. One that does not open keeps its data (the
   * failure may be temporary): its error is shown in its place, and it stays saved.
   */
  private async restore(): Promise<void> {
    if (!this.persistent) return;
    const config = this.config!;
    for (const s of this.saved()) {
      this.next = Math.max(this.next, s.n + 1);
      if (s.relay !== config.relay || s.ntf !== config.ntf) {
        indexedDB.deleteDatabase(`${DB_PREFIX}${s.n}`);
        continue;
      }
      try {
        const phone = await this.open(s.n, s.name, s.token, false);
        void phone.register();
      } catch (e) {
        this.unopened.push(s);
        $<HTMLElement>('#phones').append(this.unopenedPhone(s, e));
      }
    }
    this.save();
  }

  /** In place of a saved phone that could not be opened: its name, the error, and Remove (which deletes its data). */
  private unopenedPhone(s: SavedPhone, e: unknown): HTMLElement {
    const remove = h('button', { class: 'remove', type: 'button', title: 'delete this phone\'s data' }, 'Remove');
    const el = h(
      'article',
      { class: 'phone unopened', 'data-name': s.name },
      h(
        'div',
        { class: 'card' },
        h('div', { class: 'row' }, h('span', { class: 'name' }, s.name || `Phone ${s.n}`), h('span', { class: 'token-status' }, 'not opened'), remove),
        h('div', { class: 'error' }, `could not open its data: ${errorText(e)}`),
        h('div', { class: 'label' }, 'its data is kept: reload to try again'),
      ),
    );
    remove.addEventListener('click', () => {
      indexedDB.deleteDatabase(`${DB_PREFIX}${s.n}`);
      this.unopened.splice(this.unopened.indexOf(s), 1);
      el.remove();
      this.save();
    });
    return el;
  }

  private async open(n: number, name: string, token: string, isNew: boolean): Promise<Phone> {
    const phone = await Phone.open({
      n,
      ...(isNew || name ? { name } : {}),
      token,
      config: this.config!,
      persistent: this.persistent,
      onRemove: (p) => {
        this.phones.delete(p.name);
        this.byToken.delete(p.token);
        this.save();
      },
    });
    this.phones.set(name, phone);
    this.byToken.set(token, phone);
    $<HTMLElement>('#phones').append(phone.el);
    return phone;
  }

  /** A new phone with a random APNs token, registered at the notification server. */
  async addPhone(name?: string): Promise<Phone> {
    await this.ready;
    if (!this.config) throw new Error('not connected to the stack');
    const taken = (x: string) => this.phones.has(x) || this.unopened.some((s) => s.name === x);
    let chosen = name ?? NAMES.find((x) => !taken(x)) ?? `Phone ${this.next}`;
    while (taken(chosen)) chosen = `${chosen}′`;
    const n = this.next++;
    if (this.persistent) indexedDB.deleteDatabase(`${DB_PREFIX}${n}`); // left over by an earlier run
    const token = hex(crypto.getRandomValues(new Uint8Array(32)));
    const phone = await this.open(n, chosen, token, true);
    this.save();
    await phone.register();
    return phone;
  }

  phone(name: string): Phone | undefined {
    return this.phones.get(name);
  }
}

declare global {
  interface Window {
    simulator: Simulator;
  }
}

window.simulator = new Simulator();
window.simulator.ready.catch(() => {});
