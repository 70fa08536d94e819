// One connection per server address, opened when first needed and again after
// it drops. A command that fails because its connection dropped is tried once
// more on a new connection: the commands the SDK sends are safe to repeat
// (a repeated SEND is recognized by the receiver's ratchet, NEW at worst
// leaves an unused queue behind).
import { ConnectionError } from '../core/client.ts';

interface Closable {
  close(): void;
  readonly connected: boolean;
}

export class ConnectionPool<C extends Closable> {
  private readonly conns = new Map<string, Promise<C>>();
  private closed = false;

  /** `connect` gets an `onClose` to pass to the client it opens. */
  constructor(private readonly connect: (address: string, onClose: () => void) => Promise<C>) {}

  get(address: string): Promise<C> {
    if (this.closed) return Promise.reject(new ConnectionError('client closed'));
    const open = this.conns.get(address);
    if (open) return open;
    const p: Promise<C> = this.connect(address, () => {
      if (this.conns.get(address) === p) this.conns.delete(address);
    });
    this.conns.set(address, p);
    p.then(
      (c) => {
        if (!c.connected && this.conns.get(address) === p) this.conns.delete(address);
      },
      () => {
        if (this.conns.get(address) === p) this.conns.delete(address);
      },
    );
    return p;
  }

  /** Runs `fn` on the address's connection; once more on a new one if that connection dropped. */
  async with<T>(address: string, fn: (c: C) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.get(address));
    } catch (e) {
      if (!(e instanceof ConnectionError) || this.closed) throw e;
      return fn(await this.get(address));
    }
  }

  /** Whether a connection to `address` is open (or opening). */
  has(address: string): boolean {
    return this.conns.has(address);
  }

  /** Closes the connections; until reopen(), commands fail and none is opened (a suspended client). */
  close(): void {
    this.closed = true;
    this.drop();
  }

  reopen(): void {
    this.closed = false;
  }

  /** Closes the connections but keeps the pool usable (the app goes to sleep). */
  drop(): void {
    for (const p of this.conns.values()) p.then((c) => c.close(), () => {});
    this.conns.clear();
  }
}
