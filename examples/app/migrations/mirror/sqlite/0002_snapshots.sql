-- Snapshots: a full import (or resync) writes its rows once, under a snapshot of its own,
-- which becomes the connection's mirror when it commits; readers see only the committed
-- snapshot (`mirror_state.snapshot`). Before, a snapshot was staged and copied into the
-- mirror at commit, writing every row twice (a 100,000-user import spent a quarter of its
-- time on the copy). The rows also keep only the columns a query reads: the rest is in
-- `data`, and a row as an index entry is keyed by a number, not by the connection's id.
--
-- The mirror is a copy of the directory: its old rows and links go, so the next sync of
-- each connection is a full import.

DROP TABLE mirror_staged_memberships;
DROP TABLE mirror_staged_groups;
DROP TABLE mirror_staged_users;
DROP TABLE mirror_memberships;
DROP TABLE mirror_groups;
DROP TABLE mirror_users;
DELETE FROM mirror_staged;

UPDATE mirror_state SET links_key_id = NULL, links_ciphertext = NULL, committed_kind = NULL,
    users_total = 0, groups_total = 0, memberships_total = 0, sync_kind = NULL, staged = 0;

-- The committed snapshot (NULL before the first commit).
ALTER TABLE mirror_state ADD COLUMN snapshot BIGINT;

-- Every snapshot of a connection: the committed one, the one a sync in progress writes,
-- and those that wait to be deleted.
CREATE TABLE mirror_snapshots (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT    NOT NULL REFERENCES mirror_state (connection_id) ON DELETE CASCADE,
    sync_id       BIGINT  NOT NULL
);
CREATE INDEX mirror_snapshots_by_connection ON mirror_snapshots (connection_id);

-- The user as JSON (`data`) plus the columns the mirror's queries read:
-- `sort_key` is the shown name in lower case; `search_text` the searched fields in lower
-- case, one per line.
CREATE TABLE mirror_users (
    snapshot        BIGINT  NOT NULL REFERENCES mirror_snapshots (id) ON DELETE CASCADE,
    id              TEXT    NOT NULL,
    sort_key        TEXT    NOT NULL,
    search_text     TEXT    NOT NULL,
    account_enabled BOOLEAN,
    user_type       TEXT,
    data            TEXT    NOT NULL,
    PRIMARY KEY (snapshot, id)
);
CREATE INDEX mirror_users_by_name ON mirror_users (snapshot, sort_key, id);

CREATE TABLE mirror_groups (
    snapshot BIGINT NOT NULL REFERENCES mirror_snapshots (id) ON DELETE CASCADE,
    id       TEXT   NOT NULL,
    sort_key TEXT   NOT NULL,
    data     TEXT   NOT NULL,
    PRIMARY KEY (snapshot, id)
);
CREATE INDEX mirror_groups_by_name ON mirror_groups (snapshot, sort_key, id);

-- Direct memberships; `member_type` is the short type name (`user`, `group`, ...).
CREATE TABLE mirror_memberships (
    snapshot    BIGINT NOT NULL REFERENCES mirror_snapshots (id) ON DELETE CASCADE,
    group_id    TEXT   NOT NULL,
    member_id   TEXT   NOT NULL,
    member_type TEXT   NOT NULL,
    PRIMARY KEY (snapshot, group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX mirror_memberships_by_member ON mirror_memberships (snapshot, member_id, group_id);
