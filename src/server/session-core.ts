// The command loop every Hush protocol session shares: decode a transmission,
// answer it (an error name becomes ERR), count commands and errors, and run
// what a command triggers after its reply. A protocol adds only its handlers.
import type { Parsed } from '../core/encoding.ts';
import type { Transmission } from '../core/transmission.ts';
import type { Counter } from 'prom-client';
import type { Session, SessionHandler } from './protocol-server.ts';

/** A protocol's command and response codecs, and the counters its sessions feed. */
export interface SessionProtocol<C extends { type: string }, R extends { type: string }, E extends string> {
  decodeCommand(b: Uint8Array): Parsed<C>;
  /** The decode error of a well-formed command the protocol does not know: answered UNKNOWN, any other SYNTAX. */
  unknownCommand: string;
  encodeResponse(r: R | { type: 'ERR'; error: E | 'SYNTAX' | 'UNKNOWN' }): Uint8Array;
  metrics: { commands: Counter<'command'>; errors: Counter<'error'> };
}

const EMPTY = new Uint8Array(0);

/**
 * The error for a transmission whose shape does not fit its command: an entity
 * ID required or forbidden, and an authenticator required, forbidden or (auth
 * omitted) either. Undefined if it fits.
 */
export function shapeError(
  t: Transmission,
  entity: boolean,
  auth?: boolean,
): 'NO_ENTITY' | 'HAS_ENTITY' | 'NO_AUTH' | 'HAS_AUTH' | undefined {
  if (entity !== t.entityId.length > 0) return entity ? 'NO_ENTITY' : 'HAS_ENTITY';
  if (auth !== undefined && auth !== t.auth.length > 0) return auth ? 'NO_AUTH' : 'HAS_AUTH';
  return undefined;
}

/**
 * One client connection of a protocol server. Handlers run synchronously and
 * return a response, or an error by name; work they `defer` (deliveries,
 * pushes of kept notifications) runs after the reply is queued, so what a
 * command triggers reaches the client after its reply.
 */
export abstract class ProtocolSession<C extends { type: string }, R extends { type: string }, E extends string> implements SessionHandler {
  private deferred: (() => void)[] = [];

  constructor(
    private readonly protocol: SessionProtocol<C, R, E>,
    protected readonly session: Session,
  ) {}

  protected abstract handle(t: Transmission, c: C): R | E;

  transmission(t: Transmission): void {
    const c = this.protocol.decodeCommand(t.command);
    if (!c.ok) return this.answer(t.corrId, t.entityId, c.error === this.protocol.unknownCommand ? 'UNKNOWN' : 'SYNTAX');
    this.protocol.metrics.commands.inc({ command: c.value.type });
    this.answer(t.corrId, t.entityId, this.handle(t, c.value));
    const deferred = this.deferred;
    this.deferred = [];
    for (const run of deferred) run();
  }

  malformed(corrId: Uint8Array): void {
    this.answer(corrId, EMPTY, 'SYNTAX');
  }

  closed(): void {}

  /** Sends an event (no corrId) about `entityId`. */
  event(entityId: Uint8Array, r: R): void {
    this.session.send(EMPTY, entityId, this.protocol.encodeResponse(r));
  }

  /** Runs `work` once the current command's reply is queued. */
  protected defer(work: () => void): void {
    this.deferred.push(work);
  }

  /**
   * The entity `t` names if `t` carries a valid authenticator for its key. An
   * unknown entity is checked alike (against no key) and fails: no existence oracle.
   */
  protected authorized<T>(t: Transmission, entity: T | undefined, key: (e: T) => Uint8Array | undefined, scope: string): T | undefined {
    return this.session.verify(t, entity === undefined ? undefined : key(entity), scope) ? entity : undefined;
  }

  private answer(corrId: Uint8Array, entityId: Uint8Array, r: R | E | 'SYNTAX' | 'UNKNOWN'): void {
    if (typeof r !== 'string') return this.session.send(corrId, entityId, this.protocol.encodeResponse(r));
    this.protocol.metrics.errors.inc({ error: r });
    this.session.send(corrId, entityId, this.protocol.encodeResponse({ type: 'ERR', error: r }));
  }
}
