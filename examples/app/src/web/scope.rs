//! The sync scope of one connection: which of the tenant's users count as employees.
//!
//! Issue 8 asks for "all users, or members of chosen groups, transitively; skip disabled
//! accounts; skip guests". The sync always mirrors the whole directory (its delta rounds
//! need it), and the scope is a [`UserQuery`] on the mirror ([`SyncScope::to_query`]): the
//! database answers who is in scope, so a changed scope takes effect at once, without a
//! new sync.
//!
//! The scope itself is kept per connection in `<data dir>/connections/<id>/scope.json`,
//! written through a temporary file and a rename; read and write failures are a
//! [`ScopeFileError`]. Removing the connection deletes the folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use graph_client::{ObjectId, User};

use crate::mirror::UserQuery;

/// The file name of the scope inside a connection's folder.
pub(crate) const SCOPE_FILE: &str = "scope.json";

/// The most groups one scope may name (a form larger than this is refused; the mirror
/// takes up to [`MAX_SCOPE_GROUPS`](crate::mirror::MAX_SCOPE_GROUPS)).
pub(crate) const MAX_GROUPS: usize = 500;

const _: () = assert!(MAX_GROUPS <= crate::mirror::MAX_SCOPE_GROUPS);

/// Which users of a connection's tenant are its employees.
///
/// The default is every user, without disabled accounts and without guests: an e-mail
/// signature is for the organization's own staff, a disabled account sends no mail, and a
/// guest (`userType` `Guest`) is someone from another organization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SyncScope {
    /// Group ids whose members (through nested groups too) are the employees; empty means
    /// all users. Sorted, without duplicates.
    pub groups: Vec<String>,
    /// Leave out accounts with `accountEnabled` false.
    pub skip_disabled: bool,
    /// Leave out users with `userType` `Guest`.
    pub skip_guests: bool,
}

impl Default for SyncScope {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            skip_disabled: true,
            skip_guests: true,
        }
    }
}

/// Why a connection's `scope.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ScopeFileError {
    /// The file exists but cannot be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a scope (hand-edited, or cut short by a full disk).
    #[error("{} is damaged; save the scope form again to replace it", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the JSON went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The folder or the file cannot be written.
    #[error("could not write {}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SyncScope {
    /// The scope file of the connection folder `dir`.
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(SCOPE_FILE)
    }

    /// The mirror query of the users in this scope.
    pub(crate) fn to_query(&self) -> UserQuery {
        UserQuery::new()
            .in_groups(self.groups.iter().map(|id| ObjectId::new(id.as_str())))
            .skip_disabled(self.skip_disabled)
            .skip_guests(self.skip_guests)
    }

    /// Whether `user` passes the disabled and guest filters, as the mirror applies them
    /// (an account without `accountEnabled` counts as enabled, a user without
    /// `userType` as a member). The group part is [`to_query`](Self::to_query)'s.
    pub(crate) fn admits_account(&self, user: &User) -> bool {
        let disabled = user.account_enabled == Some(false);
        let guest = user
            .user_type
            .as_deref()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("guest"));
        !((self.skip_disabled && disabled) || (self.skip_guests && guest))
    }

    /// Reads `dir/scope.json`; a missing file (or folder) is the [default](Self::default).
    /// Blocking: call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`ScopeFileError::Read`] when the file cannot be read, [`ScopeFileError::Damaged`]
    /// when it is not a scope.
    pub(crate) fn load(dir: &Path) -> Result<Self, ScopeFileError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => return Err(ScopeFileError::Read { path, source }),
        };
        match serde_json::from_str::<Self>(&text) {
            Ok(scope) => Ok(scope.normalized()),
            Err(source) => Err(ScopeFileError::Damaged { path, source }),
        }
    }

    /// Writes `dir/scope.json` (creating `dir`) through a temporary file and a rename, so
    /// a reader sees the old scope or the new one, never half of one. Blocking: call it
    /// from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`ScopeFileError::Write`] when the folder or the file cannot be written.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), ScopeFileError> {
        std::fs::create_dir_all(dir).map_err(|source| ScopeFileError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let path = Self::path(dir);
        // A name of its own per save: two saves at once never write the same temporary file.
        let tmp = dir.join(format!(
            "{SCOPE_FILE}.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut file, self)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok(())
        })()
        .map_err(|source| ScopeFileError::Write {
            path: tmp.clone(),
            source,
        });
        let renamed = written.and_then(|()| {
            std::fs::rename(&tmp, &path).map_err(|source| ScopeFileError::Write {
                path: path.clone(),
                source,
            })
        });
        if renamed.is_err() {
            // Best effort: the error that matters is the one returned.
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }

    /// Parses the scope form (`application/x-www-form-urlencoded` pairs, in order):
    /// `mode` = `all` | `groups`, one `group` per chosen group id, and the checkboxes
    /// `skip_disabled` and `skip_guests` (value `on` when ticked, absent otherwise). Other
    /// fields (`csrf`, ...) are ignored. With `mode=all` the `group` fields are ignored.
    /// Whether the groups exist is [`require_known`](Self::require_known)'s question.
    ///
    /// # Errors
    /// A [`ScopeError`] naming the field to fix: a missing or unknown `mode`, `groups`
    /// with no group chosen, more than [`MAX_GROUPS`] groups, or a checkbox with a value
    /// other than `on`.
    pub(crate) fn from_form(pairs: &[(String, String)]) -> Result<Self, ScopeError> {
        let mut mode = None;
        let mut groups = Vec::new();
        let mut skip_disabled = false;
        let mut skip_guests = false;
        for (name, value) in pairs {
            match name.as_str() {
                "mode" => mode = Some(value.trim()),
                "group" => {
                    let id = value.trim();
                    if !id.is_empty() {
                        groups.push(id.to_owned());
                    }
                }
                "skip_disabled" => skip_disabled = checkbox("skip_disabled", value)?,
                "skip_guests" => skip_guests = checkbox("skip_guests", value)?,
                _ => {}
            }
        }
        let groups = match mode {
            Some("all") => Vec::new(),
            Some("groups") => {
                groups.sort();
                groups.dedup();
                if groups.is_empty() {
                    return Err(ScopeError::NoGroupChosen);
                }
                if groups.len() > MAX_GROUPS {
                    return Err(ScopeError::TooManyGroups {
                        chosen: groups.len(),
                    });
                }
                groups
            }
            other => {
                return Err(ScopeError::BadMode {
                    value: other.map(shortened),
                });
            }
        };
        Ok(Self {
            groups,
            skip_disabled,
            skip_guests,
        })
    }

    /// This scope, if every group it names is known (`is_known_group`: in the
    /// connection's mirror).
    ///
    /// # Errors
    /// [`ScopeError::UnknownGroups`] with the unknown ids, sorted.
    pub(crate) fn require_known(
        self,
        is_known_group: impl Fn(&str) -> bool,
    ) -> Result<Self, ScopeError> {
        let unknown: Vec<String> = self
            .groups
            .iter()
            .filter(|id| !is_known_group(id))
            .cloned()
            .collect();
        if unknown.is_empty() {
            Ok(self)
        } else {
            Err(ScopeError::UnknownGroups { ids: unknown })
        }
    }

    /// Sorted, duplicate-free group ids without blanks.
    fn normalized(mut self) -> Self {
        self.groups.retain(|id| !id.trim().is_empty());
        self.groups.sort();
        self.groups.dedup();
        self
    }
}

fn checkbox(field: &'static str, value: &str) -> Result<bool, ScopeError> {
    if value == "on" {
        Ok(true)
    } else {
        Err(ScopeError::BadCheckbox {
            field,
            value: shortened(value),
        })
    }
}

/// At most 40 characters of a submitted value, for a message.
fn shortened(value: &str) -> String {
    value.chars().take(40).collect()
}

/// Why a submitted scope form was refused. [`Display`](std::fmt::Display) is a plain
/// sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ScopeError {
    /// `mode` was missing (`None`) or neither `all` nor `groups`.
    BadMode {
        /// The value sent, shortened.
        value: Option<String>,
    },
    /// `mode=groups` without any `group`.
    NoGroupChosen,
    /// More than [`MAX_GROUPS`] groups.
    TooManyGroups {
        /// How many distinct groups were sent.
        chosen: usize,
    },
    /// Group ids the connection's export does not have (deleted since, or made up).
    UnknownGroups {
        /// The unknown ids, sorted.
        ids: Vec<String>,
    },
    /// A checkbox sent a value other than `on`.
    BadCheckbox {
        /// `skip_disabled` or `skip_guests`.
        field: &'static str,
        /// The value sent, shortened.
        value: String,
    },
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMode { value: None } => {
                write!(f, "Choose whether to sync all users or chosen groups.")
            }
            Self::BadMode { value: Some(value) } => write!(
                f,
                "\"{value}\" is not a choice here: choose all users or chosen groups."
            ),
            Self::NoGroupChosen => {
                write!(f, "Choose at least one group, or choose to sync all users.")
            }
            Self::TooManyGroups { chosen } => write!(
                f,
                "{chosen} groups are chosen; at most {MAX_GROUPS} are allowed. Choose a \
                 group that contains the others instead."
            ),
            Self::UnknownGroups { ids } if ids.len() == 1 => write!(
                f,
                "One chosen group is not in the last sync (it may have been deleted). \
                 Sync now and choose again."
            ),
            Self::UnknownGroups { ids } => write!(
                f,
                "{} chosen groups are not in the last sync (they may have been deleted). \
                 Sync now and choose again.",
                ids.len()
            ),
            Self::BadCheckbox { field, value } => {
                write!(f, "\"{value}\" is not a valid value for {field}.")
            }
        }
    }
}

impl std::error::Error for ScopeError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "webapp-scope-test-{}",
                uuid::Uuid::new_v4().simple()
            ));
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn known(id: &str) -> bool {
        ["g1", "g2", "g3"].contains(&id)
    }

    /// The form parsed and its groups checked against [`known`].
    fn parse(pairs: &[(String, String)]) -> Result<SyncScope, ScopeError> {
        SyncScope::from_form(pairs)?.require_known(known)
    }

    #[test]
    fn default_scope_is_all_users_without_disabled_and_guests() {
        let scope = SyncScope::default();
        assert!(scope.groups.is_empty());
        assert!(scope.skip_disabled);
        assert!(scope.skip_guests);
    }

    #[test]
    fn load_of_a_missing_file_or_folder_is_the_default() {
        let dir = TempDir::new();
        assert_eq!(SyncScope::load(&dir.0).unwrap(), SyncScope::default());
        std::fs::create_dir_all(&dir.0).unwrap();
        assert_eq!(SyncScope::load(&dir.0).unwrap(), SyncScope::default());
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = TempDir::new();
        let nested = dir.0.join("connections").join("abc");
        let scope = SyncScope {
            groups: vec!["g1".into(), "g2".into()],
            skip_disabled: false,
            skip_guests: true,
        };
        scope.save(&nested).unwrap();
        assert_eq!(SyncScope::load(&nested).unwrap(), scope);
        let names: Vec<String> = std::fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SCOPE_FILE.to_owned()]);
        let text = std::fs::read_to_string(nested.join(SCOPE_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"groups": ["g1", "g2"], "skip_disabled": false, "skip_guests": true})
        );

        // Saving again replaces it.
        SyncScope::default().save(&nested).unwrap();
        assert_eq!(SyncScope::load(&nested).unwrap(), SyncScope::default());
    }

    #[test]
    fn load_of_a_damaged_file_is_an_error_naming_the_file() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        for damaged in ["{\"groups\": [", "{\"groups\": \"g1\"}", "null", ""] {
            std::fs::write(dir.0.join(SCOPE_FILE), damaged).unwrap();
            let error = SyncScope::load(&dir.0).unwrap_err();
            assert!(matches!(error, ScopeFileError::Damaged { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains("scope.json is damaged"), "{message}");
            assert!(message.contains(&dir.0.display().to_string()), "{message}");
        }
    }

    #[test]
    fn load_fills_missing_fields_with_defaults_and_normalizes_groups() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(
            dir.0.join(SCOPE_FILE),
            r#"{"groups": ["g2", "g1", "g2", " "], "skip_guests": false}"#,
        )
        .unwrap();
        assert_eq!(
            SyncScope::load(&dir.0).unwrap(),
            SyncScope {
                groups: vec!["g1".into(), "g2".into()],
                skip_disabled: true,
                skip_guests: false,
            }
        );
    }

    #[test]
    fn form_all_users_ignores_groups_and_reads_checkboxes() {
        let scope = parse(&form(&[
            ("csrf", "token"),
            ("mode", "all"),
            ("group", "g1"),
            ("group", "not-a-group"),
            ("skip_guests", "on"),
        ]))
        .unwrap();
        assert_eq!(
            scope,
            SyncScope {
                groups: Vec::new(),
                skip_disabled: false,
                skip_guests: true,
            }
        );
    }

    #[test]
    fn form_groups_are_sorted_and_deduplicated() {
        let scope = parse(&form(&[
            ("mode", "groups"),
            ("group", "g3"),
            ("group", "g1"),
            ("group", "g3"),
            ("group", ""),
            ("skip_disabled", "on"),
            ("skip_guests", "on"),
        ]))
        .unwrap();
        assert_eq!(
            scope,
            SyncScope {
                groups: vec!["g1".into(), "g3".into()],
                skip_disabled: true,
                skip_guests: true,
            }
        );
    }

    #[test]
    fn form_groups_mode_without_a_group_is_refused() {
        let error = parse(&form(&[("mode", "groups"), ("group", " ")])).unwrap_err();
        assert_eq!(error, ScopeError::NoGroupChosen);
        assert_eq!(
            error.to_string(),
            "Choose at least one group, or choose to sync all users."
        );
    }

    #[test]
    fn form_unknown_groups_are_refused_with_their_ids() {
        let error = parse(&form(&[
            ("mode", "groups"),
            ("group", "g1"),
            ("group", "gone"),
            ("group", "also-gone"),
        ]))
        .unwrap_err();
        assert_eq!(
            error,
            ScopeError::UnknownGroups {
                ids: vec!["also-gone".into(), "gone".into()]
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("2 chosen groups are not in the last sync")
        );
    }

    #[test]
    fn form_bad_or_missing_mode_is_refused() {
        let error = parse(&form(&[("mode", "everyone")])).unwrap_err();
        assert_eq!(
            error,
            ScopeError::BadMode {
                value: Some("everyone".into())
            }
        );
        assert_eq!(
            error.to_string(),
            "\"everyone\" is not a choice here: choose all users or chosen groups."
        );

        let error = parse(&form(&[("group", "g1")])).unwrap_err();
        assert_eq!(error, ScopeError::BadMode { value: None });
        assert_eq!(
            error.to_string(),
            "Choose whether to sync all users or chosen groups."
        );

        let long = "x".repeat(1000);
        let error = parse(&form(&[("mode", &long)])).unwrap_err();
        assert_eq!(
            error,
            ScopeError::BadMode {
                value: Some("x".repeat(40))
            }
        );
    }

    #[test]
    fn form_with_more_than_the_group_cap_is_refused() {
        let ids: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i:04}")).collect();
        let mut pairs = form(&[("mode", "groups")]);
        pairs.extend(ids.iter().map(|id| ("group".to_owned(), id.clone())));
        let error = SyncScope::from_form(&pairs).unwrap_err();
        assert_eq!(
            error,
            ScopeError::TooManyGroups {
                chosen: MAX_GROUPS + 1
            }
        );

        // Exactly the cap is accepted.
        pairs.pop();
        let scope = SyncScope::from_form(&pairs).unwrap();
        assert_eq!(scope.groups.len(), MAX_GROUPS);
    }

    #[test]
    fn form_checkbox_with_another_value_is_refused() {
        let error = parse(&form(&[("mode", "all"), ("skip_disabled", "yes please")])).unwrap_err();
        assert_eq!(
            error,
            ScopeError::BadCheckbox {
                field: "skip_disabled",
                value: "yes please".into()
            }
        );
    }

    #[test]
    fn the_scope_is_the_mirror_query_of_its_groups_and_filters() {
        let scope = SyncScope {
            groups: vec!["g1".into(), "g2".into()],
            skip_disabled: true,
            skip_guests: false,
        };
        assert_eq!(
            scope.to_query(),
            UserQuery::new()
                .in_groups([ObjectId::new("g1"), ObjectId::new("g2")])
                .skip_disabled(true)
                .skip_guests(false)
        );
        assert_eq!(
            SyncScope::default().to_query(),
            UserQuery::new().skip_disabled(true).skip_guests(true)
        );
    }

    #[test]
    fn admits_account_applies_the_filters_as_the_mirror_does() {
        let user = |enabled: Option<bool>, kind: Option<&str>| {
            let mut user = User::default();
            user.account_enabled = enabled;
            user.user_type = kind.map(str::to_owned);
            user
        };
        let strict = SyncScope::default();
        let open = SyncScope {
            groups: Vec::new(),
            skip_disabled: false,
            skip_guests: false,
        };
        for (account, strict_admits) in [
            (user(Some(true), Some("Member")), true),
            (user(None, None), true),
            (user(Some(false), Some("Member")), false),
            (user(Some(true), Some("Guest")), false),
            (user(Some(true), Some("guest")), false),
        ] {
            assert_eq!(
                strict.admits_account(&account),
                strict_admits,
                "{account:?}"
            );
            assert!(open.admits_account(&account), "{account:?}");
        }
    }
}
