// The languages the web chat offers for the SDK's notification words (a
// Words table each, docs/sdk.md §6.2). The choice is the page's (the SDK
// stores no words): kept in the page's settings database, where the service
// worker's client reads it too.
import type { CallMedia, Words } from '../sdk/index.ts';

const fr = (media: CallMedia) => (media === 'video' ? 'vidéo' : 'audio');
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

export const LANGUAGES: Record<string, { label: string; words: Partial<Words> }> = {
  en: { label: 'English', words: {} },
  fr: {
    label: 'Français',
    words: {
      newContact: 'Nouveau contact',
      newMessage: 'Nouveau message',
      incomingCall: 'Appel entrant',
      incomingMediaCall: (m) => `Appel ${fr(m)} entrant`,
      missedCall: 'Appel manqué',
      missedMediaCall: (m) => `Appel ${fr(m)} manqué`,
      connected: 'Connecté',
      newMessages: (k) => plural(k, 'nouveau message', 'nouveaux messages'),
      more: (k) => ` (+${k} autres)`,
      summary: (m, c) => `${plural(m, 'nouveau message', 'nouveaux messages')} dans ${plural(c, 'conversation', 'conversations')}`,
      answerCall: 'Répondre',
      rejectCall: 'Refuser',
      contactRequest: 'Demande de contact',
      wantsToConnect: (name) => `${name || "Quelqu'un"} veut se connecter`,
      newContactRequest: 'Nouvelle demande de contact',
      acceptContact: 'Accepter',
      rejectContact: 'Refuser',
    },
  },
};

/** The words of language `code` (English for an unknown one). */
export const wordsOf = (code: string | undefined): Partial<Words> => LANGUAGES[code ?? 'en']?.words ?? {};
