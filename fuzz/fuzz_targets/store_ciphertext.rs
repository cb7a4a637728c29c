//! The store's token and cursor ciphertexts as read back from a row (AES-256-GCM under a
//! key ring, bound to connection, owner and purpose): arbitrary key ids and bytes, and
//! real ciphertexts altered.
//!
//! Properties: decrypting arbitrary bytes with a fixed key is a typed error, never a
//! panic; a sealed value opens to itself (or a typed error when it is not UTF-8); any
//! changed byte, or another connection, owner or purpose, is a typed error.
#![no_main]

use arbitrary::Arbitrary;
use connection_store::{ConnectionId, OwnerId, StoreError};
use connection_store_sql::connection_store::ExposeSecret;
use connection_store_sql::fuzzing::{CiphertextPurpose, open, seal};
use connection_store_sql::{EncryptionKey, KeyId, KeyRing};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key_id: &'a str,
    blob: &'a [u8],
    purpose: u8,
    label: &'a str,
    owner: &'a str,
    connection: [u8; 16],
    plaintext: &'a [u8],
    flip_at: usize,
    flip_with: u8,
}

fn ring() -> KeyRing {
    KeyRing::builder(
        KeyId::new("k2").expect("key id"),
        EncryptionKey::from_bytes([7; 32]),
    )
    .previous(
        KeyId::new("k1").expect("key id"),
        EncryptionKey::from_bytes([9; 32]),
    )
    .build()
    .expect("ring")
}

fn typed(result: Result<impl Sized, StoreError>) {
    match result {
        Ok(_) => panic!("arbitrary bytes decrypted"),
        Err(StoreError::Corrupt { .. } | StoreError::MissingKey { .. }) => {}
        Err(other) => panic!("untyped failure: {other:?}"),
    }
}

fuzz_target!(|input: Input<'_>| {
    let ring = ring();
    let connection = ConnectionId::from_uuid(uuid::Uuid::from_bytes(input.connection));
    let owner = OwnerId::new(input.owner);
    let purpose = match input.purpose % 3 {
        0 => CiphertextPurpose::RefreshToken,
        1 => CiphertextPurpose::Cursor(input.label),
        _ => CiphertextPurpose::External(input.label),
    };
    typed(open(
        &ring,
        connection,
        &owner,
        purpose,
        input.key_id,
        input.blob,
    ));

    let (key_id, blob) = seal(&ring, connection, &owner, purpose, input.plaintext).expect("seal");
    assert_eq!(key_id, "k2");
    match (
        open(&ring, connection, &owner, purpose, &key_id, &blob),
        std::str::from_utf8(input.plaintext),
    ) {
        (Ok(secret), Ok(text)) => assert_eq!(secret.expose_secret(), text),
        (Err(StoreError::Corrupt { .. }), Err(_)) => {}
        (other, _) => panic!("sealed value opened as {:?}", other.map(|_| "[secret]")),
    }
    let mut altered = blob.clone();
    let at = input.flip_at % altered.len();
    altered[at] ^= input.flip_with.max(1);
    typed(open(&ring, connection, &owner, purpose, &key_id, &altered));
    typed(open(&ring, connection, &owner, purpose, "k1", &blob));
    let other_owner = OwnerId::new(format!("{}x", input.owner));
    typed(open(
        &ring,
        connection,
        &other_owner,
        purpose,
        &key_id,
        &blob,
    ));
    let other_purpose = match purpose {
        CiphertextPurpose::RefreshToken => CiphertextPurpose::Cursor(input.label),
        _ => CiphertextPurpose::RefreshToken,
    };
    typed(open(
        &ring,
        connection,
        &owner,
        other_purpose,
        &key_id,
        &blob,
    ));
});
