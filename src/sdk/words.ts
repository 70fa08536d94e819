// Every user-visible string the SDK makes (notification titles, bodies and
// action titles), in one table an app replaces to speak its user's language
// (docs/sdk.md §6.2). Counted phrases are functions: plural rules differ by language.
import type { CallMedia } from './content.ts';

export interface Words {
  /** Title of notifications that must not name the contact (preview `hidden`), and of summaries. */
  appName: string;
  /** A contact's name until it tells one, and the body of a `contact` notification without preview. */
  newContact: string;
  newMessage: string;
  /** A call, without saying which kind. */
  incomingCall: string;
  incomingMediaCall(media: CallMedia): string;
  /** A call that rang out before it was handled. */
  missedCall: string;
  missedMediaCall(media: CallMedia): string;
  /** The contact got connected. */
  connected: string;
  /** `k` events of a chat, without preview (k ≥ 2). */
  newMessages(k: number): string;
  /** Appended to the last event's text when `k` more are not shown. */
  more(k: number): string;
  /** The summary notification: `messages` events in `chats` chats. */
  summary(messages: number, chats: number): string;
  /** A contact request to my address: its title, its body (`name`: what the requester calls itself, maybe ''), and both without preview. */
  contactRequest: string;
  wantsToConnect(name: string): string;
  newContactRequest: string;
  /** Action titles. */
  answerCall: string;
  rejectCall: string;
  acceptContact: string;
  rejectContact: string;
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

export const DEFAULT_WORDS: Readonly<Words> = Object.freeze({
  appName: 'Hush',
  newContact: 'New contact',
  newMessage: 'New message',
  incomingCall: 'Incoming call',
  incomingMediaCall: (media: CallMedia) => `Incoming ${media} call`,
  missedCall: 'Missed call',
  missedMediaCall: (media: CallMedia) => `Missed ${media} call`,
  connected: 'Connected',
  newMessages: (k: number) => plural(k, 'new message', 'new messages'),
  more: (k: number) => ` (+${k} more)`,
  summary: (messages: number, chats: number) => `${plural(messages, 'new message', 'new messages')} in ${plural(chats, 'chat', 'chats')}`,
  contactRequest: 'Contact request',
  wantsToConnect: (name: string) => `${name || 'Someone'} wants to connect`,
  newContactRequest: 'New contact request',
  answerCall: 'Answer',
  rejectCall: 'Decline',
  acceptContact: 'Accept',
  rejectContact: 'Reject',
});

/**
 * DEFAULT_WORDS with `partial`'s entries instead: a language change names
 * everything it changes, and what it leaves out is English, never a word of
 * the language before. Each entry must be of its default's type.
 */
export function wordsWith(partial: Partial<Words> = {}): Words {
  const words: Words = { ...DEFAULT_WORDS };
  for (const [k, v] of Object.entries(partial)) {
    if (!Object.hasOwn(DEFAULT_WORDS, k)) throw new TypeError(`no such word: ${k}`);
    if (v === undefined) continue;
    if (typeof v !== typeof DEFAULT_WORDS[k as keyof Words]) throw new TypeError(`the word ${k} must be a ${typeof DEFAULT_WORDS[k as keyof Words]}`);
    (words as unknown as Record<string, unknown>)[k] = v;
  }
  return words;
}
