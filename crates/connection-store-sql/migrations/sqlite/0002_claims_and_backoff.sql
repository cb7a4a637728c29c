-- Claiming due connections across replicas, and failure backoff (schema version 2).
-- failures: consecutive failed syncs; retry_at: not claimable before (Unix microseconds).
ALTER TABLE connections ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN retry_at BIGINT;

-- claim_due reads the active rows never synced (NULL) or synced before the interval's
-- cutoff: two ranges of this index (SQLite's multi-index OR, PostgreSQL's BitmapOr),
-- not the whole table. (A partial index WHERE status = 'active' is not used for the OR
-- by SQLite.)
CREATE INDEX connections_due ON connections (status, last_synced_at);

UPDATE schema_version SET version = 2;
