//! The page round trip the page targets share: a decoded page, encoded back into Graph's
//! page shape, decodes to an equal page.

use graph_client::Page;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `page` as Graph sends one (`value`, `@odata.nextLink`, `@odata.deltaLink`,
/// `@odata.count`) and asserts that it decodes to an equal page.
pub fn assert_round_trip<T>(page: &Page<T>)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut wire = serde_json::Map::new();
    wire.insert(
        "value".into(),
        serde_json::to_value(page.items()).expect("decoded items encode"),
    );
    if let Some(link) = page.next_link() {
        wire.insert("@odata.nextLink".into(), link.as_str().into());
    }
    if let Some(link) = page.delta_link() {
        wire.insert("@odata.deltaLink".into(), link.expose_secret().into());
    }
    if let Some(count) = page.count() {
        wire.insert("@odata.count".into(), count.into());
    }
    let encoded = serde_json::to_vec(&wire).expect("a page encodes");
    let again: Page<T> = graph_client::fuzzing::decode(&encoded).expect("an encoded page decodes");
    assert_eq!(page, &again, "decode -> encode -> decode changed the page");
}
