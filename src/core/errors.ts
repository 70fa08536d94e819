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
  'KEY', // a public key that is all-zero or of low order
  'RATE', // too many creations from this connection or address: try again later
  'PASSWORD', // the server needs a creation password, and this one is missing or wrong
  'BUSY', // too many commands pending on this connection
  'INTERNAL',
] as const;

