-- keygate schema, version 1.
--
-- Keys are stored one-way: digest is SHA-256(key). prev_digest is the digest
-- replaced by the last rotation, accepted until grace_until.
CREATE TABLE keys (
    pos          bigserial   NOT NULL UNIQUE, -- creation order, list cursor
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    user_name    text        NOT NULL,
    rights       text[]      NOT NULL DEFAULT '{}',
    start        text        NOT NULL DEFAULT '',
    digest       bytea       NOT NULL UNIQUE CHECK (length(digest) = 32),
    imported     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL DEFAULT '',
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    rate_limit   bigint,
    rate_per     interval,
    quota_limit  bigint,
    quota_period text,
    prev_digest  bytea       CHECK (length(prev_digest) = 32),
    grace_until  timestamptz
);

CREATE UNIQUE INDEX keys_prev_digest_idx ON keys (prev_digest) WHERE prev_digest IS NOT NULL;
CREATE INDEX keys_user_idx ON keys (user_name, pos);
CREATE INDEX keys_name_idx ON keys (name, pos);

-- The audit log, newest first by seq.
CREATE TABLE audit (
    seq     bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    action  text        NOT NULL,
    key_id  text        NOT NULL DEFAULT '',
    details jsonb
);

CREATE INDEX audit_key_idx ON audit (key_id, seq);

-- Request counts per key per UTC day.
CREATE TABLE key_usage (
    key_id   text   NOT NULL,
    day      date   NOT NULL,
    requests bigint NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- Usage batches already applied, so a retried flush is not counted twice.
-- Rows older than a day are pruned.
CREATE TABLE usage_batches (
    id         text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_batches_applied_idx ON usage_batches (applied_at);

-- The change log behind cache invalidation across instances: every key
-- mutation appends a row (and NOTIFY keygate_changes, '<seq>') in its own
-- transaction. Listeners replay rows after the last sequence they applied.
-- Writers append under an advisory lock, so sequences become visible in order.
CREATE TABLE key_changes (
    seq     bigserial   PRIMARY KEY,
    key_id  text        NOT NULL,
    digests bytea[]     NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX key_changes_at_idx ON key_changes (at);

-- pruned_through is the largest sequence removed from key_changes: a listener
-- whose last applied sequence is below it may have missed changes.
CREATE TABLE key_changes_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    pruned_through bigint  NOT NULL DEFAULT 0
);

INSERT INTO key_changes_state DEFAULT VALUES;
