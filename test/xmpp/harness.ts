// What the XMPP tests need of a server they start: the kit the benchmark uses too.
export type { XmppTestServer } from '../../src/xmpp/testkit/harness.ts';
