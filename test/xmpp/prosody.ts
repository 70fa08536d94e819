// Prosody for the XMPP tests: the kit the benchmark uses too.
export { prosodyMissing, startProsody, type Prosody } from '../../src/xmpp/testkit/prosody.ts';
