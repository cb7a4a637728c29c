//! Device-code answers (spec 3: `interval` and `expires_in` as numbers or text,
//! `message` optional) as `EntraClient::start_device_code` reads them.
//!
//! Properties: never panics; the interval is 1 s to a day, the lifetime at most a day,
//! the message never empty; `Debug` never shows the device code (it is the same for
//! another device code).
#![no_main]

use std::time::Duration;

use entra_auth::fuzzing::device_code_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(device) = device_code_response(data) else {
        return;
    };
    let day = Duration::from_secs(86_400);
    assert!(device.interval() >= Duration::from_secs(1) && device.interval() <= day);
    assert!(device.expires_in() <= day);
    assert!(!device.message().is_empty());
    let _ = device.expires_at();
    // `Debug` does not depend on the device code: the same answer with another code shows
    // the same, so it cannot show the code (whatever the user code or URI hold).
    if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(data)
        && let Some(serde_json::Value::String(code)) = object.get("device_code")
    {
        let other = if code == "another-device-code" {
            "yet-another-device-code"
        } else {
            "another-device-code"
        };
        object.insert("device_code".to_owned(), other.into());
        let again = device_code_response(&serde_json::to_vec(&object).expect("encodes"))
            .expect("the answer decodes with another device code");
        assert_eq!(
            format!("{again:?}"),
            format!("{device:?}"),
            "Debug depends on the device code"
        );
    }
});
