// `hush chat`: a terminal chat on the client SDK. With a notification server
// it runs its own Web Push endpoint (push-receiver.ts) and registers it as the
// device token, so `/sleep` shows what a phone would: the client goes offline,
// and each push is given to the push handler, whose notifications are printed.
import readline from 'node:readline';
import {
  openNodeClient,
  type HushClient,
  webPushToken,
  type ContactInfo,
  type Notification,
  type NotificationMode,
  type PreviewMode,
  type TokenStatus,
} from '../sdk/node.ts';
import { PushReceiver } from './push-receiver.ts';

export const PREVIEW_MODES: readonly PreviewMode[] = ['message', 'contact', 'hidden'];
export const NOTIFICATION_MODES: readonly NotificationMode[] = ['instant', 'periodic', 'off'];

export interface ChatOptions {
  /** The client's state file; the push endpoint's keys go next to it (`<data>.push.json`). */
  data: string;
  relay: string;
  ntf?: string;
  name?: string;
  preview?: PreviewMode;
  mode?: NotificationMode;
}

const HELP = `commands:
  /invite                 a one-time link to give a new contact
  /accept LINK            accept a contact's link
  /contacts               contacts, their notifications and unread messages
  /to NAME                chat with NAME (text without a / goes to them)
  /read                   mark the current chat read
  /mute NAME, /unmute NAME
  /preview message|contact|hidden
  /mode instant|periodic|off
  /check                  check the push token and subscriptions now
  /status                 the push token's status
  /sleep, /wake           go offline (pushes only) and online again
  /quit                   leave (also Ctrl-C, Ctrl-D)`;

class ChatError extends Error {}

/** Runs the chat until the user quits; resolves once everything is closed. */
export async function runChat(o: ChatOptions): Promise<void> {
  const client = await openNodeClient(o.data, {
    relays: [o.relay],
    ...(o.ntf ? { ntfServer: o.ntf } : {}),
    ...(o.name !== undefined ? { name: o.name } : {}),
  });
  const chat = new Chat(client);
  try {
    await chat.start(o);
  } catch (e) {
    await chat.close();
    throw e;
  }
  return chat.closed;
}

class Chat {
  private readonly term = new Terminal();
  private receiver: PushReceiver | undefined;
  /** The chat plain text goes to; none: the only contact, if there is one. */
  private selected: string | undefined;
  private commands: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private done!: () => void;
  /** Resolves once the user quit and everything is closed. */
  readonly closed: Promise<void>;

  constructor(private readonly client: HushClient) {
    this.closed = new Promise((r) => (this.done = r));
    const say = (line: string) => this.term.print(line);
    client.on('message', (m) => say(`${this.nameOf(m.contactId)}: ${clean(m.text)}`));
    client.on('call', (c) => say(`${this.nameOf(c.contactId)}: incoming ${c.media} call`));
    client.on('contact', (c) => say(`connected: ${clean(c.name) || '(no name)'}`));
    client.on('tokenStatus', (s) => say(tokenLine(s)));
    // `what` only: it is written to carry no keys or IDs, the error's own text is not
    client.on('error', (e) => say(`error: ${e.what}`));
    // 'notification' events are not shown: an app in the foreground shows none.
  }

  async start(o: ChatOptions): Promise<void> {
    if (o.preview) await this.client.setPreviewMode(o.preview);
    if (o.mode) await this.client.setNotificationMode(o.mode);
    if (o.ntf) this.receiver = await PushReceiver.start({ file: `${o.data}.push.json`, onPush: (push) => this.onPush(push) });
    await this.client.start();
    if (this.receiver) {
      // A new endpoint (after a restart on a taken port) is a changed token: TRPL.
      await this.client.registerDevice(webPushToken(this.receiver.subscription())).catch((e) => {
        this.term.print(`error: registering the push endpoint failed: ${message(e)}`);
      });
    }
    this.term.print('chat ready');
    this.term.open({ line: (l) => this.enqueue(l), quit: () => void this.close() });
    process.once('SIGTERM', () => void this.close());
  }

  /** Like a phone's push handler: the notifications it returns are what the device shows. */
  private async onPush(push: string): Promise<void> {
    if (this.closing) return;
    try {
      for (const n of await this.client.handlePush(push)) this.term.print(notificationLine(n));
    } catch (e) {
      if (!this.closing) this.term.print(`error: handling a push failed: ${message(e)}`);
    }
  }

  /** One command at a time, in the order typed (messages go out in that order). */
  private enqueue(line: string): void {
    this.commands = this.commands.then(async () => {
      if (this.closing) return;
      try {
        await this.run(line.trim());
      } catch (e) {
        if (!this.closing) this.term.print(`error: ${message(e)}`);
      }
      if (!this.closing) this.term.prompt();
    });
  }

  private async run(line: string): Promise<void> {
    if (line === '') return;
    if (!line.startsWith('/')) return this.send(line);
    const [cmd, ...rest] = line.split(/\s+/);
    const arg = rest.join(' ');
    const say = (l: string) => this.term.print(l);
    const c = this.client;
    switch (cmd) {
      case '/invite':
        return say(`invitation: ${(await c.createInvitation()).link}`);
      case '/accept':
        await c.acceptInvitation(required(arg, 'LINK'));
        return say('accepted: connected once the inviter answers');
      case '/contacts': {
        const list = c.contacts();
        if (list.length === 0) return say('no contacts: /invite or /accept LINK');
        for (const x of list) say(`${label(x)} ${x.state} notifications:${x.notifications ? 'on' : 'off'} unread:${x.unread}`);
        return;
      }
      case '/to': {
        const x = this.byName(required(arg, 'NAME'));
        this.selected = x.id;
        return say(`chatting with ${label(x)}`);
      }
      case '/read': {
        const x = this.current();
        await c.markRead(x.id);
        return say(`read: ${label(x)}`);
      }
      case '/mute':
      case '/unmute': {
        const x = this.byName(required(arg, 'NAME'));
        await c.setContactNotifications(x.id, cmd === '/unmute');
        return say(`${cmd.slice(1)}d: ${label(x)}`);
      }
      case '/preview':
        await c.setPreviewMode(choice(arg, PREVIEW_MODES));
        return say(`preview: ${arg}`);
      case '/mode':
        await c.setNotificationMode(choice(arg, NOTIFICATION_MODES));
        return say(`mode: ${arg}`);
      case '/check':
        await c.checkNotifications();
        return say(`checked; ${tokenLine(c.tokenStatus)}`);
      case '/status':
        return say(tokenLine(c.tokenStatus));
      case '/sleep':
        c.stop();
        return say('asleep');
      case '/wake':
        await c.start();
        return say('awake');
      case '/quit':
        return this.close();
      case '/help':
        return say(HELP);
      default:
        throw new ChatError(`unknown command ${cmd} (/help lists them)`);
    }
  }

  private async send(text: string): Promise<void> {
    const to = this.current();
    await this.client.send(to.id, text);
    this.term.print(`you → ${label(to)}: ${clean(text)}`);
  }

  private current(): ContactInfo {
    const list = this.client.contacts();
    const c = list.find((x) => x.id === this.selected) ?? (list.length === 1 ? list[0] : undefined);
    if (c) return c;
    throw new ChatError(list.length === 0 ? 'no contacts yet: /invite or /accept LINK' : 'no chat selected: /to NAME');
  }

  private byName(name: string): ContactInfo {
    const found = this.client.contacts().filter((c) => c.name.toLowerCase() === name.toLowerCase());
    if (found.length === 1) return found[0]!;
    throw new ChatError(found.length === 0 ? `no contact named ${name}` : `${found.length} contacts are named ${name}`);
  }

  private nameOf(contactId: string): string {
    const c = this.client.contacts().find((x) => x.id === contactId);
    return c ? label(c) : '(deleted contact)';
  }

  /** Closes the terminal, the push endpoint and the client with its store (its writes finish first). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.term.close();
      await this.receiver?.close();
      await this.client.close();
      this.done();
    })();
    return this.closing;
  }
}

/**
 * Output that never garbles the line being typed: the prompt and the typed
 * text are cleared, the output printed, and both drawn again below it.
 */
class Terminal {
  private rl: readline.Interface | undefined;
  private readonly out = process.stdout;

  open(on: { line(l: string): void; quit(): void }): void {
    const rl = (this.rl = readline.createInterface({ input: process.stdin, output: this.out, prompt: '> ' }));
    // Ctrl-C, or Ctrl-D (close); a close by close() below comes with this.rl unset
    const quit = () => {
      if (!this.rl) return;
      this.out.write('\n'); // off the prompt's line
      on.quit();
    };
    rl.on('line', on.line);
    rl.on('SIGINT', quit);
    rl.on('close', quit);
    rl.prompt();
  }

  print(line: string): void {
    const rl = this.rl;
    if (rl && this.out.isTTY) {
      readline.moveCursor(this.out, 0, -rl.getCursorPos().rows);
      readline.cursorTo(this.out, 0);
      readline.clearScreenDown(this.out);
    }
    this.out.write(line + '\n');
    rl?.prompt(true);
  }

  prompt(): void {
    this.rl?.prompt();
  }

  close(): void {
    const rl = this.rl;
    this.rl = undefined;
    rl?.close();
  }
}

// A contact chooses its name and texts: control characters in them must not drive the terminal.
const clean = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '\ufffd');

const label = (c: ContactInfo) => clean(c.name) || (c.state === 'ready' ? '(no name)' : '(pending)');

const notificationLine = (n: Notification) => `notification [${n.category}] ${clean(n.title)}: ${clean(n.body)} (badge ${n.badge})`;

const tokenLine = (s: TokenStatus | undefined) =>
  `token: ${s === undefined ? 'none' : s.status === 'INVALID' ? `INVALID (${s.reason})` : s.status}`;

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function required(arg: string, what: string): string {
  if (!arg) throw new ChatError(`${what} is missing`);
  return arg;
}

function choice<T extends string>(arg: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(arg)) throw new ChatError(`one of ${options.join(', ')}`);
  return arg as T;
}
