// A real relay process killed with SIGKILL under load, restarted on the same
// directory: every SEND that got OK is delivered exactly once (an ACK that got
// OK is never undone), a pending NMSG survives, and every queue still works.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { ConnectionError } from '../../src/core/client.ts';
import { openMessage, openMeta, type RelayClientOptions } from '../../src/relay/client.ts';
import { bytes, connect, crypto, newQueue, text, tmpDir, type Queue, type TestClient } from '../helpers.ts';
import { HushProcess, RELAY_ADDRESS } from '../process.ts';

interface Started {
  proc: HushProcess;
  address: string;
  fingerprint: string;
  metricsPort: number;
}

async function startProcess(dir: string, env: Record<string, string>): Promise<Started> {
  const proc = new HushProcess(['relay', 'start', '--dir', dir], env);
  try {
    const m = await proc.waitFor(RELAY_ADDRESS);
    const mp = await proc.waitFor(/metrics port: (\d+)/);
    return { proc, address: m[1]!, fingerprint: m[2]!, metricsPort: Number(mp[1]) };
  } catch (e) {
    await proc.dispose();
    throw e;
  }
}

async function healthz(port: number): Promise<Record<string, number | boolean>> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, number | boolean>;
}

/** Bodies are `s<sender>:q<queue>:<n>|padding`; the part before `|` names them. */
const bodyName = (b: string) => b.split('|')[0]!;

test('kill -9 under load: every OK is delivered exactly once, pending NMSG survives', { timeout: 180_000 }, async (t) => {
  const dir = tmpDir('hush-crash-');
  const procs: HushProcess[] = [];
  const clients: TestClient[] = [];
  const client = async (address: string, onEvent?: RelayClientOptions['onEvent']) => {
    const c = await connect(address, { timeoutMs: 20_000, ...(onEvent ? { onEvent } : {}) });
    clients.push(c);
    return c;
  };
  try {
    const init = await new HushProcess(['relay', 'init', '--dir', dir, '--port', '5223']).result();
    assert.equal(init.code, 0, init.stderr);
    const initFingerprint = /address: hush\+ws:\/\/([A-Za-z0-9_-]{43})@/.exec(init.stdout)?.[1];
    assert.ok(initFingerprint, init.stdout);

    const env = { HUSH_RELAY_PORT: '0', HUSH_RELAY_METRICS_PORT: '0', HUSH_RELAY_QUEUE_QUOTA: '100000' };
    const first = await startProcess(dir, env);
    procs.push(first.proc);
    assert.equal(first.fingerprint, initFingerprint);

    // ---- queues: 3 notify (notifier never subscribed), 2 secured, 2 read live, 1 plain ----
    const setup = await client(first.address);
    const queues: Queue[] = [];
    for (let i = 0; i < 8; i++) queues.push(await newQueue(setup, i < 3));
    const notifyQ = new Set([0, 1, 2]);
    const liveQ = new Set([5, 6]);
    const sndKeys = new Map<number, ReturnType<typeof crypto.x25519KeyPair>>();
    for (const i of [3, 4]) {
      const k = crypto.x25519KeyPair();
      await setup.secure(queues[i]!.rcvId, queues[i]!.rcvAuth.privateKey, k.publicKey);
      sndKeys.set(i, k);
    }
    // a notify SEND while no notifier is subscribed: the NMSG is kept
    const pq = await newQueue(setup, true);
    await setup.send(pq.sndId, bytes('pending-before-crash'), { notify: true });
    assert.equal((await healthz(first.metricsPort)).pendingNotifications, 1);

    // ---- recipients reading two queues live, acknowledging as they read ----
    const preReceived = new Map<number, string[]>();
    const preAcked = new Set<string>();
    // the kill comes once the load has done this much: re-checked on each OK and ACK
    let loaded!: () => void;
    const enoughLoad = new Promise<void>((r) => (loaded = r));
    const progress = () => {
      if (okd.size >= 1500 && preAcked.size >= 20) loaded();
    };
    for (const qi of liveQ) {
      const q = queues[qi]!;
      preReceived.set(qi, []);
      const rc: TestClient = await client(first.address, (e) => {
        if (e.type !== 'MSG') return;
        const m = openMessage(crypto, q.rcvDhSecret, e);
        assert.ok(m, 'a message opens with the queue secret');
        const name = bodyName(text(m.body));
        preReceived.get(qi)!.push(name);
        rc.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId).then(
          () => {
            preAcked.add(name);
            progress();
          },
          () => {}, // the relay died: this ACK may or may not have happened
        );
      });
      await rc.subscribe(q.rcvId, q.rcvAuth.privateKey);
    }

    // ---- load: 4 senders, 16 SENDs in flight each, round robin over the queues ----
    const okd = new Map<string, number>(); // body name → queue
    const attempted = new Map<string, number>();
    const unanswered = new Set<string>();
    const otherErrors: string[] = [];
    let inFlight = 0;
    const senders = await Promise.all([0, 1, 2, 3].map(() => client(first.address)));
    const counters = senders.map(() => 0);
    const worker = async (s: number) => {
      const c = senders[s]!;
      for (;;) {
        const n = counters[s]!++;
        const qi = (n + s) % queues.length;
        const name = `s${s}:q${qi}:${n}`;
        const body = `${name}|${'x'.repeat((n * 37) % 1500)}`;
        const k = sndKeys.get(qi);
        attempted.set(name, qi);
        inFlight++;
        try {
          await c.send(queues[qi]!.sndId, bytes(body), {
            notify: notifyQ.has(qi),
            ...(k ? { sndAuthKey: k.privateKey } : {}),
          });
          okd.set(name, qi);
          progress();
        } catch (e) {
          if (e instanceof ConnectionError) {
            unanswered.add(name);
            return;
          }
          otherErrors.push(String(e));
          return;
        } finally {
          inFlight--;
        }
      }
    };
    const workers = senders.flatMap((_, s) => Array.from({ length: 16 }, () => worker(s)));

    // (the workers stop only on an error: then the load cannot get there)
    await Promise.race([enoughLoad, Promise.all(workers).then(() => assert.fail(`the load stopped early: ${otherErrors.join('; ')}`))]);
    const oksAtKill = okd.size;
    const inFlightAtKill = inFlight;
    first.proc.kill('SIGKILL');
    const death = await first.proc.exited;
    assert.equal(death.signal, 'SIGKILL');
    await Promise.all(workers);
    assert.deepEqual(otherErrors, [], 'no SEND refused before the crash');
    assert.ok(inFlightAtKill > 0, 'SENDs were in flight when the relay was killed');
    assert.ok(unanswered.size > 0, 'some SENDs got no answer: the kill hit the load');
    assert.ok(oksAtKill >= 1500);
    for (const c of clients.splice(0)) c.close();
    t.diagnostic(`before kill: ${okd.size} OK, ${unanswered.size} unanswered, ${inFlightAtKill} in flight, ${preAcked.size} acked`);

    // ---- restart on the same directory ----
    const second = await startProcess(dir, env);
    procs.push(second.proc);
    assert.equal(second.fingerprint, initFingerprint, 'same identity after the restart');
    const truncated = /"event":"journal_tail_truncated","bytes":(\d+)/.exec(second.proc.stdout);
    t.diagnostic(`journal tail truncated on restart: ${truncated ? truncated[1] : 0} bytes`);

    // the kept NMSG of the queue sent to before the load, and those of the notify queues
    const notifiers = new Map<Queue, TestClient>();
    for (const q of [pq, ...[...notifyQ].map((i) => queues[i]!)]) {
      const nc = await client(second.address);
      await nc.subscribeNotifier(q.ntf!.notifierId, q.ntf!.auth.privateKey);
      notifiers.set(q, nc);
    }
    const pendingMeta = new Map<Queue, string>();
    for (const [q, nc] of notifiers) {
      const hasOkdNotify = q === pq || [...okd.values()].includes(queues.indexOf(q));
      if (!hasOkdNotify) continue;
      const e = await nc.nextEvent('NMSG', 5000);
      assert.equal(e.type, 'NMSG');
      const meta = openMeta(crypto, q.ntf!.rcvNtfDhSecret, e as Extract<typeof e, { type: 'NMSG' }>);
      assert.ok(meta, 'the kept NMSG opens with the notifier secret');
      pendingMeta.set(q, Buffer.from(meta.msgId).toString('hex'));
      await nc.acknowledgeNotification(q.ntf!.notifierId, (e as Extract<typeof e, { type: 'NMSG' }>).nonce);
    }
    assert.ok(pendingMeta.has(pq), 'the NMSG kept before the crash is delivered on NSUB');

    // ---- drain every queue: SUB, then read and ACK until GET (elsewhere) finds it empty ----
    const checker = await client(second.address);
    const drain = async (q: Queue) => {
      const rc = await client(second.address);
      await rc.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const got: Array<{ name: string; msgId: string }> = [];
      while (await checker.get(q.rcvId, q.rcvAuth.privateKey)) {
        const e = await rc.nextEvent('MSG', 5000);
        assert.equal(e.type, 'MSG');
        const m = openMessage(crypto, q.rcvDhSecret, e as Extract<typeof e, { type: 'MSG' }>);
        assert.ok(m);
        got.push({ name: bodyName(text(m.body)), msgId: Buffer.from(m.msgId).toString('hex') });
        await rc.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      }
      return { rc, got };
    };
    const drained = await Promise.all([...queues, pq].map(drain));
    const pqGot = drained.at(-1)!.got;
    assert.deepEqual(
      pqGot.map((g) => g.name),
      ['pending-before-crash'],
    );
    assert.equal(pendingMeta.get(pq), pqGot[0]!.msgId, 'the kept NMSG names the kept message');

    let lost = 0;
    let delivered = 0;
    let unansweredDelivered = 0;
    queues.forEach((q, qi) => {
      const got = drained[qi]!.got;
      const names = got.map((g) => g.name);
      assert.equal(new Set(names).size, names.length, `q${qi}: no message delivered twice after the restart`);
      for (const name of names) {
        assert.equal(attempted.get(name), qi, `q${qi}: ${name} was sent to this queue`);
        assert.ok(!preAcked.has(name), `q${qi}: ${name} was acknowledged before the crash, delivered again`);
        if (unanswered.has(name)) unansweredDelivered++;
      }
      const seen = new Set([...names, ...(preReceived.get(qi) ?? [])]);
      const pre = preReceived.get(qi) ?? [];
      assert.equal(new Set(pre).size, pre.length, `q${qi}: no duplicate delivery before the crash`);
      for (const [name, target] of okd) {
        if (target !== qi) continue;
        if (!seen.has(name)) lost++;
        assert.ok(seen.has(name), `q${qi}: ${name} got OK but was never delivered`);
      }
      // FIFO per sender survives replay
      for (let s = 0; s < 4; s++) {
        const seq = names.filter((n) => n.startsWith(`s${s}:`)).map((n) => Number(n.split(':')[2]));
        assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `q${qi}: sender ${s} order`);
      }
      delivered += names.length;
      const meta = pendingMeta.get(q);
      if (meta) assert.ok(got.some((g) => g.msgId === meta), `q${qi}: the kept NMSG names a kept message`);
      if (notifyQ.has(qi)) assert.ok(pendingMeta.has(q), `q${qi}: a notify queue had a kept NMSG`);
    });
    assert.equal(lost, 0);
    assert.ok(delivered > 0);
    t.diagnostic(`after restart: ${delivered} delivered, ${unansweredDelivered} of them unanswered before the kill`);

    const h = await healthz(second.metricsPort);
    assert.equal(h.queues, 9);
    assert.equal(h.messages, 0);
    assert.equal(h.pendingNotifications, 0, 'every kept NMSG was acknowledged');

    // ---- every queue still takes SEND and delivers to its subscriber ----
    const sender = await client(second.address);
    for (const [qi, q] of [...queues, pq].entries()) {
      const k = sndKeys.get(qi);
      const notify = notifyQ.has(qi) || q === pq;
      await sender.send(q.sndId, bytes(`after-${qi}`), { notify, ...(k ? { sndAuthKey: k.privateKey } : {}) });
      const rc = drained[qi]!.rc;
      const e = await rc.nextEvent('MSG', 5000);
      const m = openMessage(crypto, q.rcvDhSecret, e as Extract<typeof e, { type: 'MSG' }>);
      assert.equal(m && text(m.body), `after-${qi}`);
      await rc.ack(q.rcvId, q.rcvAuth.privateKey, m!.msgId);
      if (notify) {
        const ne = await notifiers.get(q)!.nextEvent('NMSG', 5000);
        const meta = openMeta(crypto, q.ntf!.rcvNtfDhSecret, ne as Extract<typeof ne, { type: 'NMSG' }>);
        assert.deepEqual(meta?.msgId, m!.msgId, `q${qi}: live NMSG after the restart`);
      }
    }
    // a secured queue still refuses an unauthenticated SEND
    await assert.rejects(sender.send(queues[3]!.sndId, bytes('no key')), /AUTH/);
    // and a fresh connection can take over a subscription
    const late = await client(second.address);
    await late.subscribe(queues[7]!.rcvId, queues[7]!.rcvAuth.privateKey);
    await sender.send(queues[7]!.sndId, bytes('to-late'));
    const le = await late.nextEvent('MSG', 5000);
    assert.equal(text(openMessage(crypto, queues[7]!.rcvDhSecret, le as Extract<typeof le, { type: 'MSG' }>)!.body), 'to-late');
  } finally {
    for (const c of clients) c.close();
    for (const p of procs) await p.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
