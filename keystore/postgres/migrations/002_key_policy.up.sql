-- keygate schema, version 2: per-key policy and the creator index.
--
-- allowed_ips holds canonical prefixes ('192.0.2.0/24'); empty = anywhere.
-- environments holds handler environment names; empty = only handlers
-- without one. created_by is indexed: revoking a key revokes the keys it
-- created, transitively.
ALTER TABLE keys
    ADD COLUMN allowed_ips  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN environments text[] NOT NULL DEFAULT '{}';

CREATE INDEX keys_created_by_idx ON keys (created_by, pos);

-- Limits shared by all keys of one run-as user, on top of each key's own.
-- Their usage is counted under the key id 'user:<name>' in key_usage.
CREATE TABLE user_limits (
    user_name    text        PRIMARY KEY,
    rate_limit   bigint,
    rate_per     interval,
    quota_limit  bigint,
    quota_period text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (rate_limit IS NOT NULL OR quota_limit IS NOT NULL)
);
