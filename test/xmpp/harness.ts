// What the XEP-0357 test needs of an XMPP server it starts (prosody.ts, ejabberd.ts).

export interface XmppTestServer {
  domain: string;
  c2s: number;
  /** The component (XEP-0114) the app server connects as. */
  component: { service: string; domain: string; password: string };
  register(user: string, password: string): Promise<void>;
  /** Kills the server and removes its files. */
  stop(): Promise<void>;
}
