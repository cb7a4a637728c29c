//! How connections are shown, on the command line and in the web app: their status in
//! words, times, and the "Linked Microsoft 365 accounts" table.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use connection_store::{Connection, ConnectionStatus};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The "Linked Microsoft 365 accounts" table: name, tenant, admin, status, last sync.
pub fn connections_table(connections: &[Connection]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["Name", "Tenant", "Admin", "Status", "Last sync"]);
    for connection in connections {
        table.add_row([
            connection.name.as_str().to_owned(),
            connection.tenant.to_string(),
            connection.admin.username.clone(),
            status_text(&connection.status),
            connection
                .last_synced_at
                .map_or_else(|| "never".to_owned(), when),
        ]);
    }
    table
}

/// A connection's status in words: "active", "reconnect needed" or "disabled" (the web
/// pages, which show the reason of a reconnect on a line of its own).
pub fn status_words(status: &ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Active => "active",
        ConnectionStatus::NeedsReconnect { .. } => "reconnect needed",
        ConnectionStatus::Disabled => "disabled",
        // A status the store adds later: its stable name.
        _ => status.kind(),
    }
}

/// [`status_words`] with the reason of a reconnect: "reconnect needed: …" (the command
/// line).
pub fn status_text(status: &ConnectionStatus) -> String {
    match status {
        ConnectionStatus::NeedsReconnect { reason, .. } => {
            format!("{}: {reason}", status_words(status))
        }
        _ => status_words(status).to_owned(),
    }
}

// Times in two formats, on purpose: the command line prints RFC 3339 to the second,
// which scripts parse and which matches the store's and Microsoft's timestamps; the web
// pages show people the minute, in UTC and saying so. (The sync status JSON keeps
// RFC 3339, through serde.)

/// A time as RFC 3339 in whole seconds (the command line).
pub fn when(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// A time to the minute in UTC, `2026-11-25 07:05 UTC` (the web pages).
pub fn page_time(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_shows_seconds_and_the_pages_the_minute_in_utc() {
        let at = time::macros::datetime!(2026-11-25 08:05:42.5 +01:00);
        assert_eq!(when(at), "2026-11-25T08:05:42+01:00");
        assert_eq!(page_time(at), "2026-11-25 07:05 UTC");
    }

    #[test]
    fn the_reason_of_a_reconnect_follows_its_words_on_the_command_line_only() {
        let status = ConnectionStatus::NeedsReconnect {
            reason: "the grant was revoked".to_owned(),
            since: OffsetDateTime::UNIX_EPOCH,
            claims: None,
        };
        assert_eq!(status_words(&status), "reconnect needed");
        assert_eq!(
            status_text(&status),
            "reconnect needed: the grant was revoked"
        );
        assert_eq!(status_words(&ConnectionStatus::Active), "active");
        assert_eq!(status_text(&ConnectionStatus::Disabled), "disabled");
    }
}
