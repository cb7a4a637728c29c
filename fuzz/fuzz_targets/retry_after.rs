//! `Retry-After` as the client reads it (RFC 9110 10.2.3: delay-seconds or an HTTP date;
//! leniently, fractional seconds). The first eight bytes set the clock, the rest is the
//! header value.
//!
//! Properties: never over a day; surrounding spaces change nothing; whole seconds up to a
//! day read exactly; a date the clock formats reads back as its distance (to the second).
#![no_main]

use std::time::{Duration, SystemTime};

use graph_client::RetryPolicy;
use graph_client::fuzzing::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((clock, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Any time from 1970 to about 2106, whole seconds.
    let now = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::from(u32::from_le_bytes([
            clock[0], clock[1], clock[2], clock[3],
        ])));
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let parsed = parse_retry_after(value, now);
    if let Some(wait) = parsed {
        assert!(wait <= RetryPolicy::MAX_WAIT, "{value:?} waits {wait:?}");
    }
    assert_eq!(parse_retry_after(&format!(" {value}\t"), now), parsed);

    let seconds = u64::from(u32::from_le_bytes([clock[4], clock[5], clock[6], clock[7]]) % 100_000);
    let expected = Duration::from_secs(seconds).min(RetryPolicy::MAX_WAIT);
    assert_eq!(parse_retry_after(&seconds.to_string(), now), Some(expected));
    let date = httpdate::fmt_http_date(now + Duration::from_secs(seconds));
    assert_eq!(parse_retry_after(&date, now), Some(expected), "{date}");
});
