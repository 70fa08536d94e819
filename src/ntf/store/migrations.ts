// Schema migrations of the NTF server's PostgreSQL store, in order: version N
// is the N-th string. Each runs once, inside the migration transaction, with
// `search_path` set to the store's schema, so names are unqualified here.
// Append new versions; never edit one that has shipped.
export const NTF_MIGRATIONS: readonly string[] = [
  // 1: tokens, subscriptions and the last notification per (token, subscription).
  `
  CREATE TABLE tokens (
    token_id bytea PRIMARY KEY,
    provider text NOT NULL,
    device_token bytea NOT NULL,
    tkn_auth_key bytea NOT NULL,
    tkn_dh_key bytea NOT NULL,
    srv_dh_key bytea NOT NULL,
    tkn_dh_secret bytea NOT NULL,
    status text NOT NULL,
    invalid_reason text NULL,
    code bytea NOT NULL,
    cron_minutes int NOT NULL DEFAULT 0,
    cron_next_at bigint NOT NULL DEFAULT 0,
    CHECK ((status = 'INVALID') = (invalid_reason IS NOT NULL))
  );

  CREATE TABLE subscriptions (
    sub_id bytea PRIMARY KEY,
    token_id bytea NOT NULL REFERENCES tokens (token_id) ON DELETE CASCADE,
    relay text NOT NULL,
    notifier_id bytea NOT NULL,
    ntf_auth_key bytea NOT NULL,
    status text NOT NULL,
    UNIQUE (relay, notifier_id)
  );
  -- for ON DELETE CASCADE from tokens
  CREATE INDEX subscriptions_token_id ON subscriptions (token_id);

  -- seq: arrival order, which the memory store keeps (ts may tie or go back).
  CREATE SEQUENCE last_notifications_seq;
  CREATE TABLE last_notifications (
    token_id bytea NOT NULL REFERENCES tokens (token_id) ON DELETE CASCADE,
    sub_id bytea NOT NULL REFERENCES subscriptions (sub_id) ON DELETE CASCADE,
    nonce bytea NOT NULL,
    sealed_meta bytea NOT NULL,
    ts bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (token_id, sub_id)
  );
  -- for ON DELETE CASCADE from subscriptions
  CREATE INDEX last_notifications_sub_id ON last_notifications (sub_id);
  `,
  // 2: whether a push is still owed for a last notification. Kept before this
  // version: owed if the token is ACTIVE, so the first start pushes them once.
  `
  ALTER TABLE last_notifications ADD COLUMN pushed boolean NOT NULL DEFAULT false;
  UPDATE last_notifications l SET pushed = true FROM tokens t WHERE t.token_id = l.token_id AND t.status <> 'ACTIVE';
  ALTER TABLE last_notifications ALTER COLUMN pushed DROP DEFAULT;
  `,
  // 3: token expiry. status_at: when the status last changed (ms); 0 for
  // tokens stored before, stamped by the server's first expiry sweep.
  // verified: the token has been ACTIVE; assumed of those stored before.
  `
  ALTER TABLE tokens ADD COLUMN status_at bigint NOT NULL DEFAULT 0;
  ALTER TABLE tokens ADD COLUMN verified boolean NOT NULL DEFAULT true;
  ALTER TABLE tokens ALTER COLUMN status_at DROP DEFAULT;
  ALTER TABLE tokens ALTER COLUMN verified DROP DEFAULT;
  `,
  // 4: several instances on one database (docs/ntf-cluster.md). leases: who
  // holds a relay's service subscription (name 'relay:' + address) or a
  // cluster-wide duty ('duty:cron'), until expires_at (the database's clock);
  // link_up: the holder's link to that relay is up, for SCHK on the others.
  // instances: members by heartbeat, for each one's fair share of the relays.
  `
  CREATE TABLE leases (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    link_up boolean NOT NULL DEFAULT false,
    taken_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE instances (
    instance_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL
  );
  `,
];
