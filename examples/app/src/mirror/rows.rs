//! Users and groups as rows: the JSON the mirror keeps, the columns it queries, and the
//! search terms and staged changes it writes.

use connection_store::ConnectionId;
use graph_client::sync::{Change, MemberType};
use graph_client::{Group, ObjectId, User};

use super::db::Arg;
use super::error::{MirrorError, ObjectKind};

/// At most this many search terms are used; the rest are ignored.
pub const MAX_SEARCH_TERMS: usize = 8;
/// A search term is cut to this many characters.
pub const MAX_TERM_CHARS: usize = 64;

/// The columns of a user row after `snapshot`: those a query reads, and the JSON.
pub(crate) const USER_COLUMNS: &str = "id, sort_key, search_text, account_enabled, user_type, data";
pub(crate) const USER_COLUMN_COUNT: usize = 6;

/// The columns of a group row after `snapshot`.
pub(crate) const GROUP_COLUMNS: &str = "id, sort_key, data";
pub(crate) const GROUP_COLUMN_COUNT: usize = 3;

/// `SET column = excluded.column` for every column but the key.
pub(crate) fn excluded(columns: &str) -> String {
    columns
        .split(',')
        .map(str::trim)
        .filter(|column| *column != "id")
        .map(|column| format!("{column} = excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of a text argument (empty for any other).
pub(crate) fn text_of(arg: &Arg) -> &str {
    match arg {
        Arg::Text(text) => text,
        _ => "",
    }
}

fn blank_to_none(value: Option<&String>) -> Option<&str> {
    value.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The name a user is shown and sorted by: `displayName`, else given name and surname,
/// else the UPN, the mail address or the id (as the web app's employee list shows it).
pub(crate) fn shown_name(user: &User, id: &str) -> String {
    if let Some(name) = blank_to_none(user.display_name.as_ref()) {
        return name.to_owned();
    }
    let parts: Vec<&str> = [&user.given_name, &user.surname]
        .into_iter()
        .filter_map(|part| blank_to_none(part.as_ref()))
        .collect();
    if !parts.is_empty() {
        return parts.join(" ");
    }
    blank_to_none(user.user_principal_name.as_ref())
        .or(blank_to_none(user.mail.as_ref()))
        .unwrap_or(id)
        .to_owned()
}

/// A user as the mirror stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserRow {
    /// The columns' values, the id first and the JSON last.
    args: Vec<Arg>,
}

impl UserRow {
    /// The row of `user`; `None` for a user without an id (which a sink ignores).
    pub(crate) fn of(user: &User) -> Result<Option<Self>, serde_json::Error> {
        let Some(id) = user.id.as_ref().map(|id| id.as_str().to_owned()) else {
            return Ok(None);
        };
        let data = serde_json::to_string(user)?;
        let searched = [
            &user.display_name,
            &user.given_name,
            &user.surname,
            &user.mail,
            &user.user_principal_name,
            &user.job_title,
            &user.department,
            &user.company_name,
            &user.office_location,
            &user.city,
        ];
        // One field a line, so a term never matches across two fields.
        let search_text = searched
            .into_iter()
            .filter_map(|field| field.as_deref())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join("\n");
        let args = vec![
            Arg::Text(id.clone()),
            Arg::Text(shown_name(user, &id).to_lowercase()),
            Arg::Text(search_text),
            user.account_enabled.into(),
            user.user_type.clone().into(),
            Arg::Text(data),
        ];
        Ok(Some(Self { args }))
    }

    /// The object's id.
    pub(crate) fn id(&self) -> &str {
        self.args.first().map_or("", text_of)
    }

    /// The object as JSON.
    pub(crate) fn data(&self) -> &str {
        self.args.last().map_or("", text_of)
    }

    /// The values of [`USER_COLUMNS`], in order.
    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }
}

/// A group as the mirror stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupRow {
    /// The columns' values, the id first and the JSON last.
    args: Vec<Arg>,
}

impl GroupRow {
    /// The row of `group`; `None` for a group without an id.
    pub(crate) fn of(group: &Group) -> Result<Option<Self>, serde_json::Error> {
        let Some(id) = group.id.as_ref().map(|id| id.as_str().to_owned()) else {
            return Ok(None);
        };
        let data = serde_json::to_string(group)?;
        let name = blank_to_none(group.display_name.as_ref())
            .or(blank_to_none(group.mail.as_ref()))
            .unwrap_or(&id)
            .to_lowercase();
        let args = vec![Arg::Text(id), Arg::Text(name), Arg::Text(data)];
        Ok(Some(Self { args }))
    }

    /// The object's id.
    pub(crate) fn id(&self) -> &str {
        self.args.first().map_or("", text_of)
    }

    /// The object as JSON.
    pub(crate) fn data(&self) -> &str {
        self.args.last().map_or("", text_of)
    }

    /// The values of [`GROUP_COLUMNS`], in order.
    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }
}

/// Decodes a stored user; a row that does not decode is [`MirrorError::Corrupt`].
pub(crate) fn decode_user(
    connection: ConnectionId,
    id: &str,
    data: &str,
) -> Result<User, MirrorError> {
    serde_json::from_str(data)
        .map_err(|error| MirrorError::undecodable(connection, ObjectKind::User, id, &error))
}

/// Decodes a stored group; a row that does not decode is [`MirrorError::Corrupt`].
pub(crate) fn decode_group(
    connection: ConnectionId,
    id: &str,
    data: &str,
) -> Result<Group, MirrorError> {
    serde_json::from_str(data)
        .map_err(|error| MirrorError::undecodable(connection, ObjectKind::Group, id, &error))
}

/// A change as the mirror works with it: ids as text, objects as rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Staged {
    UserUpserted(UserRow),
    UserRemoved(String),
    GroupUpserted(GroupRow),
    GroupRemoved(String),
    MemberAdded {
        group: String,
        member: String,
        member_type: String,
    },
    MemberRemoved {
        group: String,
        member: String,
    },
}

/// A row of `mirror_staged`: `(seq, kind, object_id, member_id, member_type, data)`.
pub(crate) type StagedRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Staged {
    /// The staged form of `change`; `None` for one a sink ignores (an object without id).
    ///
    /// # Errors
    /// [`MirrorError::Invalid`] for a change this mirror does not know, or an object that
    /// does not serialize.
    pub(crate) fn of(change: &Change) -> Result<Option<Self>, MirrorError> {
        let unencodable = |error: serde_json::Error| {
            MirrorError::invalid(format!("an object does not serialize: {error}"))
        };
        Ok(match change {
            Change::UserUpserted(user) => UserRow::of(user)
                .map_err(unencodable)?
                .map(Self::UserUpserted),
            Change::UserRemoved { id, .. } => Some(Self::UserRemoved(id.as_str().to_owned())),
            Change::GroupUpserted(group) => GroupRow::of(group)
                .map_err(unencodable)?
                .map(Self::GroupUpserted),
            Change::GroupRemoved { id, .. } => Some(Self::GroupRemoved(id.as_str().to_owned())),
            Change::MemberAdded {
                group,
                member,
                member_type,
            } => Some(Self::MemberAdded {
                group: group.as_str().to_owned(),
                member: member.as_str().to_owned(),
                member_type: member_type.as_str().to_owned(),
            }),
            Change::MemberRemoved { group, member } => Some(Self::MemberRemoved {
                group: group.as_str().to_owned(),
                member: member.as_str().to_owned(),
            }),
            _ => {
                return Err(MirrorError::invalid(
                    "a kind of change this mirror does not know",
                ));
            }
        })
    }

    /// About how many bytes of memory it holds (a sink bounds what it buffers by it).
    pub(crate) fn weight(&self) -> usize {
        let texts = |args: &[Arg]| {
            args.iter()
                .map(|arg| match arg {
                    Arg::Text(text) | Arg::OptText(Some(text)) => text.len(),
                    _ => 0,
                })
                .sum::<usize>()
        };
        let strings = match self {
            Self::UserUpserted(row) => texts(row.args()),
            Self::GroupUpserted(row) => texts(row.args()),
            Self::UserRemoved(id) | Self::GroupRemoved(id) => id.len(),
            Self::MemberAdded {
                group,
                member,
                member_type,
            } => group.len() + member.len() + member_type.len(),
            Self::MemberRemoved { group, member } => group.len() + member.len(),
        };
        std::mem::size_of::<Self>() + strings
    }

    /// The values of `mirror_staged`'s `kind, object_id, member_id, member_type, data`.
    pub(crate) fn columns(&self) -> [Arg; 5] {
        let none = || Arg::OptText(None);
        match self {
            Self::UserUpserted(row) => [
                Arg::from("user_upserted"),
                Arg::Text(row.id().to_owned()),
                none(),
                none(),
                Arg::OptText(Some(row.data().to_owned())),
            ],
            Self::UserRemoved(id) => [
                Arg::from("user_removed"),
                Arg::Text(id.clone()),
                none(),
                none(),
                none(),
            ],
            Self::GroupUpserted(row) => [
                Arg::from("group_upserted"),
                Arg::Text(row.id().to_owned()),
                none(),
                none(),
                Arg::OptText(Some(row.data().to_owned())),
            ],
            Self::GroupRemoved(id) => [
                Arg::from("group_removed"),
                Arg::Text(id.clone()),
                none(),
                none(),
                none(),
            ],
            Self::MemberAdded {
                group,
                member,
                member_type,
            } => [
                Arg::from("member_added"),
                Arg::Text(group.clone()),
                Arg::OptText(Some(member.clone())),
                Arg::OptText(Some(member_type.clone())),
                none(),
            ],
            Self::MemberRemoved { group, member } => [
                Arg::from("member_removed"),
                Arg::Text(group.clone()),
                Arg::OptText(Some(member.clone())),
                none(),
                none(),
            ],
        }
    }

    /// Reads a row of `mirror_staged` back.
    pub(crate) fn from_row(connection: ConnectionId, row: StagedRow) -> Result<Self, MirrorError> {
        let (seq, kind, object_id, member_id, member_type, data) = row;
        let damaged = |reason: &str| {
            MirrorError::corrupt(
                connection,
                ObjectKind::StagedChange,
                seq.to_string(),
                reason,
            )
        };
        Ok(match (kind.as_str(), member_id, member_type, data) {
            ("user_upserted", None, None, Some(data)) => {
                let user = decode_user(connection, &object_id, &data)?;
                let row = UserRow::of(&user)
                    .map_err(|_| damaged("the user does not serialize"))?
                    .filter(|row| row.id() == object_id)
                    .ok_or_else(|| damaged("the user's id does not match"))?;
                Self::UserUpserted(row)
            }
            ("user_removed", None, None, None) => Self::UserRemoved(object_id),
            ("group_upserted", None, None, Some(data)) => {
                let group = decode_group(connection, &object_id, &data)?;
                let row = GroupRow::of(&group)
                    .map_err(|_| damaged("the group does not serialize"))?
                    .filter(|row| row.id() == object_id)
                    .ok_or_else(|| damaged("the group's id does not match"))?;
                Self::GroupUpserted(row)
            }
            ("group_removed", None, None, None) => Self::GroupRemoved(object_id),
            ("member_added", Some(member), Some(member_type), None) => Self::MemberAdded {
                group: object_id,
                member,
                member_type,
            },
            ("member_removed", Some(member), None, None) => Self::MemberRemoved {
                group: object_id,
                member,
            },
            _ => return Err(damaged("an unknown kind or missing columns")),
        })
    }
}

/// A member type as stored (its short name) read back.
pub(crate) fn member_type(stored: &str) -> MemberType {
    MemberType::from_type_name(stored)
}

/// An id as stored read back.
pub(crate) fn object_id(stored: String) -> ObjectId {
    ObjectId::new(stored)
}

/// The search text as at most [`MAX_SEARCH_TERMS`] lower-case terms of at most
/// [`MAX_TERM_CHARS`] characters, each a `LIKE` pattern (`%term%`, with `\`, `%` and `_`
/// escaped by `\`).
pub(crate) fn like_patterns(search: Option<&str>) -> Vec<String> {
    search
        .unwrap_or_default()
        .split_whitespace()
        .take(MAX_SEARCH_TERMS)
        .map(|term| {
            let term: String = term.to_lowercase().chars().take(MAX_TERM_CHARS).collect();
            let mut pattern = String::with_capacity(term.len() + 2);
            pattern.push('%');
            for c in term.chars() {
                if matches!(c, '\\' | '%' | '_') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            pattern
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(value: serde_json::Value) -> User {
        serde_json::from_value(value).expect("user")
    }

    #[test]
    fn search_terms_are_bounded_lower_case_and_escaped() {
        assert_eq!(like_patterns(None), Vec::<String>::new());
        assert_eq!(like_patterns(Some("  ")), Vec::<String>::new());
        assert_eq!(
            like_patterns(Some("Ada 100%_x a\\b")),
            ["%ada%", "%100\\%\\_x%", "%a\\\\b%"]
        );
        let many = "t ".repeat(20);
        assert_eq!(like_patterns(Some(&many)).len(), MAX_SEARCH_TERMS);
        let long = "é".repeat(100);
        assert_eq!(
            like_patterns(Some(&long))[0].chars().count(),
            MAX_TERM_CHARS + 2
        );
    }

    #[test]
    fn shown_name_falls_back_like_the_employee_list() {
        let named = user(serde_json::json!({"id": "1", "displayName": "Ada Lovelace"}));
        assert_eq!(shown_name(&named, "1"), "Ada Lovelace");
        let parts = user(
            serde_json::json!({"id": "2", "displayName": " ", "givenName": "Alan", "surname": "Turing"}),
        );
        assert_eq!(shown_name(&parts, "2"), "Alan Turing");
        let upn = user(serde_json::json!({"id": "3", "userPrincipalName": "x@contoso.com"}));
        assert_eq!(shown_name(&upn, "3"), "x@contoso.com");
        assert_eq!(shown_name(&User::default(), "4"), "4");
    }

    #[test]
    fn staged_changes_round_trip_through_their_columns() {
        let connection = ConnectionId::new();
        let ada =
            user(serde_json::json!({"id": "u1", "displayName": "Ada", "jobTitle": "Engineer"}));
        let changes = [
            Change::UserUpserted(Box::new(ada)),
            Change::UserRemoved {
                id: ObjectId::new("u2"),
                reason: graph_client::RemovedReason::Deleted,
            },
            Change::MemberAdded {
                group: ObjectId::new("g1"),
                member: ObjectId::new("u1"),
                member_type: MemberType::User,
            },
            Change::MemberRemoved {
                group: ObjectId::new("g1"),
                member: ObjectId::new("u3"),
            },
            Change::GroupRemoved {
                id: ObjectId::new("g2"),
                reason: graph_client::RemovedReason::Changed,
            },
        ];
        for (seq, change) in changes.iter().enumerate() {
            let staged = Staged::of(change).expect("stage").expect("kept");
            let text = |arg: &Arg| match arg {
                Arg::Text(text) => Some(text.clone()),
                Arg::OptText(text) => text.clone(),
                _ => None,
            };
            let [kind, object, member, member_type, data] = staged.columns();
            let row = (
                i64::try_from(seq).expect("seq"),
                text(&kind).expect("kind"),
                text(&object).expect("object"),
                text(&member),
                text(&member_type),
                text(&data),
            );
            assert_eq!(Staged::from_row(connection, row).expect("back"), staged);
        }
        assert_eq!(
            Staged::of(&Change::UserUpserted(Box::default())).expect("stage"),
            None,
            "a user without an id is ignored"
        );
    }
}
