-- Claiming due connections across replicas, and failure backoff (schema version 2).
-- failures: consecutive failed syncs; retry_at: not claimable before (Unix microseconds).
ALTER TABLE connections ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN retry_at BIGINT;

-- claim_due reads only active rows whose last sync is older than the interval (or
-- NULL): a partial index on the last sync time finds them without reading the others.
CREATE INDEX connections_due ON connections (last_synced_at, retry_at) WHERE status = 'active';

UPDATE schema_version SET version = 2;
