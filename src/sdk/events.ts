// A small typed event emitter (no node:events: the SDK runs in browsers and React Native).
export class Emitter<E extends Record<string, unknown>> {
  private readonly handlers: { [K in keyof E]?: Array<(e: E[K]) => void> } = {};

  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof E>(type: K, fn: (e: E[K]) => void): () => void {
    (this.handlers[type] ??= []).push(fn);
    return () => {
      this.handlers[type] = this.handlers[type]?.filter((h) => h !== fn);
    };
  }

  protected emit<K extends keyof E>(type: K, e: E[K]): void {
    for (const h of this.handlers[type] ?? []) h(e);
  }
}
