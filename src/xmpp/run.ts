// `hush xmpp init|start`: the XEP-0357 app server's config, and running it.
import fs from 'node:fs';
import { createProviders } from '../push/config.ts';
import { createLogger } from '../server/log.ts';
import { startWithOps, type Running } from '../server/start.ts';
import { loadXmppConfig, xmppFiles } from './config.ts';
import { XmppAppServer } from './server.ts';
import { openRegistrationStore } from './store.ts';

/** Writes a config to fill in (the XMPP servers and a provider); fails if one exists. */
export function initXmpp(dir: string): string {
  const files = xmppFiles(dir);
  if (fs.existsSync(files.config)) throw new Error(`${files.config} exists: already initialized`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(files.config, JSON.stringify({ servers: [], metrics: { port: 9467 } }, null, 2) + '\n');
  loadXmppConfig(dir);
  return files.config;
}

export async function startXmpp(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<Running<XmppAppServer>> {
  const c = loadXmppConfig(dir, env);
  const log = createLogger('xmpp', c.logLevel);
  const providers = createProviders(c, log);
  if (providers.length === 0) log.warn({ event: 'no_push_provider', hint: 'configure apns, fcm or webpush in xmpp.json' });
  if (c.servers.length === 0) log.warn({ event: 'no_servers', hint: 'add the XMPP servers (their component ports) to xmpp.json' });
  const { store } = openRegistrationStore(xmppFiles(dir).store, { fsync: c.store.fsync });
  const server = new XmppAppServer({
    links: c.servers,
    providers,
    store,
    log,
    maxRegistrations: c.maxRegistrations,
    pushesPerNode: c.pushesPerNode,
    registrationsPerServer: c.registrationsPerServer,
  });
  return startWithOps(server, c.metrics, () => ({ servers: server.online(), registrations: store.size }));
}
