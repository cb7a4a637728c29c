//! [`DirectoryObject`]: the members of `members`, `transitiveMembers`, `memberOf` and
//! `manager`, told apart by `@odata.type` (spec 13).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::ObjectId;
use super::group::Group;
use super::user::User;

/// A directory object as members and memberships list them, dispatched on `@odata.type`.
///
/// An `@odata.type` this crate does not model, or none at all (some documented samples
/// omit it), is [`Other`](DirectoryObject::Other), never a decode error. Objects the caller
/// may not read come back as "limited information" (type and id only, spec 8b) and decode
/// into the matching variant with the other properties `None`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DirectoryObject {
    /// `#microsoft.graph.user`
    User(Box<User>),
    /// `#microsoft.graph.group`
    Group(Box<Group>),
    /// `#microsoft.graph.orgContact`
    OrgContact(DirectoryEntry),
    /// `#microsoft.graph.device`
    Device(DirectoryEntry),
    /// `#microsoft.graph.servicePrincipal`
    ServicePrincipal(DirectoryEntry),
    /// `#microsoft.graph.directoryRole`
    DirectoryRole(DirectoryEntry),
    /// `#microsoft.graph.administrativeUnit`
    AdministrativeUnit(DirectoryEntry),
    /// Any other type, or no `@odata.type` at all: kept whole.
    Other {
        /// The `@odata.type`, if present.
        odata_type: Option<String>,
        /// The `id`, if present.
        id: Option<ObjectId>,
        /// All properties as received.
        raw: Map<String, Value>,
    },
}

/// The common properties of the directory object types without a dedicated model
/// (contacts, devices, service principals, roles, administrative units).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DirectoryEntry {
    /// Object id.
    #[serde(default)]
    pub id: Option<ObjectId>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Mail address (contacts).
    #[serde(default)]
    pub mail: Option<String>,
    /// Every other property (including `@odata.type`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DirectoryObject {
    /// The object id, when present.
    pub fn id(&self) -> Option<&ObjectId> {
        match self {
            Self::User(u) => u.id.as_ref(),
            Self::Group(g) => g.id.as_ref(),
            Self::OrgContact(e)
            | Self::Device(e)
            | Self::ServicePrincipal(e)
            | Self::DirectoryRole(e)
            | Self::AdministrativeUnit(e) => e.id.as_ref(),
            Self::Other { id, .. } => id.as_ref(),
        }
    }

    /// The display name, when present.
    pub fn display_name(&self) -> Option<&str> {
        match self {
            Self::User(u) => u.display_name.as_deref(),
            Self::Group(g) => g.display_name.as_deref(),
            Self::OrgContact(e)
            | Self::Device(e)
            | Self::ServicePrincipal(e)
            | Self::DirectoryRole(e)
            | Self::AdministrativeUnit(e) => e.display_name.as_deref(),
            Self::Other { raw, .. } => raw.get("displayName").and_then(Value::as_str),
        }
    }

    /// The short type name: `user`, `group`, `orgContact`, `device`, `servicePrincipal`,
    /// `directoryRole`, `administrativeUnit`, or for [`Other`](Self::Other) the short form
    /// of its `@odata.type` (`application`), `directoryObject` when it has none.
    pub fn type_name(&self) -> &str {
        match self {
            Self::User(_) => "user",
            Self::Group(_) => "group",
            Self::OrgContact(_) => "orgContact",
            Self::Device(_) => "device",
            Self::ServicePrincipal(_) => "servicePrincipal",
            Self::DirectoryRole(_) => "directoryRole",
            Self::AdministrativeUnit(_) => "administrativeUnit",
            Self::Other { odata_type, .. } => match odata_type.as_deref().map(short_type) {
                Some(name) if !name.is_empty() => name,
                _ => "directoryObject",
            },
        }
    }

    /// The user, when this is one.
    pub fn as_user(&self) -> Option<&User> {
        match self {
            Self::User(u) => Some(u),
            _ => None,
        }
    }

    /// The group, when this is one.
    pub fn as_group(&self) -> Option<&Group> {
        match self {
            Self::Group(g) => Some(g),
            _ => None,
        }
    }
}

/// The short type name of an `@odata.type` (`#microsoft.graph.user` → `user`).
pub(crate) fn short_type(odata_type: &str) -> &str {
    let t = odata_type.strip_prefix('#').unwrap_or(odata_type);
    t.strip_prefix("microsoft.graph.").unwrap_or(t)
}

impl<'de> Deserialize<'de> for DirectoryObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The type tag can come anywhere in the object, so the object is read once into a
        // map and then decoded as the tagged type (what serde's internally tagged enums do,
        // but with an `Other` that keeps unknown types instead of failing).
        let raw = Map::<String, Value>::deserialize(deserializer)?;
        let odata_type = raw
            .get("@odata.type")
            .and_then(Value::as_str)
            .map(short_type);
        let entry = |raw: Map<String, Value>| {
            DirectoryEntry::deserialize(Value::Object(raw)).map_err(D::Error::custom)
        };
        Ok(match odata_type {
            Some(t) if t.eq_ignore_ascii_case("user") => Self::User(Box::new(
                User::deserialize(Value::Object(raw)).map_err(D::Error::custom)?,
            )),
            Some(t) if t.eq_ignore_ascii_case("group") => Self::Group(Box::new(
                Group::deserialize(Value::Object(raw)).map_err(D::Error::custom)?,
            )),
            Some(t) if t.eq_ignore_ascii_case("orgContact") => Self::OrgContact(entry(raw)?),
            Some(t) if t.eq_ignore_ascii_case("device") => Self::Device(entry(raw)?),
            Some(t) if t.eq_ignore_ascii_case("servicePrincipal") => {
                Self::ServicePrincipal(entry(raw)?)
            }
            Some(t) if t.eq_ignore_ascii_case("directoryRole") => Self::DirectoryRole(entry(raw)?),
            Some(t) if t.eq_ignore_ascii_case("administrativeUnit") => {
                Self::AdministrativeUnit(entry(raw)?)
            }
            _ => Self::Other {
                odata_type: raw
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                id: raw.get("id").and_then(Value::as_str).map(ObjectId::from),
                raw,
            },
        })
    }
}

impl Serialize for DirectoryObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `@odata.type` was kept in each model's `extra`, so it round-trips.
        match self {
            Self::User(u) => u.serialize(serializer),
            Self::Group(g) => g.serialize(serializer),
            Self::OrgContact(e)
            | Self::Device(e)
            | Self::ServicePrincipal(e)
            | Self::DirectoryRole(e)
            | Self::AdministrativeUnit(e) => e.serialize(serializer),
            Self::Other { raw, .. } => raw.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_odata_type_is_other_with_id_and_raw() {
        let obj: DirectoryObject = serde_json::from_str(
            r##"{"@odata.type":"#microsoft.graph.application","id":"app-1","appId":"x"}"##,
        )
        .unwrap();
        match obj {
            DirectoryObject::Other {
                odata_type,
                id,
                raw,
            } => {
                assert_eq!(odata_type.as_deref(), Some("#microsoft.graph.application"));
                assert_eq!(id.unwrap().as_str(), "app-1");
                assert_eq!(raw["appId"], "x");
                assert_eq!(
                    DirectoryObject::Other {
                        odata_type: odata_type.clone(),
                        id: None,
                        raw: Map::new()
                    }
                    .type_name(),
                    "application"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limited_information_objects_decode_with_nulls() {
        let obj: DirectoryObject = serde_json::from_str(
            r##"{"@odata.type":"#microsoft.graph.user","id":"u-1","displayName":null,"businessPhones":null,"accountEnabled":null}"##,
        )
        .unwrap();
        let user = obj.as_user().unwrap();
        assert_eq!(user.id.as_ref().unwrap().as_str(), "u-1");
        assert!(user.display_name.is_none());
        assert!(user.business_phones.is_empty());
    }

    #[test]
    fn every_modelled_type_dispatches() {
        for (t, check) in [
            (
                "device",
                (|o: &DirectoryObject| matches!(o, DirectoryObject::Device(_)))
                    as fn(&DirectoryObject) -> bool,
            ),
            ("orgContact", |o| {
                matches!(o, DirectoryObject::OrgContact(_))
            }),
            ("servicePrincipal", |o| {
                matches!(o, DirectoryObject::ServicePrincipal(_))
            }),
            ("directoryRole", |o| {
                matches!(o, DirectoryObject::DirectoryRole(_))
            }),
            ("administrativeUnit", |o| {
                matches!(o, DirectoryObject::AdministrativeUnit(_))
            }),
            ("group", |o| matches!(o, DirectoryObject::Group(_))),
        ] {
            let json =
                format!(r##"{{"@odata.type":"#microsoft.graph.{t}","id":"x","displayName":"n"}}"##);
            let obj: DirectoryObject = serde_json::from_str(&json).unwrap();
            assert!(check(&obj), "{t}: {obj:?}");
            assert_eq!(obj.type_name(), t);
            assert_eq!(obj.id().unwrap().as_str(), "x");
            assert_eq!(obj.display_name(), Some("n"));
        }
    }
}
