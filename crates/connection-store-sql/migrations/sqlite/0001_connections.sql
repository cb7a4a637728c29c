-- Linked Microsoft 365 accounts. Times are Unix microseconds (UTC); tokens and cursors
-- are AES-256-GCM ciphertexts (format byte, 12-byte nonce, ciphertext, tag) with the
-- id of the key that encrypted them.
CREATE TABLE schema_version (
    version BIGINT NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);

CREATE TABLE connections (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT    NOT NULL UNIQUE,
    owner_id           TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    name_folded        TEXT    NOT NULL,
    tenant_id          TEXT    NOT NULL,
    cloud              TEXT    NOT NULL,
    admin_object_id    TEXT    NOT NULL,
    admin_username     TEXT    NOT NULL,
    admin_display_name TEXT,
    scopes             TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    status_reason      TEXT,
    status_since       BIGINT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    last_synced_at     BIGINT,
    revision           BIGINT  NOT NULL,
    token_version      BIGINT  NOT NULL,
    token_key_id       TEXT    NOT NULL,
    token_ciphertext   BLOB    NOT NULL,
    lease_holder       TEXT,
    lease_expires_at   BIGINT,
    CONSTRAINT connections_owner_tenant UNIQUE (owner_id, tenant_id),
    CONSTRAINT connections_owner_name UNIQUE (owner_id, name_folded)
);
CREATE INDEX connections_owner_created ON connections (owner_id, created_at, seq);

CREATE TABLE cursors (
    connection_id TEXT   NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    cursor_key    TEXT   NOT NULL,
    key_id        TEXT   NOT NULL,
    ciphertext    BLOB   NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, cursor_key)
);
