// A port for a server that tests and benchmarks kill and restart on the same port.
import net from 'node:net';

/**
 * A free loopback port for a server that is restarted on the same port. It
 * is drawn below Linux's ephemeral range (32768 up), where the kernel never
 * puts the local end of an outgoing connection: a port 0 pick could be taken
 * by some client's connection between a stop and the restart (EADDRINUSE).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}
