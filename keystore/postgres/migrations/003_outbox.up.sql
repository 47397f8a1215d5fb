-- keygate schema, version 3: the webhook outbox.
--
-- One row per event and destination, kept from the event until the
-- destination accepts it. Instances claim due rows with FOR UPDATE SKIP
-- LOCKED and move next_at to the end of a lease, so each delivery is sent
-- by one instance at a time. dedupe, when set, is unique: instances that
-- notice the same condition (a key about to expire) enqueue it once.
-- Bodies never hold a secret; signatures are made when sending.
CREATE TABLE webhook_outbox (
    seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           text        NOT NULL UNIQUE,
    dedupe       text        UNIQUE,
    target       text        NOT NULL,
    type         text        NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    next_at      timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    delivered_at timestamptz
);

CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_at, seq) WHERE delivered_at IS NULL;
