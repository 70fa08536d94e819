// The timers of delays a test drives on its own clock (push retries, relay
// reconnects): the real ones unless the server is given others.
export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(timer: unknown): void;
}

export const REAL_TIMERS: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};
