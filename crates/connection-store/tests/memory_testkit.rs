//! `MemoryStore` against the conformance test kit.

use std::sync::Arc;

use connection_store::{MemoryStore, testkit};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_whole_testkit() {
    testkit::run(|clock| async move { MemoryStore::with_clock(Arc::new(clock)) }).await;
}
