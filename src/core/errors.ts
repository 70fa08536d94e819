// Errors every Hush protocol shares; each protocol adds its own.
export const COMMON_ERRORS = [
  'SYNTAX', // a transmission or command is malformed
  'UNKNOWN', // unknown command tag
  'NO_AUTH', // the command needs an authenticator
  'HAS_AUTH', // the command must not carry one
  'NO_ENTITY', // the command needs an entity ID
  'HAS_ENTITY', // the command must not carry one
  'PROHIBITED', // not allowed in this state or on this connection
  'AUTH', // unknown entity or wrong key: answered alike, on purpose
  'QUOTA', // a limit was reached
  'BUSY', // too many commands pending on this connection
  'INTERNAL',
] as const;

export type CommonError = (typeof COMMON_ERRORS)[number];
