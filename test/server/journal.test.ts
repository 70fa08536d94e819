// The journal's group commit with fsync (syncs held open and failed through
// the io seam), failed writes, failure() of the stores, a relay on a synced
// journal, and the repair commands as an operator runs them. Torn tails and
// corruption against the relay's records: test/relay/store.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import { openJournalQueueStore } from '../../src/relay/store/journal.ts';
import { MemoryQueueStore } from '../../src/relay/store/memory.ts';
import { Journal, type JournalCodec, type JournalOptions } from '../../src/server/journal.ts';
import { bytes, connect, newQueue, startRelay, tmpDir } from '../helpers.ts';
import { HushProcess } from '../process.ts';

const codec: JournalCodec<string> = {
  encode: (r) => Buffer.concat([Buffer.from([1]), Buffer.from(r)]),
  decode: (b) => (b[0] === 1 ? { ok: true, value: Buffer.from(b.subarray(1)).toString() } : { ok: false, error: 'bad tag' }),
};

/** A journal of strings whose live state is every record it holds. */
function openJournal(file: string, opts: Omit<JournalOptions, 'file'> = {}) {
  const records: string[] = [];
  const journal = new Journal({ file, ...opts }, codec, (r) => records.push(r), () => records);
  return {
    journal,
    records,
    add(r: string) {
      records.push(r);
      journal.append(r);
    },
  };
}

/** An io.sync that holds every sync until the test releases or fails it. */
function heldSyncs() {
  const calls: Array<{ fd: number; release(): void; fail(e: Error): void }> = [];
  const sync = (fd: number) => new Promise<void>((release, fail) => calls.push({ fd, release, fail }));
  return { calls, sync };
}

/** Whether a promise has settled, observable without awaiting it. */
function track(p: Promise<void> | void) {
  assert.ok(p instanceof Promise, 'with fsync, flush returns a promise');
  const s: { settled: boolean; error?: unknown; p: Promise<void> } = { settled: false, p };
  p.then(
    () => void (s.settled = true),
    (e) => {
      s.settled = true;
      s.error = e;
    },
  );
  return s;
}

/** One turn of the event loop: whatever was going to settle by itself has. */
const turn = () => new Promise<void>((r) => setImmediate(r));

function withDir(t: { after(f: () => void): void }) {
  const dir = tmpDir('hush-journal-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A journal with fsync on whose syncs the test releases. */
function heldJournal(t: { after(f: () => void): void }) {
  const file = path.join(withDir(t), 'j');
  const held = heldSyncs();
  return { file, held, j: openJournal(file, { fsync: true, io: { sync: held.sync } }) };
}

describe('journal reading', () => {
  test('a journal of several read chunks: records across their boundaries and larger than one load; a torn tail or corruption there is found', async (t) => {
    const file = path.join(withDir(t), 'j');
    const j = openJournal(file);
    const want: string[] = [];
    // ~13 MB over 4 MB chunks, at odd lengths so frames straddle the boundaries; one record of 5 MB
    for (let i = 0; i < 300; i++) want.push(`${i}:`.padEnd(30_011 + i, String.fromCharCode(97 + (i % 26))));
    want.splice(150, 0, 'big'.padEnd(5 << 20, 'x'));
    for (const r of want) j.add(r);
    j.journal.flush();
    await j.journal.close();
    const again = openJournal(file);
    assert.equal(again.journal.truncatedBytes, 0);
    assert.deepEqual(again.records, want);
    await again.journal.close();

    const size = fs.statSync(file).size;
    fs.appendFileSync(file, Buffer.alloc(5 << 20)); // zeros over more than a chunk: the data never reached the disk
    const zeros = openJournal(file);
    assert.equal(zeros.journal.truncatedBytes, 5 << 20);
    assert.deepEqual(zeros.records, want);
    await zeros.journal.close();
    assert.equal(fs.statSync(file).size, size);

    const data = fs.readFileSync(file);
    let at = 0;
    for (let i = 0; i < 200; i++) at += 8 + data.readUInt32BE(at);
    data[at + 8]! ^= 1;
    fs.writeFileSync(file, data);
    assert.throws(() => openJournal(file), (e: Error) => e.message.includes(`corrupt record at byte ${at} of ${size} (CRC mismatch)`));
  });
});

describe('journal compaction on open', () => {
  test('compacts when the live records take less than 1/compactRatio of the file, else not', async (t) => {
    const file = path.join(withDir(t), 'j');
    const j = openJournal(file);
    const all = Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(91, '.')); // 100-byte frames
    for (const r of all) j.add(r);
    j.journal.flush();
    await j.journal.close();
    const reopen = (live: string[]) => {
      const journal = new Journal({ file, compactMinBytes: 1, compactRatio: 4 }, codec, () => {}, () => live);
      const size = fs.statSync(file).size;
      journal.close();
      return size;
    };
    assert.equal(reopen(all), 10_000, 'all live');
    assert.equal(reopen(all.slice(0, 25)), 10_000, 'a quarter live');
    assert.equal(reopen(all.slice(0, 24)), 2_400, 'less than a quarter: compacted');
  });
});

describe('journal with fsync: group commit off the event loop', () => {
  test('a flush resolves only once a sync covering its records finished; the event loop runs meanwhile', async (t) => {
    const { file, held, j } = heldJournal(t);
    j.add('a');
    const p = track(j.journal.flush());
    assert.ok(fs.statSync(file).size > 0, 'written before the sync');
    assert.equal(held.calls.length, 1, 'one sync started');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    while (ticks < 3) await turn(); // timers fire: the event loop is not blocked by the sync
    clearInterval(timer);
    assert.equal(p.settled, false, 'not resolved before its sync');
    held.calls[0]!.release();
    await p.p;
    assert.equal(held.calls.length, 1);
    await j.journal.close();
  });

  test('flushes during a sync are covered by one next sync; a flush already covered joins the one in flight', async (t) => {
    const { file, held, j } = heldJournal(t);
    j.add('a');
    const p1 = track(j.journal.flush());
    const same = track(j.journal.flush()); // nothing new: the sync in flight covers it
    j.add('b');
    const p2 = track(j.journal.flush());
    j.add('c');
    j.add('d');
    const p3 = track(j.journal.flush());
    const sizeAll = fs.statSync(file).size;
    assert.equal(held.calls.length, 1, 'at most one sync in flight');

    held.calls[0]!.release();
    await p1.p;
    await same.p;
    assert.equal(held.calls.length, 2, 'the next sync starts when the first finishes');
    await turn();
    assert.equal(p2.settled || p3.settled, false, 'the later flushes wait for the next sync');
    assert.equal(fs.statSync(file).size, sizeAll, 'their records were written before it');

    held.calls[1]!.release();
    await Promise.all([p2.p, p3.p]);
    assert.equal(held.calls.length, 2, 'one sync for all the flushes that waited');
    await j.journal.flush(); // everything is synced: no sync needed
    assert.equal(held.calls.length, 2);
    await j.journal.close();
    assert.deepEqual(openJournal(file).records, ['a', 'b', 'c', 'd']);
  });

  test('a failing sync fails the flushes waiting on it, the ones waiting for the next, and every later one', async (t) => {
    const { held, j } = heldJournal(t);
    j.add('a');
    const p1 = track(j.journal.flush());
    j.add('b');
    const p2 = track(j.journal.flush());
    assert.equal(j.journal.failure(), undefined);
    held.calls[0]!.fail(new Error('EIO: i/o error'));
    await assert.rejects(p1.p, /journal sync failed: EIO: i\/o error/);
    await assert.rejects(p2.p, /journal sync failed/);
    assert.equal(held.calls.length, 1, 'no sync after a failed one');
    assert.equal(j.journal.failure(), 'journal sync failed: EIO: i/o error');
    j.add('c');
    assert.throws(() => j.journal.flush(), /journal sync failed/);
    await j.journal.close();
  });

  test('compaction and close with a sync in flight: the old file stays open until its sync ends, close waits', async (t) => {
    const { file, held, j } = heldJournal(t);
    for (let i = 0; i < 10; i++) j.add(`r${i}`);
    const p1 = track(j.journal.flush());
    const oldFd = held.calls[0]!.fd;
    j.records.splice(0, 8); // only the last two are live
    j.journal.compact();
    assert.ok(fs.statSync(file).size < 30, 'compacted');
    assert.doesNotThrow(() => fs.fstatSync(oldFd), 'the file being synced is not closed under its sync');
    await j.journal.flush();
    assert.equal(held.calls.length, 1, 'the compacted file is synced already: no sync for a flush of nothing new');

    j.add('after');
    const p2 = track(j.journal.flush());
    assert.equal(held.calls.length, 1, 'still one sync in flight');
    held.calls[0]!.release();
    await p1.p;
    assert.throws(() => fs.fstatSync(oldFd), /EBADF/, 'the old file is closed once its sync ended');
    assert.equal(held.calls.length, 2);
    assert.notEqual(held.calls[1]!.fd, oldFd, 'the next sync is of the new file');

    const closed = track(j.journal.close());
    await turn();
    assert.equal(closed.settled, false, 'close waits for the sync in flight');
    held.calls[1]!.release();
    await closed.p;
    assert.equal(p2.settled && p2.error, undefined);
    assert.deepEqual(openJournal(file).records, ['r8', 'r9', 'after']);
  });

  test('a real fdatasync: flushes resolve and the records are there after reopening', async (t) => {
    const file = path.join(withDir(t), 'j');
    const j = openJournal(file, { fsync: true });
    const flushes = [];
    for (let i = 0; i < 20; i++) {
      j.add(`r${i}`);
      flushes.push(j.journal.flush());
    }
    await Promise.all(flushes);
    await j.journal.close();
    assert.deepEqual(openJournal(file).records, Array.from({ length: 20 }, (_, i) => `r${i}`));
  });

  test('without fsync a flush is synchronous and never syncs', (t) => {
    const file = path.join(withDir(t), 'j');
    const held = heldSyncs();
    const j = openJournal(file, { io: { sync: held.sync } });
    j.add('a');
    assert.equal(j.journal.flush(), undefined);
    assert.equal(held.calls.length, 0);
    assert.deepEqual(openJournal(file).records, ['a']);
  });
});

describe('journal write failures and store failure()', () => {
  /** Writes normally until `failing` is set; then writes part of the data and throws. */
  function failingWrites() {
    const w = {
      failing: false,
      write(fd: number, data: Buffer, offset: number): number {
        if (!w.failing) return fs.writeSync(fd, data, offset);
        fs.writeSync(fd, data, offset, Math.min(5, data.length - offset));
        throw new Error('ENOSPC: no space left on device');
      },
    };
    return w;
  }

  test('a failed write cuts the file back to its last good length and fails every later flush', async (t) => {
    const file = path.join(withDir(t), 'j');
    const w = failingWrites();
    const j = openJournal(file, { io: { write: w.write } });
    j.add('a');
    j.journal.flush();
    const good = fs.statSync(file).size;
    w.failing = true;
    j.add('bb');
    assert.throws(() => j.journal.flush(), /journal write failed: ENOSPC/);
    assert.equal(fs.statSync(file).size, good, 'no partial frame left');
    assert.equal(j.journal.failure(), 'journal write failed: ENOSPC: no space left on device');
    w.failing = false;
    j.add('c');
    assert.throws(() => j.journal.flush(), /journal write failed/, 'memory is ahead of the file: no more flushes');
    await j.journal.close();
    const again = openJournal(file);
    assert.equal(again.journal.truncatedBytes, 0);
    assert.deepEqual(again.records, ['a']);
  });

  test('the stores report the journal failure; memory stores have none', async (t) => {
    const w = failingWrites();
    const relay = openJournalQueueStore({ dir: withDir(t), io: { write: w.write } }).store;
    const { store: ntf } = openJournalNtfStore(withDir(t), { io: { write: w.write } });
    assert.equal(relay.failure(), undefined);
    assert.equal(ntf.failure(), undefined);
    assert.equal(new MemoryQueueStore().failure(), undefined);
    assert.equal(new MemoryNtfStore().failure(), undefined);
    w.failing = true;
    relay.createQueue({ rcvId: bytes('r'), sndId: bytes('s'), rcvAuthKey: bytes('k'), rcvDhSecret: bytes('d'), suspended: false });
    await assert.rejects(relay.flush(), /journal write failed/);
    assert.match(relay.failure() ?? '', /^journal write failed: ENOSPC/);
    ntf.setCron('no such token', 0, 0); // any change is a record
    await assert.rejects(ntf.flush(), /journal write failed/);
    assert.match(ntf.failure() ?? '', /^journal write failed: ENOSPC/);
    await relay.close();
    await ntf.close();
  });

  test('a relay on a synced journal answers SENDs and keeps them', async (t) => {
    const dir = withDir(t);
    const relay = await startRelay({ store: openJournalQueueStore({ dir, fsync: true }).store });
    let running = true;
    t.after(() => (running ? relay.stop() : undefined));
    const c = await connect(relay.address);
    t.after(() => c.close());
    const q = await newQueue(c);
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.send(q.sndId, bytes(`m${i}`))));
    running = false;
    await relay.stop();
    const again = openJournalQueueStore({ dir }).store;
    assert.equal(again.messageCount(q.rcvId), 20);
    await again.close();
  });
});

describe('hush relay|ntf repair', () => {
  /** A journal written by `write(5)` (5 records), with the 3rd record's CRC broken. */
  async function corruptJournal(file: string, write: (n: number) => Promise<void>) {
    await write(5);
    const data = fs.readFileSync(file);
    let at = 0;
    for (let i = 0; i < 2; i++) at += 8 + data.readUInt32BE(at);
    data[at + 4]! ^= 0xff;
    fs.writeFileSync(file, data);
    return { at, size: data.length, data };
  }

  const hush = (args: string[], env: Record<string, string> = {}) => new HushProcess(args, env).result();

  test('the relay refuses a corrupt journal naming file, offset and the command; repair keeps the rest and it starts', async (t) => {
    const dir = withDir(t);
    assert.equal((await hush(['relay', 'init', '--dir', dir])).code, 0);
    const storeDir = path.join(dir, 'store');
    const file = path.join(storeDir, 'relay.journal');
    const { at, size, data } = await corruptJournal(file, async (n) => {
      const s = openJournalQueueStore({ dir: storeDir }).store;
      for (let i = 0; i < n; i++)
        s.createQueue({ rcvId: bytes(`r${i}`), sndId: bytes(`s${i}`), rcvAuthKey: bytes('k'), rcvDhSecret: bytes('d'), suspended: false });
      await s.close();
    });

    const env = { HUSH_RELAY_PORT: '0', HUSH_RELAY_METRICS_PORT: '0' };
    const refused = await hush(['relay', 'start', '--dir', dir], env);
    assert.equal(refused.code, 1, refused.stdout);
    assert.ok(refused.stderr.includes(`${file}: corrupt record at byte ${at} of ${size}`), refused.stderr);
    assert.ok(refused.stderr.includes(`hush relay repair --dir ${dir}`), refused.stderr);

    const r = await hush(['relay', 'repair', '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const kept = `${file}.corrupt-${at}`;
    assert.ok(r.stdout.includes(`corrupt record at byte ${at}; kept the ${size - at} bytes from there on in ${kept}`), r.stdout);
    assert.ok(r.stdout.includes('with 2 records'), r.stdout);
    assert.deepEqual(fs.readFileSync(kept), data.subarray(at));

    const again = await hush(['relay', 'repair', '--dir', dir]);
    assert.match(again.stdout, /no corrupt record, nothing changed/);

    const relay = new HushProcess(['relay', 'start', '--dir', dir], env);
    try {
      await relay.waitFor(/relay address: /);
    } finally {
      await relay.dispose();
    }
    const s = openJournalQueueStore({ dir: storeDir }).store;
    assert.equal(s.counts().queues, 2, 'the records before the bad one');
    await s.close();
  });

  test('the notification server: open refused, repair sets the rest aside', async (t) => {
    const dir = withDir(t);
    const storeDir = path.join(dir, 'store');
    const file = path.join(storeDir, 'ntf.journal');
    const { at, size } = await corruptJournal(file, async (n) => {
      const { store } = openJournalNtfStore(storeDir);
      for (let i = 0; i < n; i++) store.setCron(`t${i}`, 0, 0);
      await store.close();
    });
    assert.throws(() => openJournalNtfStore(storeDir, { repairCommand: 'hush ntf repair --dir D' }), (e: Error) => {
      assert.ok(e.message.includes(`${file}: corrupt record at byte ${at} of ${size}`), e.message);
      assert.ok(e.message.includes('hush ntf repair --dir D'), e.message);
      return true;
    });
    const r = await hush(['ntf', 'repair', '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`kept the ${size - at} bytes from there on in ${file}.corrupt-${at}`), r.stdout);
    const { journal } = openJournalNtfStore(storeDir);
    assert.equal(journal.bytes, at);
    await journal.close();
  });
});
