//! Dates as Graph writes them.

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `2021-05-18T19:03:10` as in Graph's innerError.
pub(super) fn graph_date(unix: i64) -> String {
    let mut iso = iso_date(unix);
    iso.pop();
    iso
}

/// `2017-07-31T18:56:16Z`.
pub(crate) fn iso_date(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}
