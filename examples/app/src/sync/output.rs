//! The export folder: `users`, `groups` and `memberships` as JSON Lines or CSV, a
//! `summary.json`, and the state the next delta sync starts from.
//!
//! The state is the previous export itself in JSON Lines (with `--format csv` a copy in
//! `.state/`, since CSV loses JSON types) plus `sync-manifest.json` naming the
//! connection and the user columns. Every file is written to `*.tmp` and renamed into
//! place; the manifest is removed first and written last, so a run that stops half-way
//! leaves no manifest and the next run is a full import reconciled by diff.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use connection_store::ConnectionId;
use serde_json::{Value, json};

use super::{Record, Report, Snapshot};

/// The export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row; lists joined by `;`.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

const MANIFEST: &str = "sync-manifest.json";
const NAMES: [&str; 3] = ["users", "groups", "memberships"];

/// Where the state lives: the export itself for JSON Lines, `.state/` for CSV.
fn state_dir(out: &Path, format: Format) -> PathBuf {
    match format {
        Format::Jsonl => out.to_path_buf(),
        Format::Csv => out.join(".state"),
    }
}

/// The previous export, as the next sync starts from it.
pub struct Previous {
    /// `id` and the user attributes it was made with.
    pub user_columns: Vec<String>,
    /// Its content.
    pub snapshot: Snapshot,
}

/// Reads the previous export of connection `id` in `out`, if there is a complete one.
///
/// # Errors
/// When the folder holds another connection's export, or a file is unreadable or
/// damaged (then delete the folder, or use another `--out`, for a fresh full import).
pub fn load_previous(
    out: &Path,
    format: Format,
    id: ConnectionId,
) -> anyhow::Result<Option<Previous>> {
    // The folder may hold an export in the other format: its state counts too, so a
    // change of --format still reports only what changed.
    let other = match format {
        Format::Jsonl => Format::Csv,
        Format::Csv => Format::Jsonl,
    };
    match load_state(&state_dir(out, format), out, id)? {
        Some(previous) => Ok(Some(previous)),
        None => load_state(&state_dir(out, other), out, id),
    }
}

fn load_state(dir: &Path, out: &Path, id: ConnectionId) -> anyhow::Result<Option<Previous>> {
    let manifest_path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("could not read {}", manifest_path.display()));
        }
    };
    let manifest: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged", manifest_path.display()))?;
    let connection = manifest
        .get("connection")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if connection != id.to_string() {
        bail!(
            "{} holds the export of another connection ({connection})\nnext step: choose \
             another --out folder for this connection",
            out.display()
        );
    }
    let user_columns: Vec<String> = manifest
        .get("userColumns")
        .and_then(Value::as_array)
        .map(|columns| {
            columns
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let damaged = |path: &Path| {
        format!(
            "{} is damaged; delete the folder for a fresh import",
            path.display()
        )
    };

    let mut snapshot = Snapshot::default();
    for (name, into) in [
        ("users", &mut snapshot.users),
        ("groups", &mut snapshot.groups),
    ] {
        let path = dir.join(format!("{name}.jsonl"));
        for record in read_lines(&path)? {
            let Value::Object(record) = record.with_context(|| damaged(&path))? else {
                bail!(damaged(&path));
            };
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .with_context(|| damaged(&path))?;
            into.insert(id.to_owned(), record);
        }
    }
    let path = dir.join("memberships.jsonl");
    for row in read_lines(&path)? {
        let row = row.with_context(|| damaged(&path))?;
        let field = |name: &str| row.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(group), Some(member), Some(kind)) =
            (field("groupId"), field("memberId"), field("memberType"))
        else {
            bail!(damaged(&path));
        };
        snapshot
            .members
            .entry(group)
            .or_default()
            .insert(member, kind);
    }
    Ok(Some(Previous {
        user_columns,
        snapshot,
    }))
}

fn read_lines(path: &Path) -> anyhow::Result<impl Iterator<Item = serde_json::Result<Value>>> {
    let file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(&line)))
}

/// The summary written as `summary.json`.
pub(crate) fn summary_json(report: &Report) -> Value {
    json!({
        "kind": report.kind.label(),
        "users": report.users,
        "groups": report.groups,
        "memberships": report.memberships,
        "syncedAt": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// Writes the export and the state, each file through a temporary file and a rename;
/// returns the export files.
///
/// # Errors
/// Any file error; the files already renamed stay, but the manifest is gone, so the
/// next sync is a full import.
pub(crate) fn write_all(
    out: &Path,
    format: Format,
    id: ConnectionId,
    columns: &[String],
    snapshot: &Snapshot,
    summary: &Value,
) -> anyhow::Result<Vec<PathBuf>> {
    let state = state_dir(out, format);
    std::fs::create_dir_all(&state)
        .with_context(|| format!("could not create {}", state.display()))?;

    // Everything to temporary files first.
    let mut renames: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut exported = Vec::new();
    for name in NAMES {
        let path = state.join(format!("{name}.jsonl"));
        let tmp = tmp_of(&path);
        write_jsonl(&tmp, name, snapshot)?;
        renames.push((tmp, path.clone()));
        if format == Format::Jsonl {
            exported.push(path);
        }
    }
    if format == Format::Csv {
        for name in NAMES {
            let path = out.join(format!("{name}.{}", format.extension()));
            let tmp = tmp_of(&path);
            write_csv(&tmp, name, columns, snapshot)?;
            renames.push((tmp, path.clone()));
            exported.push(path);
        }
    }
    let summary_path = out.join("summary.json");
    let tmp = tmp_of(&summary_path);
    write_file(&tmp, |w| {
        serde_json::to_writer_pretty(&mut *w, summary)?;
        Ok(writeln!(w)?)
    })?;
    renames.push((tmp, summary_path.clone()));
    exported.push(summary_path);

    // Then into place, without a manifest while the files are a mix of old and new. The
    // other format's state (from an earlier run with another --format) is now stale.
    let manifest_path = state.join(MANIFEST);
    let other = match format {
        Format::Jsonl => Format::Csv,
        Format::Csv => Format::Jsonl,
    };
    for stale in [state_dir(out, other).join(MANIFEST), manifest_path.clone()] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("could not replace {}", stale.display()));
            }
        }
    }
    for (from, to) in renames {
        std::fs::rename(&from, &to)
            .with_context(|| format!("could not move {} into place", to.display()))?;
    }
    let manifest = json!({
        "connection": id.to_string(),
        "userColumns": columns,
        "users": snapshot.users.len(),
        "groups": snapshot.groups.len(),
        "memberships": snapshot.membership_count(),
    });
    let tmp = tmp_of(&manifest_path);
    write_file(&tmp, |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        Ok(writeln!(w)?)
    })?;
    std::fs::rename(&tmp, &manifest_path)
        .with_context(|| format!("could not move {} into place", manifest_path.display()))?;
    Ok(exported)
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    body(&mut writer).with_context(|| format!("could not write {}", path.display()))?;
    let file = writer
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)
        .with_context(|| format!("could not write {}", path.display()))?;
    // On disk before the rename makes it the export.
    file.sync_all()
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

fn membership_rows(snapshot: &Snapshot) -> impl Iterator<Item = (&str, &str, &str)> {
    snapshot.members.iter().flat_map(|(group, members)| {
        members
            .iter()
            .map(move |(member, kind)| (group.as_str(), member.as_str(), kind.as_str()))
    })
}

fn write_jsonl(path: &Path, name: &str, snapshot: &Snapshot) -> anyhow::Result<()> {
    write_file(path, |w| {
        match name {
            "users" | "groups" => {
                let records: &BTreeMap<String, Record> = if name == "users" {
                    &snapshot.users
                } else {
                    &snapshot.groups
                };
                for record in records.values() {
                    serde_json::to_writer(&mut *w, record)?;
                    w.write_all(b"\n")?;
                }
            }
            _ => {
                for (group, member, kind) in membership_rows(snapshot) {
                    serde_json::to_writer(
                        &mut *w,
                        &json!({"groupId": group, "memberId": member, "memberType": kind}),
                    )?;
                    w.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    })
}

fn write_csv(
    path: &Path,
    name: &str,
    columns: &[String],
    snapshot: &Snapshot,
) -> anyhow::Result<()> {
    write_file(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        match name {
            "users" | "groups" => {
                let (records, header): (&BTreeMap<String, Record>, Vec<String>) = if name == "users"
                {
                    (&snapshot.users, columns.to_vec())
                } else {
                    let mut header = vec!["id".to_owned()];
                    header.extend(super::GROUP_SELECT.iter().map(|c| (*c).to_owned()));
                    (&snapshot.groups, header)
                };
                csv.write_record(&header)?;
                for record in records.values() {
                    csv.write_record(header.iter().map(|column| cell(record.get(column))))?;
                }
            }
            _ => {
                csv.write_record(["groupId", "memberId", "memberType"])?;
                for (group, member, kind) in membership_rows(snapshot) {
                    csv.write_record([group, member, kind])?;
                }
            }
        }
        csv.flush()?;
        Ok(())
    })
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
