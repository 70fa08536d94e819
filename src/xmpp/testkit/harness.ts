// What the XEP-0357 tests and the XMPP benchmark need of an XMPP server they start
// (prosody.ts here, test/xmpp/ejabberd.ts).

export interface XmppTestServer {
  domain: string;
  c2s: number;
  /** The component (XEP-0114) the app server connects as. */
  component: { service: string; domain: string; password: string };
  register(user: string, password: string): Promise<void>;
  /** Kills the server and removes its files. */
  stop(): Promise<void>;
}
