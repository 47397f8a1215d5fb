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
