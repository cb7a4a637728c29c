-- The directory mirror, beside the connection store (`connections`): per connection, the
-- users, groups and direct memberships of its last committed sync and the links the next
-- sync continues from, plus the changes of the sync in progress (staging).
-- Ids and sort keys use the "C" collation: byte order, the order of SQLite and of Rust
-- strings, whatever the database's locale.

-- One row per mirrored connection: the committed links (AES-256-GCM under the store's key
-- ring), the totals after the last commit, and the sync in progress.
CREATE TABLE mirror_state (
    connection_id     TEXT    NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    links_key_id      TEXT,
    links_ciphertext  BYTEA,
    commits           BIGINT  NOT NULL DEFAULT 0,
    committed_at      BIGINT,
    committed_kind    TEXT,
    users_total       BIGINT  NOT NULL DEFAULT 0,
    groups_total      BIGINT  NOT NULL DEFAULT 0,
    memberships_total BIGINT  NOT NULL DEFAULT 0,
    -- The last sync begun; its kind while it is open (NULL once committed), and how many
    -- changes it has staged.
    sync_id           BIGINT  NOT NULL DEFAULT 0,
    sync_kind         TEXT,
    staged            BIGINT  NOT NULL DEFAULT 0
);

-- The user as JSON (`data`) plus the columns the web app reads and searches.
-- `sort_key` is the shown name in lower case; `search_text` the searched fields in lower
-- case, one per line.
CREATE TABLE mirror_users (
    connection_id       TEXT    NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    id                  TEXT COLLATE "C"    NOT NULL,
    sort_key            TEXT COLLATE "C"    NOT NULL,
    search_text         TEXT    NOT NULL,
    display_name        TEXT,
    mail                TEXT,
    user_principal_name TEXT,
    given_name          TEXT,
    surname             TEXT,
    job_title           TEXT,
    department          TEXT,
    company_name        TEXT,
    account_enabled     BOOLEAN,
    user_type           TEXT,
    data                TEXT    NOT NULL,
    PRIMARY KEY (connection_id, id)
);
CREATE INDEX mirror_users_by_name ON mirror_users (connection_id, sort_key, id);

CREATE TABLE mirror_groups (
    connection_id TEXT NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    id            TEXT COLLATE "C" NOT NULL,
    sort_key      TEXT COLLATE "C" NOT NULL,
    display_name  TEXT,
    mail          TEXT,
    data          TEXT NOT NULL,
    PRIMARY KEY (connection_id, id)
);
CREATE INDEX mirror_groups_by_name ON mirror_groups (connection_id, sort_key, id);

-- Direct memberships; `member_type` is the short type name (`user`, `group`, ...).
CREATE TABLE mirror_memberships (
    connection_id TEXT NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    group_id      TEXT COLLATE "C" NOT NULL,
    member_id     TEXT COLLATE "C" NOT NULL,
    member_type   TEXT NOT NULL,
    PRIMARY KEY (connection_id, group_id, member_id)
);
CREATE INDEX mirror_memberships_by_member ON mirror_memberships (connection_id, member_id, group_id);

-- A delta sync in progress: its changes in order, replayed at commit.
CREATE TABLE mirror_staged (
    connection_id TEXT   NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    sync_id       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    kind          TEXT   NOT NULL,
    object_id     TEXT COLLATE "C"   NOT NULL,
    member_id     TEXT COLLATE "C",
    member_type   TEXT,
    data          TEXT,
    PRIMARY KEY (connection_id, sync_id, seq)
);

-- A snapshot sync in progress (full import, resync): the directory it has seen so far,
-- diffed against the mirror at commit.
CREATE TABLE mirror_staged_users (
    connection_id       TEXT    NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    sync_id             BIGINT  NOT NULL,
    id                  TEXT COLLATE "C"    NOT NULL,
    sort_key            TEXT COLLATE "C"    NOT NULL,
    search_text         TEXT    NOT NULL,
    display_name        TEXT,
    mail                TEXT,
    user_principal_name TEXT,
    given_name          TEXT,
    surname             TEXT,
    job_title           TEXT,
    department          TEXT,
    company_name        TEXT,
    account_enabled     BOOLEAN,
    user_type           TEXT,
    data                TEXT    NOT NULL,
    PRIMARY KEY (connection_id, sync_id, id)
);

CREATE TABLE mirror_staged_groups (
    connection_id TEXT   NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    sync_id       BIGINT NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    sort_key      TEXT COLLATE "C"   NOT NULL,
    display_name  TEXT,
    mail          TEXT,
    data          TEXT   NOT NULL,
    PRIMARY KEY (connection_id, sync_id, id)
);

CREATE TABLE mirror_staged_memberships (
    connection_id TEXT   NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    sync_id       BIGINT NOT NULL,
    group_id      TEXT COLLATE "C"   NOT NULL,
    member_id     TEXT COLLATE "C"   NOT NULL,
    member_type   TEXT   NOT NULL,
    PRIMARY KEY (connection_id, sync_id, group_id, member_id)
);
