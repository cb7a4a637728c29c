//! WAITING for `entra_auth::fuzzing` (see fuzz/README.md): device-code answers (spec 3:
//! `interval` and `expires_in` as numbers or text, `message` optional).
//!
//! Properties: never panics; the interval is 1 s to a day, the lifetime at most a day,
//! the message never empty; `Debug` never shows the device code.
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
    let shown = format!("{device:?}");
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data)
        && let Some(serde_json::Value::String(code)) = object.get("device_code")
        && code.len() >= 12
        && !device.user_code().contains(code.as_str())
        && !device.verification_uri().contains(code.as_str())
        && !device.message().contains(code.as_str())
    {
        assert!(!shown.contains(code.as_str()), "Debug shows the device code");
    }
});
