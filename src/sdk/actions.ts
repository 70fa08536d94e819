// What a notification's buttons do (docs/sdk.md §6.4): the app hands the
// user's choice to performAction, from a client that need not be started (an
// iOS extension, a service worker), with the IDs the notification carried.
import { fromBase64Url } from '../core/encoding.ts';
import { ContactError, sealContent } from './contacts.ts';
import type { Context } from './context.ts';
import type { CallMedia, CallReply } from './content.ts';
import type { NotificationActionId } from './push-handler.ts';
import type { Outbox } from './outbox.ts';
import type { Contact } from './records.ts';

/** The user's choice on a notification, with the IDs it carried. */
export interface ActionInput {
  action: NotificationActionId;
  contactId: string;
  /** A call notification's callId. */
  callId?: string;
  /** A contact request notification's requestId. */
  requestId?: string;
}

/** The app starts its call screen: the caller is told the call was answered. */
export interface CallAnswered {
  contactId: string;
  callId: string;
  media: CallMedia;
}

type Handler = (ctx: Context, contact: Contact, input: ActionInput, outbox: Outbox) => Promise<CallAnswered | undefined>;

export const ACTIONS: Partial<Record<NotificationActionId, Handler>> = {
  'answer-call': (ctx, c, input, outbox) => replyToCall(ctx, c, input, outbox, 'answer'),
  'reject-call': async (ctx, c, input, outbox) => void (await replyToCall(ctx, c, input, outbox, 'decline')),
};

/**
 * Tells the caller the call's fate (without the notify flag: a caller waits on
 * its call screen, online) and marks the call read; the call stops ringing here.
 */
async function replyToCall(ctx: Context, c: Contact, input: ActionInput, outbox: Outbox, reply: CallReply): Promise<CallAnswered> {
  const { callId } = input;
  if (typeof callId !== 'string') throw new TypeError(`${input.action} needs the callId of the call's notification`);
  const answered = await ctx.locks.run(c.id, async () => {
    const call = c.calls?.find((x) => x.id === callId);
    if (!call) throw new ContactError('no such call ringing: it was answered or declined already, or is unknown');
    if (call.expiresAt <= ctx.now()) throw new ContactError('the call is over: it rang out');
    c.calls = c.calls!.filter((x) => x !== call);
    c.unread = Math.max(0, c.unread - 1);
    // Stored with the sealed reply, in one write.
    await sealContent(ctx, c, { type: 'call-reply', callId: fromBase64Url(callId)!, reply }, false, outbox);
    return { contactId: c.id, callId, media: call.media };
  });
  await outbox.flush(c.id); // the reply goes through the outbox like any message
  return answered;
}
