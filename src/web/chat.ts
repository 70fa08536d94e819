// The web chat (served at /, bundled as /assets/chat.js): the SDK in a
// browser. While this page is open it owns the SDK state: it holds
// CLIENT_LOCK, its HushClient is online (messages arrive as events), and it
// handles the pushes for its Web Push subscription itself — from the stack's
// push feed (/api/pushes: the test push service decrypts what a browser would
// receive) and from the service worker, which posts pushes here rather than
// open a second client on the same store (sw.ts says why). It shows the
// notifications the SDK makes, but for the chat on screen (setOpenChat).
//
// It shows the SDK's pieces: each sent message's state in the outbox, profiles
// (own name and contacts, unread per profile), the notification words'
// language, silent sends, calls answered from their notification, a contact
// address (link and QR code) with the requests it brings (accepted in the list
// or from their notification), a store encrypted with a passphrase, and wiping
// everything.
import {
  parseContactAddress,
  PassphraseError,
  webPushToken,
  type ActionInput,
  type ContactInfo,
  type ContactRequestInfo,
  type HushClient,
  type Notification as HushNotification,
  type NotificationActionId,
  type NotificationMode,
  type PreviewMode,
  type TokenStatus,
} from '../sdk/index.ts';
import { errorText, runAction } from './actions.ts';
import {
  ACTION_MESSAGE,
  actionInput,
  CLIENT_LOCK,
  History,
  loadConfig,
  OPEN_MESSAGE,
  openPushFeed,
  openStoreClient,
  PAGE_DEADLINE_MS,
  performAndRecord,
  pref,
  PUSH_MESSAGE,
  setPref,
  showNotification,
  type HistoryEntry,
} from './push-bridge.ts';
import { LANGUAGES, wordsOf } from './words.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing`);
  return e as T;
};
const ui = {
  nameForm: $<HTMLFormElement>('name-form'),
  nameLabel: $('name-label'),
  name: $<HTMLInputElement>('name'),
  passphrase: $<HTMLInputElement>('passphrase'),
  start: $<HTMLButtonElement>('start'),
  tokenStatus: $('token-status'),
  preview: $<HTMLSelectElement>('preview'),
  mode: $<HTMLSelectElement>('mode'),
  notify: $<HTMLButtonElement>('notify'),
  language: $<HTMLSelectElement>('language'),
  newContacts: $<HTMLInputElement>('new-contacts'),
  atRest: $('at-rest'),
  wipe: $<HTMLButtonElement>('wipe'),
  profile: $<HTMLSelectElement>('profile'),
  deleteProfile: $<HTMLButtonElement>('delete-profile'),
  profileForm: $<HTMLFormElement>('profile-form'),
  profileName: $<HTMLInputElement>('profile-name'),
  addProfile: $<HTMLButtonElement>('add-profile'),
  call: $<HTMLButtonElement>('call'),
  silent: $<HTMLInputElement>('silent'),
  invite: $<HTMLButtonElement>('invite'),
  invitationBox: $('invitation-box'),
  invitation: $('invitation'),
  copy: $<HTMLButtonElement>('copy'),
  makeAddress: $<HTMLButtonElement>('make-address'),
  addressBox: $('address-box'),
  addressQr: $<HTMLImageElement>('address-qr'),
  address: $('address'),
  copyAddress: $<HTMLButtonElement>('copy-address'),
  deleteAddress: $<HTMLButtonElement>('delete-address'),
  requestsBox: $('requests-box'),
  requests: $<HTMLUListElement>('requests'),
  acceptForm: $<HTMLFormElement>('accept-form'),
  acceptLabel: $('accept-label'),
  acceptLink: $<HTMLInputElement>('accept-link'),
  accept: $<HTMLButtonElement>('accept'),
  contacts: $<HTMLUListElement>('contacts'),
  chatTitle: $('chat-title'),
  messages: $('messages'),
  composer: $<HTMLFormElement>('composer'),
  text: $<HTMLInputElement>('text'),
  send: $<HTMLButtonElement>('send'),
  status: $('status'),
};

let client: HushClient | undefined;
let messages: History | undefined;
/** The chat shown. */
let selected: string | undefined;
/** This page holds CLIENT_LOCK (it is the one that may have a HushClient). */
let owner = false;

let markReady!: () => void;
let failReady!: (e: unknown) => void;
const ready = new Promise<void>((resolve, reject) => ((markReady = resolve), (failReady = reject)));
ready.catch(() => {});
/** For tests and the console: the client once open; `ready` once it is open and online. */
const hush: { client: HushClient | undefined; ready: Promise<void> } = { client: undefined, ready };
(window as unknown as { hush: typeof hush }).hush = hush;

function say(text: string, error = false): void {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', error);
}
/** Runs a UI action; its failure is shown. */
const run = (action: () => Promise<unknown>, control?: { disabled: boolean }) => runAction(action, (e) => say(`error: ${errorText(e)}`, true), control);
const visible = () => document.visibilityState === 'visible';

async function main(): Promise<void> {
  ui.nameForm.addEventListener('submit', (e) => e.preventDefault());
  navigator.serviceWorker?.register('/sw.js', { type: 'module' }).catch((e) => say(`service worker: ${errorText(e)}`, true));
  listenToServiceWorker();
  offerInvitation();
  window.addEventListener('hashchange', offerInvitation);
  setUpPermissionButton();

  await ownTheStore();
  const config = await loadConfig();
  const { client: c, passphrase } = await openClient(config);
  messages = await History.open(passphrase);
  await chooseName(c);
  client = hush.client = c;
  wire(c, messages);
  await c.start();
  enableControls(c);
  const chat = new URLSearchParams(location.search).get('chat');
  if (chat) await openChat(chat); // in its profile
  else await render();
  markReady();
  await registerPush(c).catch((e) => say(`error: Web Push registration failed: ${errorText(e)}`, true));
}

/** Waits until no other tab (and not the service worker) has a client on the store, then keeps it for the page's life. */
async function ownTheStore(): Promise<void> {
  if (!navigator.locks) return; // nothing to coordinate with
  const waiting = setTimeout(() => say('Hush is open in another tab: waiting for it to close…'), 1000);
  await new Promise<void>((acquired) => {
    void navigator.locks.request(CLIENT_LOCK, () => {
      acquired();
      return new Promise<void>(() => {}); // released when the page goes away
    });
  });
  clearTimeout(waiting);
  owner = true;
  say('');
}

/**
 * Opens the store: a new one with `?name=`, or with the name and the optional
 * passphrase the user gives (a passphrase encrypts it at rest); an encrypted
 * one once the user gives its passphrase.
 */
async function openClient(config: Parameters<typeof openStoreClient>[0]): Promise<{ client: HushClient; passphrase?: string }> {
  let c: HushClient;
  try {
    c = await openStoreClient(config);
    ui.atRest.textContent = 'not encrypted';
  } catch (e) {
    if (!(e instanceof PassphraseError)) throw e;
    ui.atRest.textContent = 'encrypted';
    for (;;) {
      const { passphrase } = await ask({ name: false, passphrase: 'required', button: 'Unlock' });
      say('unlocking…');
      try {
        return { client: await openStoreClient(config, { passphrase }), passphrase };
      } catch (e) {
        if (!(e instanceof PassphraseError)) throw e;
        say('wrong passphrase', true);
      }
    }
  }
  const fromUrl = new URLSearchParams(location.search).get('name')?.trim();
  if (c.name || c.contacts().length > 0) return { client: c }; // not a new store
  const { name, passphrase } = fromUrl ? { name: fromUrl, passphrase: '' } : await ask({ name: true, passphrase: 'optional', button: 'Start' });
  if (passphrase) {
    await c.close(); // encrypted from its first record on (the store is empty)
    say('encrypting…');
    ui.atRest.textContent = 'encrypted';
    return { client: await openStoreClient(config, { name, passphrase }), passphrase };
  }
  await c.setName(name);
  return { client: c };
}

/** Shows the start form with the fields asked for; resolves with what the user submits. */
function ask(o: { name: boolean; passphrase: 'none' | 'optional' | 'required'; button: string }): Promise<{ name: string; passphrase: string }> {
  ui.name.hidden = ui.nameLabel.hidden = !o.name;
  ui.name.required = o.name;
  ui.passphrase.hidden = o.passphrase === 'none';
  ui.passphrase.required = o.passphrase === 'required';
  ui.passphrase.placeholder = o.passphrase === 'required' ? 'Passphrase' : 'Passphrase (optional: encrypts the data here)';
  ui.start.textContent = o.button;
  (o.name ? ui.name : ui.passphrase).focus();
  return new Promise((resolve) => {
    const submitted = () => {
      const name = ui.name.value.trim();
      const passphrase = ui.passphrase.value;
      if ((o.name && !name) || (o.passphrase === 'required' && !passphrase)) return;
      ui.nameForm.removeEventListener('submit', submitted);
      ui.passphrase.value = '';
      resolve({ name, passphrase });
    };
    ui.nameForm.addEventListener('submit', submitted);
  });
}

/** The active profile's name (asked for once if it has none: a wiped store). */
async function chooseName(c: HushClient): Promise<void> {
  if (!c.name) await c.setName((await ask({ name: true, passphrase: 'none', button: 'Start' })).name);
  ui.name.hidden = ui.nameLabel.hidden = false;
  ui.name.value = c.name;
  ui.name.readOnly = true;
  ui.passphrase.hidden = ui.start.hidden = true;
}

function wire(c: HushClient, log: History): void {
  log.record(c, (contactId) => {
    selected ??= contactId;
    void render();
  });
  c.on('contact', (e) => {
    selected ??= e.contactId;
    say(`connected: ${e.name || 'new contact'}`);
    void render();
  });
  c.on('contactRequest', (r) => {
    say(`${r.name || 'Someone'} asks to connect`);
    void render();
  });
  c.on('tokenStatus', renderToken);
  c.on('error', (e) => say(`error: ${e.what}`, true));
  c.on('messageStatus', (m) => {
    const change = { state: m.state, ...(m.error ? { error: m.error } : {}) };
    statuses.set(m.messageId, change);
    void log.setState(m.contactId, m.messageId, change).then(render);
  });
  c.on('callReply', (r) => say(`${nameOf(c, r.contactId)} ${r.reply === 'answer' ? 'answered' : 'declined'} your call`));
  c.on('callAnswered', (a) => say(`${a.media} call with ${nameOf(c, a.contactId)} answered (a real app opens its call screen here)`));
  // the store's Web Lock taken away (another client found it stale): this client is suspended
  c.on('lockLost', () => say('another client took over the data: reload the page', true));
  // what the device would show for a message that came online (none for the chat on screen)
  c.on('notification', (n) => void notify(n));
  document.addEventListener('visibilitychange', () => {
    if (visible()) void render();
    else c.setOpenChat(null);
  });
}

/** The latest state of each message sent from this page (it may change before its history entry is written). */
const statuses = new Map<string, Pick<HistoryEntry, 'state' | 'error'>>();
const nameOf = (c: HushClient, id: string) => c.contacts().find((x) => x.id === id)?.name || 'the contact';

function enableControls(c: HushClient): void {
  for (const b of [ui.invite, ui.makeAddress, ui.accept, ui.preview, ui.mode, ui.language, ui.newContacts, ui.wipe, ui.profile, ui.addProfile]) b.disabled = false;
  ui.preview.value = c.previewMode;
  ui.mode.value = c.notificationMode;
  ui.newContacts.checked = c.newContactNotifications;
  ui.newContacts.addEventListener('change', () => void run(() => c.setNewContactNotifications(ui.newContacts.checked)));
  setUpLanguage(c);
  setUpProfiles(c);
  setUpAddress(c);
  ui.wipe.addEventListener('click', () => {
    if (!confirm('Delete every contact, the push token and all Hush data in this browser?')) return;
    void run(async () => {
      say('wiping…');
      await c.wipe();
      await messages!.clear();
      await c.close();
      location.replace(location.pathname); // a new start: asks for a name
    });
  });
  ui.call.addEventListener('click', () => {
    const to = selected;
    if (!to) return;
    void run(async () => {
      const { messageId, state, callId } = await c.call(to);
      await messages!.add(messageId, { contactId: to, from: 'me', text: 'Outgoing audio call', at: Date.now(), messageId, callId, ...(statuses.get(messageId) ?? { state }) });
      await render();
    });
  });
  ui.messages.addEventListener('click', (e) => {
    const b = (e.target as HTMLElement).closest<HTMLButtonElement>('[data-call-id]');
    if (b && selected) void run(() => performAction(c, { action: b.dataset.action as ActionInput['action'], contactId: selected!, callId: b.dataset.callId! }), b);
  });
  ui.preview.addEventListener('change', () => void run(() => c.setPreviewMode(ui.preview.value as PreviewMode)));
  ui.mode.addEventListener('change', async () => {
    if (!(await run(() => c.setNotificationMode(ui.mode.value as NotificationMode)))) ui.mode.value = c.notificationMode;
    renderToken(c.tokenStatus);
  });
  ui.invite.addEventListener('click', () =>
    run(async () => {
      const { contactId, link } = await c.createInvitation();
      ui.invitation.textContent = `${location.origin}/#${link}`;
      ui.invitationBox.hidden = false;
      selected = contactId;
      await render();
    }),
  );
  ui.copy.addEventListener('click', () => copyLink(ui.invitation));
  ui.acceptForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const link = ui.acceptLink.value.trim();
    if (!link) return;
    // an address link asks its owner to connect
    const toAddress = parseContactAddress(link).ok;
    void run(async () => {
      selected = toAddress ? await c.sendContactRequest(link) : await c.acceptInvitation(link);
      ui.acceptLink.value = '';
      ui.acceptForm.classList.remove('offered');
      ui.acceptLabel.textContent = 'Got an invitation or address link?';
      if (location.hash) history.replaceState(null, '', location.pathname + location.search);
      say(toAddress ? 'request sent: connected once the address owner accepts' : 'accepted: connected once the inviter answers');
      await render();
    });
  });
  ui.contacts.addEventListener('click', (e) => {
    const target = e.target as HTMLElement;
    const item = target.closest<HTMLElement>('[data-contact-id]');
    const id = item?.dataset.contactId;
    if (!id) return;
    if (target.closest('.mute')) {
      const on = !c.contacts().find((x) => x.id === id)?.notifications;
      void run(async () => {
        await c.setContactNotifications(id, on);
        await render();
      });
    } else void openChat(id);
  });
  let sending = Promise.resolve();
  ui.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.text.value;
    const to = selected;
    if (!text.trim() || !to) return;
    ui.text.value = '';
    // one at a time, in the order typed
    sending = sending.then(async () => {
      const silent = ui.silent.checked;
      const sent = await run(async () => {
        const { messageId, state } = await c.send(to, text, { notify: !silent });
        await messages!.add(messageId, { contactId: to, from: 'me', text, at: Date.now(), messageId, silent, ...(statuses.get(messageId) ?? { state }) });
      });
      if (!sent && ui.text.value === '') ui.text.value = text;
      await render();
    });
  });
}

/** Shows a chat (which reads it), switching to its profile. */
async function openChat(id: string): Promise<void> {
  const profileId = client?.contacts().find((x) => x.id === id)?.profileId;
  if (profileId && profileId !== client!.activeProfile) await client!.setActiveProfile(profileId);
  selected = id;
  await render();
}

/**
 * A notification's button (or the same in the page): a call answered or
 * declined, a contact request accepted (its chat opens: the contact has the
 * request's ID) or rejected.
 */
async function performAction(c: HushClient, input: ActionInput): Promise<void> {
  await performAndRecord(c, messages!, input);
  if (input.action === 'answer-call') await openChat(input.contactId);
  else if (input.action === 'accept-contact') await openChat(input.requestId!);
  else await render();
}

/** My contact address: made (or shown) on demand, copied, deleted; its requests answered from the list. */
function setUpAddress(c: HushClient): void {
  ui.makeAddress.addEventListener('click', () =>
    run(async () => {
      await c.createAddress();
      await render();
    }, ui.makeAddress),
  );
  ui.copyAddress.addEventListener('click', () => copyLink(ui.address));
  ui.deleteAddress.addEventListener('click', () => {
    if (!confirm('Delete your address? Its link stops working; contacts made through it stay.')) return;
    void run(async () => {
      await c.deleteAddress();
      say('address deleted');
      await render();
    }, ui.deleteAddress);
  });
  ui.requests.addEventListener('click', (e) => {
    const b = (e.target as HTMLElement).closest<HTMLButtonElement>('button[data-request-id]');
    const requestId = b?.dataset.requestId;
    if (b && requestId) void run(() => performAction(c, { action: b.dataset.action as ActionInput['action'], contactId: requestId, requestId }), b);
  });
}

function copyLink(from: HTMLElement): Promise<boolean> {
  return run(async () => {
    await navigator.clipboard.writeText(from.textContent ?? '');
    say('link copied');
  });
}

/** The notification words' language: the page's choice, kept where the service worker reads it. */
function setUpLanguage(c: HushClient): void {
  ui.language.replaceChildren(...Object.entries(LANGUAGES).map(([code, l]) => new Option(l.label, code)));
  void pref('language').then((code) => (ui.language.value = code && LANGUAGES[code] ? code : 'en'));
  ui.language.addEventListener('change', () =>
    run(async () => {
      c.setWords(wordsOf(ui.language.value));
      await setPref('language', ui.language.value);
    }),
  );
}

/** Profile switcher (new contacts go to the active one), new profile, delete. */
function setUpProfiles(c: HushClient): void {
  ui.profile.addEventListener('change', () =>
    run(async () => {
      await c.setActiveProfile(ui.profile.value);
      selected = undefined;
      ui.invitationBox.hidden = true;
      await render();
    }),
  );
  ui.profileForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = ui.profileName.value.trim();
    if (!name) return;
    void run(async () => {
      await c.setActiveProfile(await c.createProfile(name));
      ui.profileName.value = '';
      selected = undefined;
      ui.invitationBox.hidden = true;
      await render();
    }, ui.addProfile);
  });
  ui.deleteProfile.addEventListener('click', () => {
    const p = c.profiles().find((x) => x.active);
    if (!p || !confirm(`Delete the profile ${p.name} and its contacts?`)) return;
    void run(async () => {
      await c.deleteProfile(p.id);
      await render();
    });
  });
}

/** An invitation or address in the URL (`/#hush-invite:…`, `/#hush-address:…`) is offered for accepting. */
function offerInvitation(): void {
  const address = location.hash.startsWith('#hush-address:');
  if (!address && !location.hash.startsWith('#hush-invite:')) return;
  ui.acceptLink.value = location.href;
  ui.acceptLabel.textContent = address ? 'An address: accept to ask its owner to connect' : 'You were invited: accept to connect';
  ui.acceptForm.classList.add('offered');
}

// ---- rendering

let rendering: Promise<void> = Promise.resolve();
/** Redraws contacts and the selected chat (one redraw at a time, so the last one shows the latest). */
function render(): Promise<void> {
  rendering = rendering.then(draw).catch((e) => say(`error: ${errorText(e)}`, true));
  return rendering;
}

const STATE_LABEL = { invited: 'invited', accepted: 'connecting', requested: 'requested', ready: 'connected' } as const;
const contactName = (c: ContactInfo) => c.name || (c.state === 'invited' ? 'Invitation' : 'New contact');

async function draw(): Promise<void> {
  const c = client;
  if (!c) return;
  const list = c.contacts().filter((x) => x.profileId === c.activeProfile);
  if (!list.some((x) => x.id === selected)) selected = (list.find((x) => x.state === 'ready') ?? list[0])?.id;
  const current = list.find((x) => x.id === selected);
  c.setOpenChat(current && visible() ? current.id : null);
  if (current && visible()) await readChat(c, current);
  const entries = current && messages ? await messages.list(current.id) : [];

  ui.contacts.replaceChildren(...list.map((x) => contactItem(x, x.id === selected)));
  ui.chatTitle.textContent = current ? `${contactName(current)} · ${STATE_LABEL[current.state]}` : 'No chat selected';
  ui.chatTitle.classList.toggle('muted', !current);
  const atBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;
  ui.messages.replaceChildren(...entries.map((e) => messageItem(e, current!)));
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
  const canSend = current?.state === 'ready';
  ui.text.disabled = ui.send.disabled = ui.call.disabled = !canSend;
  ui.text.placeholder = canSend ? `Message ${contactName(current)}` : current ? 'Waiting for the contact to connect…' : 'Message';
  renderToken(c.tokenStatus);
  renderProfiles(c);
  renderAddress(c);
  renderRequests(c.contactRequests());
  document.title = c.badge > 0 ? `(${c.badge}) Hush chat` : 'Hush chat';
}

/** The chat is on screen: its messages are read, its notifications go away. */
async function readChat(c: HushClient, chat: ContactInfo): Promise<void> {
  if (chat.unread > 0) {
    await c.markRead(chat.id);
    chat.unread = 0;
  }
  const reg = await navigator.serviceWorker?.getRegistration();
  for (const n of (await reg?.getNotifications({ tag: chat.id })) ?? []) n.close();
}

function node<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function contactItem(c: ContactInfo, isSelected: boolean): HTMLLIElement {
  const li = node('li', isSelected ? 'contact selected' : 'contact');
  li.dataset.contactId = c.id;
  li.dataset.state = c.state;
  const pick = node('button', 'pick');
  pick.type = 'button';
  pick.append(node('span', 'contact-name', contactName(c)), ' ', node('span', `state ${c.state}`, STATE_LABEL[c.state]));
  if (c.unread > 0) pick.append(' ', node('span', 'unread badge', String(c.unread)));
  const mute = node('button', 'mute', c.notifications ? 'Mute' : 'Unmute');
  mute.type = 'button';
  mute.title = c.notifications ? 'Notifications on: click to mute' : 'Muted: click to unmute';
  mute.setAttribute('aria-pressed', String(!c.notifications));
  li.append(pick, mute);
  return li;
}

const TICK = { pending: ['🕓', 'waiting to be sent'], sent: ['✓', 'taken by the relay'], failed: ['⚠', 'not sent'] } as const;

function messageItem(e: HistoryEntry, c: ContactInfo): HTMLDivElement {
  const div = node('div', `message ${e.from}`);
  div.title = new Date(e.at).toLocaleString();
  div.append(node('span', 'from', e.from === 'me' ? 'Me' : c.name || 'Them'), ': ', node('span', 'text', e.text));
  if (e.silent) div.append(node('span', 'note', 'silent'));
  if (e.state) {
    div.dataset.state = e.state;
    const [mark, meaning] = TICK[e.state];
    const tick = node('span', 'tick', mark);
    tick.title = e.error ? `${meaning}: ${e.error}` : meaning;
    div.append(tick);
  }
  if (e.from === 'them' && e.callId) div.append(callStatus(e));
  return div;
}

/** An incoming call: Answer / Decline while it rings, then what became of it. */
function callStatus(e: HistoryEntry): HTMLElement {
  if (e.reply) return node('span', 'note', e.reply === 'answer' ? 'answered' : 'declined');
  if ((e.expiresAt ?? 0) <= Date.now()) return node('span', 'note', 'missed');
  const w = client!.words;
  const box = node('span', 'call-actions');
  box.append(...actionButtons([['answer-call', w.answerCall], ['reject-call', w.rejectCall]], { callId: e.callId! }));
  return box;
}

/** Buttons for notification actions in the page, in the user's language, `data` in their dataset for the click handler. */
function actionButtons(actions: ReadonlyArray<readonly [NotificationActionId, string]>, data: Record<string, string>): HTMLButtonElement[] {
  return actions.map(([action, label]) => {
    const b = node('button', action, label);
    b.type = 'button';
    Object.assign(b.dataset, { action, ...data });
    return b;
  });
}

/** The address's link and its QR code (the SDK's SVG as an image: markup never enters the page's DOM). */
function renderAddress(c: HushClient): void {
  const link = c.address;
  ui.addressBox.hidden = !link;
  ui.makeAddress.hidden = !!link;
  if (!link || ui.address.textContent === link) return;
  ui.address.textContent = link;
  ui.addressQr.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(c.addressQr())}`;
}

function renderRequests(requests: ContactRequestInfo[]): void {
  ui.requestsBox.hidden = requests.length === 0;
  ui.requests.replaceChildren(
    ...requests.map((r) => {
      const li = node('li', 'request');
      li.dataset.requestId = r.id;
      li.title = `asked ${new Date(r.receivedAt).toLocaleString()}`;
      const w = client!.words;
      li.append(node('span', 'requester', r.name || 'Someone'));
      li.append(...actionButtons([['accept-contact', w.acceptContact], ['reject-contact', w.rejectContact]], { requestId: r.id }));
      return li;
    }),
  );
}

function renderProfiles(c: HushClient): void {
  const profiles = c.profiles();
  ui.profile.replaceChildren(...profiles.map((p) => new Option(`${p.name || 'Unnamed'}${p.unread ? ` (${p.unread})` : ''}`, p.id, p.active, p.active)));
  ui.deleteProfile.disabled = profiles.length < 2;
  ui.name.value = c.name;
}

function renderToken(s: TokenStatus | undefined): void {
  ui.tokenStatus.textContent = !s ? 'none' : s.status === 'INVALID' ? `INVALID (${s.reason})` : s.status;
  ui.tokenStatus.dataset.status = s?.status ?? 'none';
}

// ---- notifications and pushes

/** Subscribes to Web Push at the stack's push service and registers the subscription as the device token. */
async function registerPush(c: HushClient): Promise<void> {
  let endpoint: string | undefined;
  // the verification push follows TNEW at once: listen before registering (the feed stays open for the page's life)
  await openPushFeed((push) => {
    if (push.kind === 'webpush' && endpoint !== undefined && push.endpoint === endpoint && typeof push.message === 'string')
      void handlePush(push.message);
  });
  // A new subscription each load: simplest, and a push service that forgot the
  // old one (a restarted stack) would never deliver. A new endpoint is a changed token: TRPL.
  // (locked to the stack's VAPID key, as PushManager.subscribe would lock it to the applicationServerKey)
  const res = await fetch('/api/webpush/subscribe', { method: 'POST' });
  if (!res.ok) throw new Error(`POST /api/webpush/subscribe: ${res.status}`);
  const subscription = (await res.json()) as { endpoint: string; keys: { p256dh: string; auth: string } };
  endpoint = subscription.endpoint;
  await c.registerDevice(webPushToken(subscription));
  renderToken(c.tokenStatus);
}

/**
 * Handles a push with this page's client and shows the notifications it
 * returns (none for the chat on screen). Within PAGE_DEADLINE_MS, before the service worker stops waiting
 * for the answer and shows a generic notification of its own.
 */
async function handlePush(data: string): Promise<boolean> {
  const deadline = Date.now() + PAGE_DEADLINE_MS; // from the push's arrival, not from the client being ready
  try {
    await ready;
    const shown = await client!.handlePush(data, { deadlineMs: Math.max(0, deadline - Date.now()) });
    for (const n of shown) await notify(n);
    await render();
    return true;
  } catch (e) {
    say(`error: handling a push failed: ${errorText(e)}`, true);
    return false;
  }
}

async function notify(n: HushNotification): Promise<void> {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const reg = await navigator.serviceWorker?.getRegistration();
  if (reg) await showNotification(reg, n, client!);
  else new Notification(n.title, { body: n.body, tag: n.threadId });
}

function listenToServiceWorker(): void {
  const sw = navigator.serviceWorker;
  if (!sw) return;
  sw.addEventListener('message', (e: MessageEvent<{ type?: string; data?: unknown; contactId?: unknown } & Partial<ActionInput>>) => {
    const m = e.data;
    const answer = (ok: boolean) => e.ports[0]?.postMessage({ ok });
    // only the page that owns the client answers; the worker waits for an answer
    if (m?.type === PUSH_MESSAGE && owner && typeof m.data === 'string') void handlePush(m.data).then(answer);
    const input = m?.type === ACTION_MESSAGE && owner ? actionInput(m.action, m) : undefined;
    if (input) {
      // taken, even if it failed (the call rang out, the request was answered in the list): the failure is shown here
      void ready.then(() => run(() => performAction(client!, input))).then(() => answer(true));
    }
    if (m?.type === OPEN_MESSAGE && typeof m.contactId === 'string') void ready.then(() => openChat(m.contactId as string));
  });
  sw.startMessages();
}

function setUpPermissionButton(): void {
  if (!('Notification' in window) || Notification.permission !== 'default') return;
  ui.notify.hidden = false;
  ui.notify.addEventListener('click', async () => {
    const p = await Notification.requestPermission();
    ui.notify.hidden = p !== 'default';
    say(p === 'granted' ? 'notifications allowed' : `notifications: ${p}`);
  });
}

main().catch((e) => {
  failReady(e);
  say(`error: ${errorText(e)}`, true);
});
