//! [`export`]: a connection's mirror as `users`, `groups` and `memberships` files, in
//! JSON Lines or CSV.
//!
//! The three files are read in one read transaction (one commit's content), a page at a
//! time, so memory stays one page whatever the tenant's size. Each is written to a temp
//! file of a unique name (mode 0600), synced, and renamed into place once all three are
//! complete; then the folder (mode 0700) is synced, so a crash leaves the previous export
//! or the new one, never half of one. CSV cells that a spreadsheet would run as a formula
//! (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) are prefixed with `'`,
//! as OWASP recommends for CSV injection.

use std::path::{Path, PathBuf};

use connection_store::ConnectionId;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::db::Tx;
use super::error::MirrorError;
use super::open::Mirror;
use super::read::{groups_after, memberships_after, users_after};
use super::rows::{decode_group, decode_user};

/// The user columns of a CSV export unless [`ExportOptions::user_columns`] says others.
pub const DEFAULT_USER_COLUMNS: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "department",
    "companyName",
    "accountEnabled",
    "userType",
];

/// The group columns of a CSV export.
pub const GROUP_COLUMNS: &[&str] = &[
    "id",
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
];

/// Rows read per query.
const PAGE: i64 = 1_000;

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One JSON object per line (`.jsonl`): users and groups as Graph returned them.
    #[value(name = "jsonl")]
    JsonLines,
    /// Comma-separated values with a header row (`.csv`); lists joined by `;`.
    Csv,
}

impl ExportFormat {
    /// The file extension: `jsonl` or `csv`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// How to export: the format, and for CSV the user columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    format: ExportFormat,
    user_columns: Vec<String>,
}

impl ExportOptions {
    /// An export in `format` with the [`DEFAULT_USER_COLUMNS`].
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            user_columns: DEFAULT_USER_COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        }
    }

    /// CSV: the user properties to write, by their Graph names (`id` first is advised).
    #[must_use]
    pub fn user_columns<S: AsRef<str>>(mut self, columns: &[S]) -> Self {
        self.user_columns = columns.iter().map(|c| c.as_ref().to_owned()).collect();
        self
    }

    /// The format.
    pub fn format(&self) -> ExportFormat {
        self.format
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// The files, users first.
    pub files: Vec<PathBuf>,
    /// Users written.
    pub users: u64,
    /// Groups written.
    pub groups: u64,
    /// Memberships written.
    pub memberships: u64,
}

/// A CSV cell made inert for spreadsheets: one starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return gets a leading `'` (OWASP, "CSV Injection").
pub fn neutralize_cell(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// A JSON value as a CSV cell: text as is, lists joined by `;`, missing as empty.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| cell(Some(item)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

fn csv_record<I: IntoIterator<Item = String>>(cells: I) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(cells.into_iter().map(neutralize_cell))?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

fn csv_header(columns: &[String]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns)?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::File {
        path: path.to_owned(),
        source,
    }
}

/// Creates `out` (mode 0700) if missing; an existing folder must be private already.
fn prepare_folder(out: &Path) -> Result<(), MirrorError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let failed = file_error(out);
    match std::fs::metadata(out) {
        Ok(metadata) if metadata.is_dir() => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(MirrorError::invalid(format!(
                    "the export folder {} is open to other users (mode {mode:o}); use a new \
                     folder, or make it private with `chmod 700`",
                    out.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(MirrorError::invalid(format!(
            "{} is not a folder",
            out.display()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .map_err(&failed),
        Err(error) => Err(failed(error)),
    }
}

/// One export file being written.
struct Part {
    temp: PathBuf,
    target: PathBuf,
    writer: tokio::io::BufWriter<tokio::fs::File>,
}

impl Part {
    async fn create(out: &Path, name: &str, extension: &str) -> Result<Self, MirrorError> {
        let target = out.join(format!("{name}.{extension}"));
        let temp = out.join(format!(
            ".{name}.{extension}.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(file_error(&temp))?;
        Ok(Self {
            temp,
            target,
            writer: tokio::io::BufWriter::new(file),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), MirrorError> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(file_error(&self.temp))
    }

    /// Flushed and on disk, not yet in place.
    async fn finish(&mut self) -> Result<(), MirrorError> {
        let failed = file_error(&self.temp);
        self.writer.flush().await.map_err(&failed)?;
        self.writer.get_ref().sync_all().await.map_err(&failed)
    }
}

fn unencodable(error: &serde_json::Error) -> MirrorError {
    MirrorError::invalid(format!("an object does not serialize: {error}"))
}

fn csv_failed(path: &Path) -> impl Fn(csv::Error) -> MirrorError + '_ {
    move |error| MirrorError::File {
        path: path.to_owned(),
        source: std::io::Error::other(error.to_string()),
    }
}

async fn write_users(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    options: &ExportOptions,
    part: &mut Part,
) -> Result<u64, MirrorError> {
    let csv = options.format == ExportFormat::Csv;
    if csv {
        let header = csv_header(&options.user_columns).map_err(csv_failed(&part.temp))?;
        part.write(&header).await?;
    }
    let mut written = 0;
    let mut after: Option<String> = None;
    loop {
        let rows = users_after(tx, connection, after.as_deref(), PAGE).await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(last.clone());
        let mut buffer = Vec::new();
        for (id, data) in &rows {
            let user = decode_user(connection, id, data)?;
            if csv {
                let value = serde_json::to_value(&user).map_err(|error| unencodable(&error))?;
                let cells = options.user_columns.iter().map(|c| cell(value.get(c)));
                buffer.extend(csv_record(cells).map_err(csv_failed(&part.temp))?);
            } else {
                buffer.extend_from_slice(data.as_bytes());
                buffer.push(b'\n');
            }
            written += 1;
        }
        part.write(&buffer).await?;
    }
    Ok(written)
}

async fn write_groups(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    format: ExportFormat,
    part: &mut Part,
) -> Result<u64, MirrorError> {
    let csv = format == ExportFormat::Csv;
    let columns: Vec<String> = GROUP_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    if csv {
        let header = csv_header(&columns).map_err(csv_failed(&part.temp))?;
        part.write(&header).await?;
    }
    let mut written = 0;
    let mut after: Option<String> = None;
    loop {
        let rows = groups_after(tx, connection, after.as_deref(), PAGE).await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(last.clone());
        let mut buffer = Vec::new();
        for (id, data) in &rows {
            let group = decode_group(connection, id, data)?;
            if csv {
                let value = serde_json::to_value(&group).map_err(|error| unencodable(&error))?;
                let cells = columns.iter().map(|c| cell(value.get(c)));
                buffer.extend(csv_record(cells).map_err(csv_failed(&part.temp))?);
            } else {
                buffer.extend_from_slice(data.as_bytes());
                buffer.push(b'\n');
            }
            written += 1;
        }
        part.write(&buffer).await?;
    }
    Ok(written)
}

async fn write_memberships(
    tx: &mut Tx<'_>,
    connection: ConnectionId,
    format: ExportFormat,
    part: &mut Part,
) -> Result<u64, MirrorError> {
    let csv = format == ExportFormat::Csv;
    if csv {
        let columns = ["groupId", "memberId", "memberType"].map(str::to_owned);
        let header = csv_header(&columns).map_err(csv_failed(&part.temp))?;
        part.write(&header).await?;
    }
    let mut written = 0;
    let mut after: Option<(String, String)> = None;
    loop {
        let key = after.as_ref().map(|(g, m)| (g.as_str(), m.as_str()));
        let rows = memberships_after(tx, connection, key, PAGE).await?;
        let Some((group, member, _)) = rows.last() else {
            break;
        };
        after = Some((group.clone(), member.clone()));
        let mut buffer = Vec::new();
        for (group, member, kind) in rows {
            if csv {
                buffer.extend(csv_record([group, member, kind]).map_err(csv_failed(&part.temp))?);
            } else {
                let line =
                    serde_json::json!({"groupId": group, "memberId": member, "memberType": kind});
                buffer.extend(line.to_string().into_bytes());
                buffer.push(b'\n');
            }
            written += 1;
        }
        part.write(&buffer).await?;
    }
    Ok(written)
}

/// Writes the mirror of `connection` into the folder `out`: `users`, `groups` and
/// `memberships` (`.jsonl` or `.csv`), replacing an earlier export there. The folder is
/// created with mode 0700 if missing; an existing one must not be open to other users.
/// Files are 0600.
///
/// # Errors
/// [`MirrorError::Invalid`] for a folder open to others or a path that is not a folder;
/// [`MirrorError::File`]; [`MirrorError::Corrupt`] for a row that does not decode (no
/// file is replaced then); [`MirrorError::Database`].
pub async fn export(
    mirror: &Mirror,
    connection: ConnectionId,
    options: &ExportOptions,
    out: &Path,
) -> Result<ExportReport, MirrorError> {
    let folder = out.to_owned();
    tokio::task::spawn_blocking(move || prepare_folder(&folder))
        .await
        .map_err(|error| MirrorError::invalid(format!("the folder check stopped: {error}")))??;

    let mut parts: Vec<Part> = Vec::new();
    let written = write_parts(mirror, connection, options, out, &mut parts).await;
    let counts = match written {
        Ok(counts) => counts,
        Err(error) => {
            for part in &parts {
                let _ = tokio::fs::remove_file(&part.temp).await;
            }
            return Err(error);
        }
    };
    let mut files = Vec::with_capacity(parts.len());
    for part in &parts {
        tokio::fs::rename(&part.temp, &part.target)
            .await
            .map_err(file_error(&part.target))?;
        files.push(part.target.clone());
    }
    // The renames are durable once the folder is synced.
    tokio::fs::File::open(out)
        .await
        .map_err(file_error(out))?
        .sync_all()
        .await
        .map_err(file_error(out))?;
    let [users, groups, memberships] = counts;
    Ok(ExportReport {
        files,
        users,
        groups,
        memberships,
    })
}

async fn write_parts(
    mirror: &Mirror,
    connection: ConnectionId,
    options: &ExportOptions,
    out: &Path,
    parts: &mut Vec<Part>,
) -> Result<[u64; 3], MirrorError> {
    let extension = options.format.extension();
    let mut tx = mirror
        .pool
        .read()
        .await
        .map_err(MirrorError::database("begin the export"))?;

    parts.push(Part::create(out, "users", extension).await?);
    let users = write_users(&mut tx, connection, options, &mut parts[0]).await?;
    parts.push(Part::create(out, "groups", extension).await?);
    let groups = write_groups(&mut tx, connection, options.format, &mut parts[1]).await?;
    parts.push(Part::create(out, "memberships", extension).await?);
    let memberships = write_memberships(&mut tx, connection, options.format, &mut parts[2]).await?;
    drop(tx);
    for part in parts.iter_mut() {
        part.finish().await?;
    }
    Ok([users, groups, memberships])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_made_inert() {
        for dangerous in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(
                neutralize_cell(dangerous.to_owned()),
                format!("'{dangerous}")
            );
        }
        for safe in ["Ada", "", "a=b", "'quoted", "1"] {
            assert_eq!(neutralize_cell(safe.to_owned()), safe);
        }
    }

    #[test]
    fn json_values_become_cells() {
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(Some(&serde_json::json!("x"))), "x");
        assert_eq!(cell(Some(&serde_json::json!(["a", "b"]))), "a;b");
        assert_eq!(cell(Some(&serde_json::json!(true))), "true");
    }

    #[test]
    fn csv_records_are_quoted_and_neutralized() {
        let record = csv_record(["=HYPERLINK(\"x\")".to_owned(), "a,b".to_owned()]).expect("csv");
        assert_eq!(
            String::from_utf8(record).expect("utf-8"),
            "\"'=HYPERLINK(\"\"x\"\")\",\"a,b\"\n"
        );
    }
}
