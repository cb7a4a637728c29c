//! Tokens and cursors at rest: AES-256-GCM with the record's identity as associated data,
//! key ids and rotation; every failure is a typed error, never a wrong token.

mod common;

use std::sync::Arc;

use common::{TempDir, key, open_sqlite, raw_sqlite, ring, secret, seeded};
use connection_store::{
    ConnectionStore, CursorKey, ExposeSecret, StoreError, SystemClock, TokenVersion,
};
use connection_store_sql::KeyRing;

async fn token_blob(
    raw: &sqlx::SqlitePool,
    id: connection_store::ConnectionId,
) -> (String, Vec<u8>) {
    sqlx::query_as("SELECT token_key_id, token_ciphertext FROM connections WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(raw)
        .await
        .expect("token row")
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Corrupt { what: found, .. }) => assert!(found.contains(what), "{found}"),
        other => panic!("expected Corrupt({what}), got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_and_cursors_are_not_stored_in_plaintext_and_each_write_has_a_fresh_nonce() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let (owner, id) = seeded(&store, "rt-plaintext-marker-1").await;
    let raw = raw_sqlite(&path).await;
    let (key_id, first) = token_blob(&raw, id).await;
    assert_eq!(key_id, "test-1");
    store
        .replace_token(
            &owner,
            id,
            TokenVersion::FIRST,
            secret("rt-plaintext-marker-1"),
        )
        .await
        .expect("replace");
    let (_, second) = token_blob(&raw, id).await;
    assert_ne!(first[1..13], second[1..13], "same token, new nonce");
    let writer = common::writer_lease(&store, &owner, id).await;
    store
        .save_cursor(
            &owner,
            id,
            &writer,
            &CursorKey::users(),
            secret("https://graph.microsoft.com/delta-marker"),
        )
        .await
        .expect("cursor");
    store.close().await;
    raw.close().await;
    let mut bytes = std::fs::read(&path).expect("db");
    if let Ok(wal) = std::fs::read(dir.file("store.db-wal")) {
        bytes.extend(wal);
    }
    for marker in [&b"plaintext-marker"[..], b"delta-marker"] {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext found on disk"
        );
    }
}

#[tokio::test]
async fn wrong_key_under_the_same_id_is_corrupt_never_a_token() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let (owner, id) = seeded(&store, "rt-1").await;
    let writer = common::writer_lease(&store, &owner, id).await;
    store
        .save_cursor(&owner, id, &writer, &CursorKey::users(), secret("delta"))
        .await
        .expect("cursor");
    store.close().await;
    let (kid, wrong) = key("test-1", 9);
    let reopened = open_sqlite(&path, KeyRing::new(kid, wrong), Arc::new(SystemClock)).await;
    assert_corrupt(
        reopened.load_token(&owner, id).await,
        "does not authenticate",
    );
    assert_corrupt(
        reopened.load_cursor(&owner, id, &CursorKey::users()).await,
        "does not authenticate",
    );
    // The record itself is still readable, so the service can show "reconnect needed".
    assert!(reopened.get(&owner, id).await.is_ok());
}

#[tokio::test]
async fn missing_key_is_a_missing_key_error_naming_the_key_id() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let (owner, id) = seeded(&store, "rt-1").await;
    store.close().await;
    let (kid, other) = key("test-2", 7);
    let reopened = open_sqlite(&path, KeyRing::new(kid, other), Arc::new(SystemClock)).await;
    match reopened.load_token(&owner, id).await {
        Err(StoreError::MissingKey { id: found, key_id }) => {
            assert_eq!(found, id);
            assert_eq!(key_id, "test-1");
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_or_truncated_ciphertexts_are_corrupt() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let raw = raw_sqlite(&path).await;
    let (owner, id) = seeded(&store, "rt-1").await;
    let (_, blob) = token_blob(&raw, id).await;
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut body_flipped = blob.clone();
    body_flipped[14] ^= 0x80;
    for (bad, what) in [
        (flipped, "does not authenticate"),
        (body_flipped, "does not authenticate"),
        (blob[..20].to_vec(), "malformed"),
        (Vec::new(), "malformed"),
        ([&[2u8][..], &blob[1..]].concat(), "malformed"),
    ] {
        sqlx::query("UPDATE connections SET token_ciphertext = $1 WHERE id = $2")
            .bind(&bad)
            .bind(id.to_string())
            .execute(&raw)
            .await
            .expect("tamper");
        assert_corrupt(store.load_token(&owner, id).await, what);
    }
}

#[tokio::test]
async fn ciphertext_copied_to_another_connection_or_cursor_key_is_corrupt() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let raw = raw_sqlite(&path).await;
    let (owner, victim) = seeded(&store, "rt-victim").await;
    let attacker_tenant = uuid::Uuid::new_v4().to_string();
    let attacker = store
        .create(
            &owner,
            connection_store::testkit::sample_connection(
                "attacker",
                &attacker_tenant,
                "rt-attacker",
            ),
        )
        .await
        .expect("create")
        .id;
    // Token of `victim` copied onto `attacker` (same owner, same key): refused.
    sqlx::query(
        "UPDATE connections SET token_ciphertext = (SELECT token_ciphertext FROM connections WHERE id = $1) WHERE id = $2",
    )
    .bind(victim.to_string())
    .bind(attacker.to_string())
    .execute(&raw)
    .await
    .expect("copy");
    assert_corrupt(
        store.load_token(&owner, attacker).await,
        "does not authenticate",
    );
    assert_eq!(
        store
            .load_token(&owner, victim)
            .await
            .expect("victim intact")
            .token
            .expose_secret(),
        "rt-victim"
    );

    // A users cursor copied to the groups key of the same connection: refused.
    let writer = common::writer_lease(&store, &owner, victim).await;
    store
        .save_cursor(
            &owner,
            victim,
            &writer,
            &CursorKey::users(),
            secret("delta-users"),
        )
        .await
        .expect("save");
    sqlx::query(
        "INSERT INTO cursors (connection_id, cursor_key, key_id, ciphertext, updated_at) \
         SELECT connection_id, 'groups', key_id, ciphertext, updated_at FROM cursors WHERE connection_id = $1 AND cursor_key = 'users'",
    )
    .bind(victim.to_string())
    .execute(&raw)
    .await
    .expect("copy cursor");
    assert_corrupt(
        store
            .load_cursor(&owner, victim, &CursorKey::groups())
            .await,
        "does not authenticate",
    );

    // The row moved to another owner (owner column rewritten): refused.
    sqlx::query("UPDATE connections SET owner_id = 'someone-else' WHERE id = $1")
        .bind(victim.to_string())
        .execute(&raw)
        .await
        .expect("move");
    let thief = connection_store::OwnerId::new("someone-else");
    assert_corrupt(
        store.load_token(&thief, victim).await,
        "does not authenticate",
    );
}

#[tokio::test]
async fn rotated_key_ring_reads_old_records_and_writes_with_the_new_key() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let (owner, id) = seeded(&store, "rt-old-key").await;
    let writer = common::writer_lease(&store, &owner, id).await;
    store
        .save_cursor(
            &owner,
            id,
            &writer,
            &CursorKey::users(),
            secret("delta-old-key"),
        )
        .await
        .expect("save");
    store.close().await;

    let rotated = || {
        let (new_id, new_key) = key("test-2", 8);
        let (old_id, old_key) = key("test-1", 7);
        KeyRing::builder(new_id, new_key)
            .previous(old_id, old_key)
            .build()
            .expect("ring")
    };
    let store = open_sqlite(&path, rotated(), Arc::new(SystemClock)).await;
    let raw = raw_sqlite(&path).await;
    let token = store
        .load_token(&owner, id)
        .await
        .expect("old key still reads");
    assert_eq!(token.token.expose_secret(), "rt-old-key");
    let v2 = store
        .replace_token(&owner, id, token.version, secret("rt-new-key"))
        .await
        .expect("replace");
    assert_eq!(
        token_blob(&raw, id).await.0,
        "test-2",
        "writes use the current key"
    );
    assert_eq!(
        store
            .load_token(&owner, id)
            .await
            .expect("load")
            .token
            .expose_secret(),
        "rt-new-key"
    );

    // Re-encrypt what is left under the old key, then the old key can go.
    let rewritten = store.reencrypt().await.expect("reencrypt");
    assert_eq!(rewritten, 1, "only the users cursor was still under test-1");
    assert_eq!(store.reencrypt().await.expect("reencrypt again"), 0);
    store.close().await;
    let (new_id, new_key) = key("test-2", 8);
    let store = open_sqlite(&path, KeyRing::new(new_id, new_key), Arc::new(SystemClock)).await;
    let token = store
        .load_token(&owner, id)
        .await
        .expect("reads without the old key");
    assert_eq!(
        (token.token.expose_secret(), token.version),
        ("rt-new-key", v2)
    );
    let cursor = store
        .load_cursor(&owner, id, &CursorKey::users())
        .await
        .expect("cursor")
        .expect("present");
    assert_eq!(cursor.expose_secret(), "delta-old-key");
}

#[tokio::test]
async fn reencrypt_rewrites_tokens_under_previous_keys_without_changing_versions() {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let store = open_sqlite(&path, ring(), Arc::new(SystemClock)).await;
    let (owner, id) = seeded(&store, "rt-1").await;
    store.close().await;
    let (new_id, new_key) = key("test-2", 8);
    let (old_id, old_key) = key("test-1", 7);
    let ring = KeyRing::builder(new_id, new_key)
        .previous(old_id, old_key)
        .build()
        .expect("ring");
    let store = open_sqlite(&path, ring, Arc::new(SystemClock)).await;
    assert_eq!(store.reencrypt().await.expect("reencrypt"), 1);
    let raw = raw_sqlite(&path).await;
    assert_eq!(token_blob(&raw, id).await.0, "test-2");
    let token = store.load_token(&owner, id).await.expect("load");
    assert_eq!(
        (token.token.expose_secret(), token.version),
        ("rt-1", TokenVersion::FIRST)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reencrypt_during_token_replacements_leaves_every_token_on_the_new_key_at_its_last_version()
 {
    let dir = TempDir::new();
    let path = dir.file("store.db");
    let (old, rotated, new_only) = common::rotation_rings();
    let old = open_sqlite(&path, old, Arc::new(SystemClock)).await;
    let one = open_sqlite(&path, rotated, Arc::new(SystemClock)).await;
    let two = open_sqlite(&path, common::rotation_rings().1, Arc::new(SystemClock)).await;
    let new_only = open_sqlite(&path, new_only, Arc::new(SystemClock)).await;
    common::reencrypt_during_token_replacements(&old, &[one, two], &new_only).await;
}
