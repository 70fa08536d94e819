// Shared by the provider tests: a clock tests can move, JWT reading, and the
// providers a test makes, closed with their test server at its end.
import type { TestContext } from 'node:test';

/** A clock tests can move; providers and servers share it. */
export function testClock() {
  const c = { offset: 0, now: () => Date.now() + c.offset };
  return c;
}

export const decodeJwt = (jwt: string) => {
  const [h, c] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), claims: JSON.parse(Buffer.from(c!, 'base64url').toString()) };
};

/** `make` as a factory whose providers, and then `server`, are closed when the test ends. */
export function providersOf<C, P extends { close(): Promise<void> }>(t: TestContext, server: { close(): Promise<void> }, make: (over: Partial<C>) => P) {
  const providers: P[] = [];
  t.after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await server.close();
  });
  return (over: Partial<C> = {}): P => {
    const p = make(over);
    providers.push(p);
    return p;
  };
}
