//! How connections are shown: the "Linked Microsoft 365 accounts" table and times.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use connection_store::Connection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::connect::status_text;

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

/// A time as RFC 3339 in whole seconds.
pub fn when(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}
