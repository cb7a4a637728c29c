//! Encryption at rest: AES-256-GCM under a key ring, with the record's identity as
//! associated data.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connection_store::{ConnectionId, OwnerId, StoreError};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::error::SqlStoreError;

/// Format byte in front of every ciphertext, so a later format can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Domain separation: these bytes start the associated data of every ciphertext.
const AAD_PREFIX: &[u8] = b"m365-link/connection-store-sql/v1";

/// The id stored next to each ciphertext, naming the key that encrypted it:
/// 1–64 characters of ASCII letters, digits, `-`, `_`, `.`, `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Validates a key id.
    ///
    /// # Errors
    /// [`SqlStoreError::InvalidKey`] when it is empty, too long or has another character.
    pub fn new(id: impl Into<String>) -> Result<Self, SqlStoreError> {
        let id: String = id.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
            return Err(SqlStoreError::InvalidKey {
                reason: "a key id is 1-64 characters of ASCII letters, digits, '-', '_', '.', ':'",
            });
        }
        Ok(Self(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 256-bit AES key. Zeroized on drop, never shown by `Debug`.
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = Box::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        Self(SecretBox::new(bytes))
    }

    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// A key from its standard base64 form (44 characters), e.g. from an environment
    /// variable or a secret manager.
    ///
    /// # Errors
    /// [`SqlStoreError::InvalidKey`] when it is not base64 of exactly 32 bytes.
    pub fn from_base64(encoded: &SecretString) -> Result<Self, SqlStoreError> {
        let decoded = Zeroizing::new(STANDARD.decode(encoded.expose_secret().trim()).map_err(
            |_| SqlStoreError::InvalidKey {
                reason: "an encryption key is standard base64",
            },
        )?);
        let bytes: [u8; 32] =
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| SqlStoreError::InvalidKey {
                    reason: "an encryption key is 32 bytes (44 base64 characters)",
                })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key in standard base64, to put into a secret manager.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.expose_secret()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.expose_secret()))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

/// The keys of a store: one current key that encrypts every write, and previous keys
/// that still decrypt older records, so keys rotate without downtime:
///
/// 1. deploy a ring with the new key as current and the old one as previous;
/// 2. optionally call [`SqlStore::reencrypt`](crate::SqlStore::reencrypt) (records are
///    also re-encrypted as they are written);
/// 3. drop the old key once nothing uses it.
pub struct KeyRing {
    current: KeyId,
    keys: BTreeMap<KeyId, EncryptionKey>,
}

impl KeyRing {
    /// A ring with one key, used for writes.
    pub fn new(current_id: KeyId, current: EncryptionKey) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(current_id.clone(), current);
        Self {
            current: current_id,
            keys,
        }
    }

    /// A builder for a ring with previous keys.
    pub fn builder(current_id: KeyId, current: EncryptionKey) -> KeyRingBuilder {
        KeyRingBuilder {
            current_id,
            current,
            previous: Vec::new(),
        }
    }

    /// The id of the key that encrypts writes.
    pub fn current_id(&self) -> &KeyId {
        &self.current
    }

    /// Every key id in the ring.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Encrypts `plaintext` with the current key under a fresh random nonce, bound to
    /// `aad`.
    pub(crate) fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Sealed, StoreError> {
        let key = self
            .keys
            .get(&self.current)
            .ok_or_else(|| StoreError::invalid_input("the current key is not in the key ring"))?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad_bytes = aad.to_bytes();
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad_bytes,
                },
            )
            .map_err(|_| StoreError::invalid_input("the value is too large to encrypt"))?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        blob.push(FORMAT_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: self.current.as_str().to_owned(),
            blob,
        })
    }

    /// Decrypts a stored ciphertext. Every failure is a typed error, never a panic
    /// and never a different plaintext: AES-GCM authenticates the bytes and `aad`.
    pub(crate) fn open(
        &self,
        aad: &Aad<'_>,
        key_id: &str,
        blob: &[u8],
    ) -> Result<SecretString, StoreError> {
        let id = Some(aad.connection);
        let key = KeyId::new(key_id)
            .ok()
            .and_then(|kid| self.keys.get(&kid))
            .ok_or_else(|| StoreError::MissingKey {
                id: aad.connection,
                key_id: key_id.to_owned(),
            })?;
        let what = || format!("{} ciphertext", aad.purpose);
        if blob.len() < 1 + NONCE_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
            return Err(StoreError::corrupt(id, format!("{} (malformed)", what())));
        }
        let (nonce, ciphertext) = blob[1..].split_at(NONCE_LEN);
        let aad_bytes = aad.to_bytes();
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad_bytes,
                    },
                )
                .map_err(|_| {
                    StoreError::corrupt(
                        id,
                        format!(
                            "{} (does not authenticate: wrong key, altered, or copied from another record)",
                            what()
                        ),
                    )
                })?,
        );
        let text = std::str::from_utf8(&plaintext)
            .map_err(|err| StoreError::corrupt_with(id, format!("{} (not UTF-8)", what()), err))?;
        Ok(SecretString::from(text.to_owned()))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`KeyRing`] with previous keys.
#[derive(Debug)]
pub struct KeyRingBuilder {
    current_id: KeyId,
    current: EncryptionKey,
    previous: Vec<(KeyId, EncryptionKey)>,
}

impl KeyRingBuilder {
    /// Adds a previous key, still used to decrypt records written under it.
    #[must_use]
    pub fn previous(mut self, id: KeyId, key: EncryptionKey) -> Self {
        self.previous.push((id, key));
        self
    }

    /// The ring.
    ///
    /// # Errors
    /// [`SqlStoreError::InvalidKey`] when two keys share an id.
    pub fn build(self) -> Result<KeyRing, SqlStoreError> {
        let mut ring = KeyRing::new(self.current_id, self.current);
        for (id, key) in self.previous {
            if ring.keys.insert(id, key).is_some() {
                return Err(SqlStoreError::InvalidKey {
                    reason: "two keys in the ring have the same id",
                });
            }
        }
        Ok(ring)
    }
}

/// What a ciphertext is bound to: a copy into another row, owner or purpose fails to
/// decrypt.
pub(crate) struct Aad<'a> {
    pub(crate) connection: ConnectionId,
    pub(crate) owner: &'a OwnerId,
    pub(crate) purpose: Purpose<'a>,
}

/// What a ciphertext holds.
#[derive(Clone, Copy)]
pub(crate) enum Purpose<'a> {
    RefreshToken,
    Cursor(&'a str),
    /// A secret of the store's user, in a table of its own (`SqlStore::seal_secret`).
    External(&'a str),
}

impl fmt::Display for Purpose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RefreshToken => f.write_str("refresh token"),
            Self::Cursor(key) => write!(f, "cursor {key:?}"),
            Self::External(label) => write!(f, "secret {label:?}"),
        }
    }
}

impl Aad<'_> {
    fn to_bytes(&self) -> Vec<u8> {
        // Length-prefixed fields, so no two different tuples share an encoding.
        let purpose = match self.purpose {
            Purpose::RefreshToken => "refresh_token".to_owned(),
            Purpose::Cursor(key) => format!("cursor:{key}"),
            Purpose::External(label) => format!("external:{label}"),
        };
        let connection = self.connection.to_string();
        let mut out = AAD_PREFIX.to_vec();
        for field in [
            purpose.as_bytes(),
            connection.as_bytes(),
            self.owner.as_str().as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// A ciphertext with the id of its key, as stored.
pub(crate) struct Sealed {
    pub(crate) key_id: String,
    pub(crate) blob: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str, byte: u8) -> KeyRing {
        KeyRing::new(
            KeyId::new(id).unwrap(),
            EncryptionKey::from_bytes([byte; 32]),
        )
    }

    fn aad<'a>(connection: ConnectionId, owner: &'a OwnerId, purpose: Purpose<'a>) -> Aad<'a> {
        Aad {
            connection,
            owner,
            purpose,
        }
    }

    #[test]
    fn seal_then_open_returns_the_plaintext_and_nonces_differ() {
        let ring = ring("k1", 7);
        let owner = OwnerId::new("o");
        let id = ConnectionId::new();
        let a = aad(id, &owner, Purpose::RefreshToken);
        let one = ring.seal(&a, b"rt-secret").unwrap();
        let two = ring.seal(&a, b"rt-secret").unwrap();
        assert_eq!(one.key_id, "k1");
        assert_ne!(one.blob, two.blob, "a fresh nonce per write");
        assert!(!one.blob.windows(9).any(|w| w == b"rt-secret"));
        assert_eq!(
            ring.open(&a, "k1", &one.blob).unwrap().expose_secret(),
            "rt-secret"
        );
    }

    #[test]
    fn open_refuses_other_connection_owner_or_purpose() {
        let ring = ring("k1", 7);
        let owner = OwnerId::new("o");
        let other_owner = OwnerId::new("o2");
        let id = ConnectionId::new();
        let sealed = ring
            .seal(&aad(id, &owner, Purpose::Cursor("users")), b"delta")
            .unwrap();
        for wrong in [
            aad(ConnectionId::new(), &owner, Purpose::Cursor("users")),
            aad(id, &other_owner, Purpose::Cursor("users")),
            aad(id, &owner, Purpose::Cursor("groups")),
            aad(id, &owner, Purpose::RefreshToken),
        ] {
            let err = ring.open(&wrong, "k1", &sealed.blob).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        }
    }

    #[test]
    fn open_reports_missing_key_and_malformed_blobs() {
        let ring = ring("k1", 7);
        let owner = OwnerId::new("o");
        let a = aad(ConnectionId::new(), &owner, Purpose::RefreshToken);
        let sealed = ring.seal(&a, b"x").unwrap();
        assert!(matches!(
            ring.open(&a, "k2", &sealed.blob),
            Err(StoreError::MissingKey { key_id, .. }) if key_id == "k2"
        ));
        for blob in [vec![], vec![1u8; 10], {
            let mut b = sealed.blob.clone();
            b[0] = 9;
            b
        }] {
            assert!(matches!(
                ring.open(&a, "k1", &blob),
                Err(StoreError::Corrupt { .. })
            ));
        }
        let other = self::ring("k1", 8);
        assert!(matches!(
            other.open(&a, "k1", &sealed.blob),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn keys_parse_from_base64_and_are_redacted() {
        let key = EncryptionKey::generate();
        let encoded = key.to_base64();
        let parsed = EncryptionKey::from_base64(&encoded).unwrap();
        assert_eq!(parsed.to_base64().expose_secret(), encoded.expose_secret());
        assert!(EncryptionKey::from_base64(&SecretString::from("not base64!")).is_err());
        assert!(EncryptionKey::from_base64(&SecretString::from("AAAA")).is_err());
        let debug = format!("{key:?}");
        assert_eq!(debug, "EncryptionKey([REDACTED])");
        let ring = KeyRing::builder(KeyId::new("k2").unwrap(), key)
            .previous(KeyId::new("k1").unwrap(), parsed)
            .build()
            .unwrap();
        let debug = format!("{ring:?}");
        assert!(!debug.contains(encoded.expose_secret()), "{debug}");
        assert!(debug.contains("k1") && debug.contains("k2"), "{debug}");
    }

    #[test]
    fn key_ring_refuses_duplicate_ids_and_bad_key_ids() {
        let dup = KeyRing::builder(KeyId::new("k1").unwrap(), EncryptionKey::generate())
            .previous(KeyId::new("k1").unwrap(), EncryptionKey::generate())
            .build();
        assert!(matches!(dup, Err(SqlStoreError::InvalidKey { .. })));
        assert!(KeyId::new("").is_err());
        assert!(KeyId::new("has space").is_err());
        assert!(KeyId::new("2026-01:main").is_ok());
    }
}
