// The local stack's web server answers only requests made to it by name
// (127.0.0.1:PORT or localhost:PORT): a page on another site that rebinds its
// DNS name to 127.0.0.1 gets 403 and cannot read the API; a Web Push
// subscription is made only for a page of this origin.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';
import { startWebServer } from '../../src/stack/web.ts';

type Stack = Parameters<typeof startWebServer>[0];

/** As much of the stack as the API below reads. */
function fakeStack(): Stack {
  const webpush = Object.assign(new EventEmitter(), {
    subscribe: () => ({ endpoint: 'https://127.0.0.1:1/push/x', keys: { p256dh: 'p', auth: 'a' } }),
  });
  return {
    relay: { address: 'hush+ws://relay@127.0.0.1:1' },
    ntf: { address: 'hush+ws://ntf@127.0.0.1:2' },
    apns: new EventEmitter(),
    webpush,
    vapidPublicKey: 'BK',
  } as unknown as Stack;
}

/** A request with the headers given as they are (fetch would not send another Host). */
function request(port: number, o: { method?: string; path: string; headers: http.OutgoingHttpHeaders }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path, headers: o.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('web server: only its own Host names; subscriptions only from its own origin', async (t) => {
  const web = await startWebServer(fakeStack(), { port: 0 });
  t.after(() => web.close());
  const port = Number(new URL(web.url).port);

  // fetch sends the Host of the URL: the stack's own address
  const config = await fetch(`${web.url}api/config`);
  assert.equal(config.status, 200);
  assert.deepEqual(await config.json(), { relay: 'hush+ws://relay@127.0.0.1:1', ntf: 'hush+ws://ntf@127.0.0.1:2' });
  assert.equal((await request(port, { path: '/api/config', headers: { host: `localhost:${port}` } })).status, 200);

  for (const host of ['attacker.example', `attacker.example:${port}`, 'localhost', '127.0.0.1', `127.0.0.1:${port + 1}`]) {
    for (const path of ['/api/config', '/api/pushes', '/api/metrics', '/']) {
      const r = await request(port, { path, headers: { host } });
      assert.equal(r.status, 403, `${host} ${path}`);
    }
    assert.equal((await request(port, { method: 'POST', path: '/api/webpush/subscribe', headers: { host } })).status, 403, host);
  }

  const subscribe = (headers: http.OutgoingHttpHeaders) =>
    request(port, { method: 'POST', path: '/api/webpush/subscribe', headers: { host: `127.0.0.1:${port}`, ...headers } });
  assert.equal((await subscribe({})).status, 200, 'no Origin: not a browser page');
  const ok = await subscribe({ origin: `http://127.0.0.1:${port}` });
  assert.equal(ok.status, 200);
  assert.equal((JSON.parse(ok.body) as { endpoint: string }).endpoint, 'https://127.0.0.1:1/push/x');
  for (const origin of ['http://attacker.example', `http://localhost:${port}`, `https://127.0.0.1:${port}`, 'null']) {
    assert.equal((await subscribe({ origin })).status, 403, origin);
  }
  const viaFetch = await fetch(`${web.url}api/webpush/subscribe`, { method: 'POST', headers: { origin: 'http://attacker.example' } });
  assert.equal(viaFetch.status, 403);
});
