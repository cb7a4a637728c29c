-- The claims a reconnect must carry (schema version 3): with status 'needs_reconnect',
-- the decoded claims JSON of a Continuous Access Evaluation claims challenge that the
-- refresh could not satisfy, which the admin's authorize request must send again.
-- NULL when there are none, and for every row written before (no claims); the store
-- checks it on write and read (1 to 16 KiB, no control characters), and a reconnect
-- clears it with the status.
ALTER TABLE connections ADD COLUMN status_claims TEXT;

UPDATE schema_version SET version = 3;
