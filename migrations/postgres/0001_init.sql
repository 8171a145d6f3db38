-- 0001: lanyard's schema on PostgreSQL, the same records as the bbolt
-- buckets. Records are stored as the JSON the bbolt engine writes (rec),
-- beside the columns that are indexed or updated in place.

CREATE TABLE certs (
    serial          bytea PRIMARY KEY,          -- the serial's bytes (bbolt key order)
    cn              text COLLATE "C" NOT NULL,  -- byte order, as bbolt's index
    profile         text COLLATE "C" NOT NULL,
    not_after       timestamptz NOT NULL,
    token_id        text UNIQUE,                -- second guard: one certificate per token
    previous_serial bytea,
    next_serial     bytea,
    renewed_at      timestamptz,                -- IssuedAt of the first renewal
    revocation      jsonb,                      -- NULL unless revoked
    rec             bytea NOT NULL              -- store.Cert as JSON (without next/revocation)
);
CREATE INDEX certs_by_cn ON certs (cn, serial);
CREATE INDEX certs_by_profile ON certs (profile, serial);
CREATE INDEX certs_by_expiry ON certs (not_after);
CREATE INDEX certs_by_previous ON certs (previous_serial) WHERE previous_serial IS NOT NULL;
CREATE INDEX certs_revoked ON certs (not_after) WHERE revocation IS NOT NULL;

CREATE TABLE tokens (
    id         text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    serial     text,
    revoked    boolean NOT NULL DEFAULT false,
    rec        bytea NOT NULL                   -- store.Token as JSON (immutable fields)
);
CREATE INDEX tokens_unused ON tokens (created_at) WHERE used_at IS NULL AND NOT revoked;

CREATE TABLE audit (
    id      bytea PRIMARY KEY,                  -- 8 bytes of Unix ns + 4 random: time order
    action  text NOT NULL,
    actor   text NOT NULL,
    subject text NOT NULL,
    rec     bytea NOT NULL
);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE web_sessions (
    key text PRIMARY KEY,
    rec bytea NOT NULL
);

-- One row: the CRL number (RFC 5280 5.2.3, only grows), the epoch of the
-- leader that last took one (fencing), and the revocation counter that
-- wakes the leader.
CREATE TABLE crl_state (
    id          int PRIMARY KEY CHECK (id = 1),
    crl_number  bigint NOT NULL DEFAULT 0,
    epoch       bigint NOT NULL DEFAULT 0,
    revocations bigint NOT NULL DEFAULT 0
);
INSERT INTO crl_state (id) VALUES (1);

-- Published CRLs, newest served by every replica. A CRL is stored only if
-- its number is above every stored one (see the engine's PublishCRL).
CREATE TABLE crls (
    number      bigint PRIMARY KEY,
    epoch       bigint NOT NULL,
    revocations bigint NOT NULL,                -- crl_state.revocations it covers
    der         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Leases (name 'leader': builds CRLs, syncs trust anchors). The epoch
-- grows each time the lease changes hands: the fencing token.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
