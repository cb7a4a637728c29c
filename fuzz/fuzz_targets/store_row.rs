//! A `connections` row as the store reads it back (spec: a row someone else wrote): the
//! columns, each either arbitrary or close to what the store writes, turned into a
//! `Connection`; and the `token_version` column.
//!
//! Properties: never panics, a bad column is a typed `Corrupt` error; a row that decodes
//! encodes with the store's own encoders and decodes to an equal connection; its name
//! parses to itself; `due_at` saturates for any interval.
#![no_main]

use std::time::Duration;

use arbitrary::Unstructured;
use connection_store::{ConnectionName, StoreError};
use connection_store_sql::fuzzing::{
    Row, connection_from_row, row_from_connection, token_version_from_column,
};
use libfuzzer_sys::fuzz_target;

fn id(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(if u.ratio(7, 8)? {
        let bytes: [u8; 16] = u.arbitrary()?;
        let id = uuid::Uuid::from_bytes(bytes);
        match u.int_in_range(0..=3)? {
            0 => id.hyphenated().to_string(),
            1 => id.simple().to_string(),
            2 => id.urn().to_string(),
            _ => id.braced().to_string().to_uppercase(),
        }
    } else {
        u.arbitrary()?
    })
}

fn cloud(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=6)? {
        0 => r#"{"kind":"global"}"#.to_owned(),
        1 => r#"{"kind":"us_government"}"#.to_owned(),
        2 => r#"{"kind":"us_government_dod"}"#.to_owned(),
        3 => r#"{"kind":"china"}"#.to_owned(),
        4 => serde_json::json!({
            "kind": "custom",
            "login": u.arbitrary::<String>()?,
            "graph": u.arbitrary::<String>()?,
        })
        .to_string(),
        _ => u.arbitrary()?,
    })
}

fn scopes(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(if u.ratio(3, 4)? {
        serde_json::to_string(&u.arbitrary::<Vec<String>>()?).unwrap_or_default()
    } else {
        u.arbitrary()?
    })
}

fn status(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 => "active".to_owned(),
        1 => "disabled".to_owned(),
        2 => "needs_reconnect".to_owned(),
        _ => u.arbitrary()?,
    })
}

fn micros(u: &mut Unstructured<'_>) -> arbitrary::Result<i64> {
    // Mostly times the store could have written (years 1970-2100), sometimes any i64.
    Ok(if u.ratio(3, 4)? {
        u.int_in_range(0..=4_102_444_800_000_000)?
    } else {
        u.arbitrary()?
    })
}

fn row(u: &mut Unstructured<'_>) -> arbitrary::Result<Row> {
    Ok(Row {
        id: id(u)?,
        owner_id: u.arbitrary()?,
        name: u.arbitrary()?,
        tenant_id: u.arbitrary()?,
        cloud: cloud(u)?,
        admin_object_id: u.arbitrary()?,
        admin_username: u.arbitrary()?,
        admin_display_name: u.arbitrary()?,
        scopes: scopes(u)?,
        status: status(u)?,
        status_reason: u.arbitrary()?,
        status_since: if u.arbitrary()? {
            Some(micros(u)?)
        } else {
            None
        },
        status_claims: u.arbitrary()?,
        created_at: micros(u)?,
        updated_at: micros(u)?,
        last_synced_at: if u.arbitrary()? {
            Some(micros(u)?)
        } else {
            None
        },
        failures: if u.ratio(7, 8)? {
            u.int_in_range(0..=100)?
        } else {
            u.arbitrary()?
        },
        retry_at: if u.arbitrary()? {
            Some(micros(u)?)
        } else {
            None
        },
        revision: if u.ratio(7, 8)? {
            u.int_in_range(1..=1000)?
        } else {
            u.arbitrary()?
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(row) = row(&mut u) else {
        return;
    };
    let interval = Duration::from_micros(u.arbitrary().unwrap_or(3_600_000_000));
    let version: i64 = u.arbitrary().unwrap_or(1);
    match connection_from_row(row) {
        Ok(connection) => {
            let written = row_from_connection(&connection).expect("a connection read back writes");
            let again = connection_from_row(written.clone()).expect("a written row reads back");
            assert_eq!(
                connection, again,
                "decode -> encode -> decode changed the connection"
            );
            assert_eq!(row_from_connection(&again).expect("writes"), written);
            assert_eq!(
                ConnectionName::parse(connection.name.as_str()).expect("a read name parses"),
                connection.name
            );
            let _ = connection.due_at(interval);
            assert!(connection.status.validate().is_ok());
            assert_eq!(
                token_version_from_column(connection.id, version).is_ok(),
                version >= 0
            );
        }
        Err(StoreError::Corrupt { .. }) => {}
        Err(other) => panic!("a bad row is not Corrupt: {other:?}"),
    }
});
