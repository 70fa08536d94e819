// What contacts say to each other inside the end-to-end encryption
// (docs/sdk.md §4): the two messages that connect them, then chat events.
import { Encoder, parse, ParseError, type Decoder, type Parsed } from '../core/encoding.ts';
import { ID_LENGTH } from '../relay/protocol.ts';

export type CallMedia = 'audio' | 'video';

export type Content =
  /** The acceptor's first message, to the inviter's queue. */
  | {
      type: 'hello';
      name: string;
      /** The acceptor's receive queue, secured with `replySndKey`. */
      replyRelay: string;
      replySndId: Uint8Array;
      /** X25519 private key the inviter sends to the reply queue with. */
      replySndKey: Uint8Array;
      /** X25519 public key the inviter secures its queue with (KEY); the acceptor holds its private half. */
      sndAuthKey: Uint8Array;
    }
  /** The inviter's answer on the reply queue: its queue is secured, the contact is connected. */
  | { type: 'ready'; name: string }
  | { type: 'text'; sentAt: number; text: string }
  /** A call rings for `ringMs` from when the relay took it in; `callId` names it in the reply. */
  | { type: 'call'; sentAt: number; media: CallMedia; ringMs: number; callId: Uint8Array }
  /** The callee's answer to a call. */
  | { type: 'call-reply'; callId: Uint8Array; reply: CallReply }
  /** A contact request, the requester's first message, to a contact address. */
  | {
      type: 'request';
      name: string;
      /** The requester's receive queue, secured with `replySndKey`. */
      replyRelay: string;
      replySndId: Uint8Array;
      /** X25519 private key the address owner answers with. */
      replySndKey: Uint8Array;
    }
  /** The owner's acceptance, on the requester's queue: the owner's new queue for this contact and the contact's e2e key. */
  | {
      type: 'answer';
      name: string;
      relay: string;
      sndId: Uint8Array;
      /** X25519 private key the requester sends to that queue with (the owner secured it with the public half). */
      sndKey: Uint8Array;
      /** The owner's new X25519 key for this contact: the chains start again from it (docs/sdk.md §3.1). */
      e2eKey: Uint8Array;
    };

export type CallReply = 'answer' | 'decline';

const TYPES = ['hello', 'ready', 'text', 'call', 'call-reply', 'request', 'answer'] as const;
const MEDIA: CallMedia[] = ['audio', 'video'];
const REPLIES: CallReply[] = ['answer', 'decline'];
/** Random bytes naming a call. */
export const CALL_ID_LENGTH = 12;
/** Longest display name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 100;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF: it is text

/** A display name's UTF-8 bytes; a RangeError if over MAX_NAME_BYTES. */
export function nameBytes(s: string): Uint8Array {
  const b = utf8.encode(s);
  if (b.length > MAX_NAME_BYTES) throw new RangeError(`a name is at most ${MAX_NAME_BYTES} bytes`);
  return b;
}

function text(b: Uint8Array): string {
  try {
    return fromUtf8.decode(b);
  } catch {
    throw new ParseError('text is not UTF-8');
  }
}

function name(d: Decoder): string {
  const n = d.short();
  if (n.length > MAX_NAME_BYTES) throw new ParseError('name too long');
  return text(n);
}

export function encodeContent(c: Content): Uint8Array {
  const e = new Encoder(128).u8(TYPES.indexOf(c.type) + 1);
  switch (c.type) {
    case 'hello':
      e.short(nameBytes(c.name)).short(utf8.encode(c.replyRelay)).short(c.replySndId).short(c.replySndKey).short(c.sndAuthKey);
      break;
    case 'ready':
      e.short(nameBytes(c.name));
      break;
    case 'text':
      e.u64(c.sentAt).raw(utf8.encode(c.text));
      break;
    case 'call':
      e.u64(c.sentAt).u8(MEDIA.indexOf(c.media) + 1).u32(c.ringMs).short(c.callId);
      break;
    case 'call-reply':
      e.short(c.callId).u8(REPLIES.indexOf(c.reply) + 1);
      break;
    case 'request':
      e.short(nameBytes(c.name)).short(utf8.encode(c.replyRelay)).short(c.replySndId).short(c.replySndKey);
      break;
    case 'answer':
      e.short(nameBytes(c.name)).short(utf8.encode(c.relay)).short(c.sndId).short(c.sndKey).short(c.e2eKey);
      break;
  }
  return e.done();
}

/** The queue a first message (hello, request) gives for the answer, and the key to send to it with. */
const replyQueue = (d: Decoder) => ({
  replyRelay: text(d.short()),
  replySndId: d.key(ID_LENGTH, 'reply sender ID'),
  replySndKey: d.key(32, 'reply sender key'),
});

export function decodeContent(b: Uint8Array): Parsed<Content> {
  return parse(b, (d): Content => {
    const type = TYPES[d.u8() - 1];
    switch (type) {
      case 'hello':
        return { type, name: name(d), ...replyQueue(d), sndAuthKey: d.key(32, 'sender key') };
      case 'ready':
        return { type, name: name(d) };
      case 'request':
        return { type, name: name(d), ...replyQueue(d) };
      case 'answer':
        return {
          type,
          name: name(d),
          relay: text(d.short()),
          sndId: d.key(ID_LENGTH, 'sender ID'),
          sndKey: d.key(32, 'sender key'),
          e2eKey: d.key(32, 'e2e key'),
        };
      case 'text':
        return { type, sentAt: d.u64(), text: text(d.raw(d.remaining)) };
      case 'call': {
        const sentAt = d.u64();
        const media = MEDIA[d.u8() - 1];
        if (!media) throw new ParseError('unknown call media');
        return { type, sentAt, media, ringMs: d.u32(), callId: d.key(CALL_ID_LENGTH, 'call ID') };
      }
      case 'call-reply': {
        const callId = d.key(CALL_ID_LENGTH, 'call ID');
        const reply = REPLIES[d.u8() - 1];
        if (!reply) throw new ParseError('unknown call reply');
        return { type, callId, reply };
      }
      default:
        throw new ParseError('unknown content type');
    }
  });
}
