//! JSON `$batch` of GET requests (spec 12): split into batches of at most 20, answers
//! matched by id, throttled items retried in a later batch through the throttle gate,
//! items answered with a claims challenge retried once with a new token (spec 7).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::challenge::{Challenged, ClaimsChallenge};
use crate::client::{Call, GraphClient, decode, decode_error};
use crate::error::{
    GraphError, ResponseMeta, ResyncLocation, ServiceError, classify, service_error_of,
};
use crate::paging::Page;
use crate::retry::{RetryBudget, parse_retry_after};

/// Graph's limit of requests per batch (spec 12).
pub const MAX_BATCH_SIZE: usize = 20;

/// One GET inside a `$batch`: a URL relative to the Graph root, e.g. `/groups/{id}/members?$top=999`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    url: String,
    eventual: bool,
}

impl BatchItem {
    /// A GET of `relative_url` (a missing leading `/` is added).
    pub fn get(relative_url: impl Into<String>) -> Self {
        let mut url = relative_url.into();
        if !url.starts_with('/') {
            url.insert(0, '/');
        }
        Self {
            url,
            eventual: false,
        }
    }

    /// Whether the item sends `ConsistencyLevel: eventual` in its own headers (spec 8c: in
    /// `$batch`, the header goes per request).
    #[must_use]
    pub fn with_consistency_eventual(mut self, eventual: bool) -> Self {
        self.eventual = eventual;
        self
    }

    /// The relative URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }
}

#[derive(Serialize)]
struct WireRequests<'a> {
    requests: Vec<WireRequest<'a>>,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    id: String,
    method: &'static str,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HashMap<&'static str, &'static str>>,
}

#[derive(Deserialize)]
struct WireResponses {
    #[serde(default)]
    responses: Vec<WireResponse>,
}

#[derive(Deserialize)]
struct WireResponse {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Option<HashMap<String, Value>>,
    #[serde(default)]
    body: Value,
}

impl WireResponse {
    /// Header lookup ignoring case: batch answers use lower-case names (`location`) as well
    /// as mixed case (fixture batch-response.json).
    fn header(&self, name: &str) -> Option<String> {
        let headers = self.headers.as_ref()?;
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    /// A claims challenge in the item's own `WWW-Authenticate` (a string, or a list of
    /// strings for several headers).
    fn claims_challenge(&self) -> Option<ClaimsChallenge> {
        let headers = self.headers.as_ref()?;
        let values = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
            .flat_map(|(_, value)| match value {
                Value::String(text) => vec![text.as_str()],
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            });
        ClaimsChallenge::from_header_values(self.status, values)
    }

    /// The diagnostics of an item's own headers.
    fn meta(&self, retry_after: Option<Duration>) -> ResponseMeta {
        ResponseMeta {
            request_id: self.header("request-id"),
            client_request_id: self.header("client-request-id"),
            date: self.header("date"),
            retry_after,
            content_type: self.header("content-type"),
            location: self.header("location").map(ResyncLocation::new),
        }
    }

    fn service_error(&self, retry_after: Option<Duration>, path: &str) -> Box<ServiceError> {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        service_error_of(self.status, &body, &self.meta(retry_after), path)
    }
}

impl GraphClient {
    /// Sends any number of GET requests as JSON batches of at most 20, and returns one
    /// result per item in the order given: the decoded body, or the item's error.
    ///
    /// Answers are matched by id whatever their order. An item answered 429, 503 or 504 is
    /// retried in a later batch after its own `Retry-After` (through the client's throttle
    /// gate, so sibling requests pause too), within the client's retry policy; Microsoft's
    /// SDKs leave that to the caller (spec 12). Every batch sent carries each item once:
    /// a second answer for the same id is ignored. For pages, use
    /// [`batch_pages`](Self::batch_pages), which keeps `ConsistencyLevel` on next links.
    ///
    /// Items answered 401 or 403 with a claims challenge (spec 7) are treated like a
    /// challenge of the whole request, once per call: the token their batch was sent with
    /// goes to [`TokenProvider::claims_challenge`](crate::TokenProvider::claims_challenge)
    /// and they are sent again, in a later batch, with the new token. An item challenged
    /// again gets [`GraphError::ClaimsChallenge`] as its result; the challenged token is
    /// never sent again (a provider giving it back fails the call with that error).
    ///
    /// # Errors
    ///
    /// An error of a `$batch` request itself (after its own retries): the items of that
    /// batch and later ones have no result then. Errors of single items are in the
    /// returned list. A [`GraphError::Token`] when the provider fails to answer an item's
    /// claims challenge.
    pub async fn batch<T: DeserializeOwned>(
        &self,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Result<T, GraphError>>, GraphError> {
        self.batch_with(&items, |_, body, path| decode_item(body, path))
            .await
    }

    /// [`batch`](Self::batch) for list requests: each answer is a [`Page`], and the next
    /// link of a page answering an item sent with `ConsistencyLevel: eventual` asks for it
    /// again ([`NextLink::consistency_eventual`](crate::NextLink::consistency_eventual)).
    /// Use it to expand the first member pages of many groups in one round trip per 20
    /// groups (or [`GroupsApi::members_of_many`](crate::GroupsApi::members_of_many), which
    /// also follows the next links).
    ///
    /// # Errors
    ///
    /// As [`batch`](Self::batch).
    pub async fn batch_pages<T: DeserializeOwned>(
        &self,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Result<Page<T>, GraphError>>, GraphError> {
        self.batch_with(&items, |item, body, path| {
            let mut page: Page<T> = decode_item(body, path)?;
            page.set_eventual(item.eventual);
            Ok(page)
        })
        .await
    }

    async fn batch_with<T>(
        &self,
        items: &[BatchItem],
        decode_body: impl Fn(&BatchItem, Value, &str) -> Result<T, GraphError>,
    ) -> Result<Vec<Result<T, GraphError>>, GraphError> {
        let policy = &self.inner.retry;
        let base_path = self.inner.base.path().to_owned();
        let batch_url = format!("{}/$batch", self.inner.base.as_str());
        let item_path = |index: usize| format!("{base_path}{}", items[index].path());
        let mut results: Vec<Option<Result<T, GraphError>>> = items.iter().map(|_| None).collect();
        let mut budgets = vec![RetryBudget::default(); items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        // The one claims challenge this call answered, with the token it challenged.
        let mut challenged: Option<Challenged> = None;
        while !pending.is_empty() {
            let mut retry_next: Vec<usize> = Vec::new();
            let mut backoff = Duration::ZERO;
            for chunk in pending.chunks(MAX_BATCH_SIZE) {
                let (answers, sent_with) = self
                    .send_chunk(items, chunk, &batch_url, challenged.as_ref())
                    .await?;
                // Each id of this chunk is taken once: a repeated answer would otherwise
                // queue its item twice, and Graph refuses a batch with duplicate ids (spec 12).
                let mut answered: HashSet<usize> = HashSet::with_capacity(chunk.len());
                for answer in answers.responses {
                    let Some(index) = answer
                        .id
                        .parse::<usize>()
                        .ok()
                        .filter(|i| chunk.contains(i) && answered.insert(*i))
                    else {
                        continue;
                    };
                    let path = item_path(index);
                    let retry_after = answer
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(&v, (self.inner.clock)()));
                    if matches!(answer.status, 401 | 403)
                        && let Some(challenge) = answer.claims_challenge()
                    {
                        // Like a challenge of the whole request, once per call (spec 7).
                        let error = answer.service_error(retry_after, &path);
                        match self
                            .answer_challenge(&mut challenged, &sent_with, challenge, error)
                            .await
                        {
                            Ok(()) => {
                                tracing::debug!(path = %path, status = answer.status, "batch item claims challenge, sending it again with a new token");
                                retry_next.push(index);
                            }
                            Err(e @ GraphError::ClaimsChallenge { .. }) => {
                                results[index] = Some(Err(e));
                            }
                            Err(e) => return Err(e),
                        }
                        continue;
                    }
                    if matches!(answer.status, 429 | 503 | 504) {
                        let budget = &mut budgets[index];
                        let wait = budget.wait(policy, retry_after);
                        if budget.spend(policy, wait) {
                            if answer.status == 429 || retry_after.is_some() {
                                self.inner.gate.pause_for(wait);
                            } else {
                                backoff = backoff.max(wait);
                            }
                            tracing::debug!(path = %path, status = answer.status, wait_ms = wait.as_millis(), "batch item throttled, retrying in a later batch");
                            retry_next.push(index);
                            continue;
                        }
                    }
                    results[index] = Some(
                        item_result(answer, retry_after, &path)
                            .and_then(|body| decode_body(&items[index], body, &path)),
                    );
                }
                for &index in chunk {
                    if !answered.contains(&index) {
                        results[index] = Some(Err(GraphError::InvalidResponse {
                            path: item_path(index),
                            reason: "the batch answer has no response for this item",
                        }));
                    }
                }
            }
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            pending = retry_next;
        }
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.unwrap_or_else(|| {
                    Err(GraphError::InvalidResponse {
                        path: item_path(index),
                        reason: "batch item without result",
                    })
                })
            })
            .collect())
    }

    /// Sends one batch; answers its decoded responses and the token it was sent with.
    async fn send_chunk(
        &self,
        items: &[BatchItem],
        chunk: &[usize],
        batch_url: &str,
        challenged: Option<&Challenged>,
    ) -> Result<(WireResponses, SecretString), GraphError> {
        let body = WireRequests {
            requests: chunk
                .iter()
                .map(|&index| WireRequest {
                    id: index.to_string(),
                    method: "GET",
                    url: &items[index].url,
                    headers: items[index]
                        .eventual
                        .then(|| HashMap::from([("ConsistencyLevel", "eventual")])),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&body).map_err(|_| GraphError::InvalidRequest {
            reason: "batch body could not be serialized".into(),
        })?;
        // A $batch of GETs is idempotent, so execute may retry it as a whole.
        // Each item costs what it would cost alone (spec 10a).
        let units = chunk
            .iter()
            .map(|&index| {
                let root = self.inner.base.as_str().trim_end_matches('/');
                let item = items[index].url.trim_start_matches('/');
                url::Url::parse(&format!("{root}/{item}"))
                    .map_or(1, |url| crate::retry::resource_units(&url))
            })
            .sum();
        let call = Call {
            method: Method::POST,
            url: batch_url,
            eventual: false,
            json_body: Some(Bytes::from(json)),
            accept: "application/json",
            batch: true,
            units: Some(units),
        };
        let reply = self.execute_with(call, challenged).await?;
        Ok((decode(&reply.body, &reply.path)?, reply.token))
    }
}

/// The body of a successful item, or the item's classified error.
fn item_result(
    answer: WireResponse,
    retry_after: Option<Duration>,
    path: &str,
) -> Result<Value, GraphError> {
    if (200..300).contains(&answer.status) {
        return Ok(answer.body);
    }
    let meta = answer.meta(retry_after);
    let body = serde_json::to_vec(&answer.body).unwrap_or_default();
    Err(classify(answer.status, &body, meta, path))
}

fn decode_item<T: DeserializeOwned>(body: Value, path: &str) -> Result<T, GraphError> {
    serde_path_to_error::deserialize(body)
        .map_err(|e| decode_error(path, e.path().to_string(), e.inner()))
}

/// What [`GraphClient::batch`] makes of each answer of a `$batch` body, without sending
/// anything: the item's `Retry-After`, its claims challenge, and for an answer that is
/// neither challenged nor retried its result, decoded as `T` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn answers<T: DeserializeOwned>(
    body: &[u8],
    now: std::time::SystemTime,
) -> Result<Vec<crate::fuzzing::BatchAnswer<T>>, GraphError> {
    let answers: WireResponses = decode(body, "/v1.0/$batch")?;
    Ok(answers
        .responses
        .into_iter()
        .map(|answer| {
            let path = "/v1.0/item";
            let retry_after = answer
                .header("retry-after")
                .and_then(|v| parse_retry_after(&v, now));
            let challenge = matches!(answer.status, 401 | 403)
                .then(|| answer.claims_challenge())
                .flatten();
            let id = answer.id.clone();
            let status = answer.status;
            let result = if let Some(challenge) = &challenge {
                let error = answer.service_error(retry_after, path);
                Err(GraphError::ClaimsChallenge {
                    challenge: Box::new(challenge.clone()),
                    error,
                })
            } else {
                item_result(answer, retry_after, path).and_then(|body| decode_item(body, path))
            };
            crate::fuzzing::BatchAnswer {
                id,
                status,
                retry_after,
                challenge,
                result,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_adds_the_leading_slash() {
        assert_eq!(BatchItem::get("users?$top=1").url(), "/users?$top=1");
        assert_eq!(BatchItem::get("/me").url(), "/me");
    }

    #[test]
    fn documented_batch_answer_decodes_with_its_quirks() {
        let answers: WireResponses =
            serde_json::from_slice(include_bytes!("../tests/fixtures/batch-response.json"))
                .unwrap();
        assert_eq!(answers.responses.len(), 5);
        let redirect = answers.responses.iter().find(|r| r.id == "1").unwrap();
        assert_eq!(redirect.status, 302);
        assert!(redirect.header("Location").is_some());
        let no_content = answers.responses.into_iter().find(|r| r.id == "4").unwrap();
        assert_eq!(no_content.body, Value::Null);
        let body = item_result(no_content, None, "/v1.0/me").unwrap();
        let result: Option<Value> = decode_item(body, "/v1.0/me").unwrap();
        assert_eq!(result, None);
    }
}
