//! Request spans carry method, path, status, attempt and request-id; never the token or the query.

mod common;

use std::sync::Arc;

use futures::TryStreamExt;
use graph_client::{GraphClient, StaticToken, User};
use serde_json::json;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn spans_name_method_path_status_attempt_and_request_id_but_no_secret() {
    let server = MockServer::start().await;
    let b = common::base(&server);
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "rid-1")
                .set_body_json(json!({"@odata.nextLink": format!("{b}/users?$skiptoken=SKIP-SECRET"), "value": [{"id": "1"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .and(query_param("$skiptoken", "SKIP-SECRET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "rid-2")
                .set_body_json(json!({"value": [{"id": "2"}]})),
        )
        .mount(&server)
        .await;
    let captured = common::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let client = GraphClient::builder(Arc::new(StaticToken::new("SECRET-TOKEN")))
        .base_url(b)
        .build()
        .unwrap();

    let users: Vec<User> = client.users().list().stream().try_collect().await.unwrap();
    assert_eq!(users.len(), 2);

    let log = captured.text();
    assert!(log.contains("graph_request"), "{log}");
    assert!(log.contains("method=GET"), "{log}");
    assert!(log.contains("path=/v1.0/users"), "{log}");
    assert!(log.contains("attempt=1"), "{log}");
    assert!(log.contains("status=200"), "{log}");
    assert!(
        log.contains("request_id=\"rid-1\"") || log.contains("request_id=rid-1"),
        "{log}"
    );
    assert!(log.contains("rid-2"), "{log}");
    for secret in ["SECRET-TOKEN", "SKIP-SECRET", "skiptoken", "Bearer"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the trace:\n{log}"
        );
    }
}
