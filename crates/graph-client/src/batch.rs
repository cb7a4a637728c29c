//! JSON `$batch` of GET requests (spec 12): split into batches of at most 20, answers
//! matched by id, throttled items retried in a later batch through the throttle gate.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Call, GraphClient, decode, decode_error};
use crate::error::{GraphError, ResponseMeta, classify};
use crate::paging::with_next_link_eventual;
use crate::retry::parse_retry_after;

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
}

struct ItemState {
    retries: u32,
    waited: Duration,
}

impl GraphClient {
    /// Sends any number of GET requests as JSON batches of at most 20, and returns one
    /// result per item in the order given: the decoded body, or the item's error.
    ///
    /// Answers are matched by id whatever their order. An item answered 429, 503 or 504 is
    /// retried in a later batch after its own `Retry-After` (through the client's throttle
    /// gate, so sibling requests pause too), within the client's retry policy; Microsoft's
    /// SDKs leave that to the caller (spec 12). Use `T = Page<DirectoryObject>` to expand
    /// the first member pages of many groups in one round trip per 20 groups; the next
    /// link of a page answering an item sent with `ConsistencyLevel: eventual` asks for it
    /// again ([`NextLink::consistency_eventual`](crate::NextLink::consistency_eventual)).
    ///
    /// # Errors
    ///
    /// An error of a `$batch` request itself (after its own retries): the items of that
    /// batch and later ones have no result then. Errors of single items are in the returned list.
    pub async fn batch<T: DeserializeOwned>(
        &self,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Result<T, GraphError>>, GraphError> {
        let policy = self.inner.retry.clone();
        let base_path = self.inner.base.path().to_owned();
        let batch_url = format!("{}/$batch", self.inner.base.as_str());
        let mut results: Vec<Option<Result<T, GraphError>>> = items.iter().map(|_| None).collect();
        let mut states: Vec<ItemState> = items
            .iter()
            .map(|_| ItemState {
                retries: 0,
                waited: Duration::ZERO,
            })
            .collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        while !pending.is_empty() {
            let mut retry_next: Vec<usize> = Vec::new();
            let mut backoff = Duration::ZERO;
            for chunk in pending.chunks(MAX_BATCH_SIZE) {
                let answers = self.send_chunk(&items, chunk, &batch_url).await?;
                for answer in answers.responses {
                    let Some(index) = answer
                        .id
                        .parse::<usize>()
                        .ok()
                        .filter(|i| chunk.contains(i))
                    else {
                        continue;
                    };
                    let item_path = format!("{base_path}{}", items[index].path());
                    let retry_after = answer
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(&v, (self.inner.clock)()));
                    let state = &mut states[index];
                    if matches!(answer.status, 429 | 503 | 504) {
                        let wait = retry_after.unwrap_or_else(|| policy.backoff(state.retries));
                        if state.retries < policy.max_retries
                            && state.waited + wait <= policy.max_total_wait
                        {
                            state.retries += 1;
                            state.waited += wait;
                            if answer.status == 429 || retry_after.is_some() {
                                self.inner
                                    .gate
                                    .pause_until(tokio::time::Instant::now() + wait);
                            } else {
                                backoff = backoff.max(wait);
                            }
                            tracing::debug!(path = %item_path, status = answer.status, wait_ms = wait.as_millis(), "batch item throttled, retrying in a later batch");
                            retry_next.push(index);
                            results[index] = None;
                            continue;
                        }
                    }
                    // A page answering an eventual item keeps the header for its next link.
                    results[index] = Some(with_next_link_eventual(items[index].eventual, || {
                        item_result(answer, retry_after, &item_path)
                    }));
                }
                for &index in chunk {
                    if results[index].is_none() && !retry_next.contains(&index) {
                        results[index] = Some(Err(GraphError::InvalidResponse {
                            path: format!("{base_path}{}", items[index].path()),
                            reason: "the batch answer has no response for this item",
                        }));
                    }
                }
            }
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            retry_next.sort_unstable();
            pending = retry_next;
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(GraphError::InvalidResponse {
                        path: String::new(),
                        reason: "batch item without result",
                    })
                })
            })
            .collect())
    }

    async fn send_chunk(
        &self,
        items: &[BatchItem],
        chunk: &[usize],
        batch_url: &str,
    ) -> Result<WireResponses, GraphError> {
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
        let call = Call {
            method: Method::POST,
            url: batch_url,
            eventual: false,
            json_body: Some(Bytes::from(json)),
            accept: "application/json",
            batch: true,
        };
        let reply = self.execute(call).await?;
        decode(&reply.body, &reply.path)
    }
}

fn item_result<T: DeserializeOwned>(
    answer: WireResponse,
    retry_after: Option<Duration>,
    path: &str,
) -> Result<T, GraphError> {
    if (200..300).contains(&answer.status) {
        return serde_path_to_error::deserialize(answer.body)
            .map_err(|e| decode_error(path, e.path().to_string(), e.inner()));
    }
    let meta = ResponseMeta {
        request_id: answer.header("request-id"),
        client_request_id: answer.header("client-request-id"),
        date: answer.header("date"),
        retry_after,
        content_type: answer.header("content-type"),
        location: answer.header("location"),
    };
    let body = serde_json::to_vec(&answer.body).unwrap_or_default();
    Err(classify(answer.status, &body, meta, path))
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
        let result: Result<Option<Value>, _> = item_result(no_content, None, "/v1.0/me");
        assert_eq!(result.unwrap(), None);
    }
}
