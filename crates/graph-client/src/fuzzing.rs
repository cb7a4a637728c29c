//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default):
//! thin wrappers over the crate's private decoders, so that the targets run the code the
//! client runs on a response. Not a stable API.

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::challenge::ClaimsChallenge;
use crate::delta::{DeltaChange, DeltaObject, Merge};
use crate::error::{GraphError, ResponseMeta, ResyncLocation};
use crate::paging::{DeltaLink, Page};

/// A `Retry-After` value (seconds or HTTP date) as the client reads it, `now` being the
/// client's clock.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    crate::retry::parse_retry_after(value, now)
}

/// The error the client makes of a non-success answer with this status, body and
/// headers (`Retry-After` already parsed, `Location` as sent).
pub fn classify(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    location: Option<&str>,
) -> GraphError {
    let meta = ResponseMeta {
        retry_after,
        location: location.map(ResyncLocation::new),
        ..ResponseMeta::default()
    };
    crate::error::classify(status, body, meta, "/v1.0/users")
}

/// A response body decoded as the client decodes it (straight, then with the serde
/// path on failure).
///
/// # Errors
/// [`GraphError::Decode`] naming the field.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, GraphError> {
    crate::client::decode(body, "/v1.0/users")
}

/// One answer of a `$batch` body as [`GraphClient::batch`](crate::GraphClient::batch)
/// reads it.
#[derive(Debug)]
pub struct BatchAnswer<T> {
    /// The answer's `id`.
    pub id: String,
    /// The answer's `status`.
    pub status: u16,
    /// Its `Retry-After` header, parsed.
    pub retry_after: Option<Duration>,
    /// Its claims challenge (401 or 403 only).
    pub challenge: Option<ClaimsChallenge>,
    /// The decoded body of a success, or the item's error.
    pub result: Result<T, GraphError>,
}

/// The answers of a `$batch` response body, each decoded as `T`.
///
/// # Errors
/// [`GraphError::Decode`] when the body is no batch answer.
pub fn batch_answers<T: DeserializeOwned>(
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<BatchAnswer<T>>, GraphError> {
    crate::batch::answers(body, now)
}

/// What a delta round makes of its pages.
#[derive(Debug)]
pub struct DeltaOutcome<T> {
    /// The changes handed out, in order.
    pub changes: Vec<DeltaChange<T>>,
    /// The delta link, when the round ended with one.
    pub delta_link: Option<DeltaLink>,
    /// The error that ended the round, if it did.
    pub error: Option<GraphError>,
}

/// Runs a delta round over these pages (as if fetched in this order) for a client whose
/// base URL has the origin `origin` (e.g. `https://graph.microsoft.com`).
pub fn delta_round<T: DeltaObject>(
    pages: impl IntoIterator<Item = Page<T>>,
    origin: &str,
) -> DeltaOutcome<T> {
    let base = url::Url::parse(origin).map(|url| url.origin());
    let check_origin = |link: &str| {
        let parsed = url::Url::parse(link).map_err(|_| GraphError::InvalidLink {
            reason: "not an absolute URL",
        })?;
        if base.as_ref().ok() != Some(&parsed.origin()) {
            return Err(GraphError::ForeignLink {
                origin: parsed.origin().ascii_serialization(),
            });
        }
        Ok(())
    };
    let mut merge = Merge::new("/v1.0/users/delta".to_owned());
    let mut outcome = DeltaOutcome {
        changes: Vec::new(),
        delta_link: None,
        error: None,
    };
    let take = |merge: &mut Merge<T>, outcome: &mut DeltaOutcome<T>| {
        while let Some(step) = merge.next_step() {
            match step {
                Ok(change) => outcome.changes.push(change),
                Err(link) => outcome.delta_link = Some(link),
            }
        }
    };
    for page in pages {
        if merge.is_done() {
            break;
        }
        if let Err(error) = merge.absorb(page, check_origin) {
            take(&mut merge, &mut outcome);
            outcome.error = Some(error);
            return outcome;
        }
        take(&mut merge, &mut outcome);
    }
    if !merge.is_done() {
        outcome.error = Some(merge.ended_without_link());
    }
    outcome
}
