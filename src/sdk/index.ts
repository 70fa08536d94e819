// The Hush client SDK: what an app imports (browsers, React Native, Node).
// Node-only pieces (a file store, the `ws` WebSocket) are in ./node.ts.
export { HushClient, type ContactInfo, type ContactRequestInfo, type HushClientOptions, type HushEvents } from './client.ts';
export { ContactError, type ChatEvent, type RequestEvent } from './contacts.ts';
export type { CallMedia, CallReply } from './content.ts';
export { DEFAULT_WORDS, type Words } from './words.ts';
export type { ActionInput, CallAnswered } from './actions.ts';
export { parseInvitation, formatInvitation, parseContactAddress, formatContactAddress, type Invitation, type ContactAddress } from './invitation.ts';
export { SUMMARY_THREAD, type Notification, type NotificationAction, type NotificationActionId, type NotificationCategory, type PushPayload } from './push-handler.ts';
export type { NotificationMode, PreviewMode, ContactState } from './records.ts';
export type { ClientStore } from './store/store.ts';
export { MemoryStore } from './store/memory.ts';
export { IndexedDbStore } from './store/indexeddb.ts';
export { EncryptedStore, PassphraseError, DEFAULT_KDF, type KdfParams, type EncryptedStoreOptions } from './store/encrypted.ts';
export { StoreLockError, MemoryLock, WebLock, type StoreLock, type AcquireOptions, type ReleaseLock } from './store/lock.ts';
export { openIndexedDbClient } from './browser.ts';
export { webPushToken, apnsToken, fcmToken, sealedToken } from './device.ts';
export type { TokenStatus, SubStatus } from '../ntf/protocol.ts';
export type { DeviceToken } from '../push/device.ts';
