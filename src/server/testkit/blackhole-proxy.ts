// A TCP proxy on loopback that can silently blackhole the connections it
// carries: bytes stop flowing both ways with no FIN and no RST, as a NAT
// timeout or a network partition does, while new connections still pass.
// Tests and the faults benchmark put it on a link to prove the link's
// liveness probes notice.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export class BlackholeProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<{ a: net.Socket; b: net.Socket; dead: boolean }>();
  port = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {
    this.server = net.createServer((a) => this.accept(a));
  }

  async listen(port = 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', resolve);
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  /** Connections accepted whose client side is still open. */
  get connections(): number {
    let n = 0;
    for (const p of this.pairs) if (!p.a.destroyed) n++;
    return n;
  }

  /** While set, new connections are silent from the start too: a network partition. */
  partitioned = false;

  private accept(a: net.Socket): void {
    const b = net.connect(this.targetPort, this.targetHost);
    const pair = { a, b, dead: this.partitioned };
    this.pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (d) => {
        if (!pair.dead) to.write(d);
      });
    forward(a, b);
    forward(b, a);
    // A blackholed pair says nothing when one side goes: the other must find out by itself.
    for (const s of [a, b]) {
      s.on('error', () => {});
      s.on('close', () => {
        if (!pair.dead) {
          a.destroy();
          b.destroy();
        }
        if (a.destroyed && b.destroyed) this.pairs.delete(pair);
      });
    }
  }

  /** Every open connection goes silent (no FIN, no RST); later connections pass. */
  blackhole(): number {
    let n = 0;
    for (const p of this.pairs) {
      if (!p.dead) n++;
      p.dead = true;
    }
    return n;
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.a.destroy();
      p.b.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
