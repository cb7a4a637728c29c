//! `/groups`: list, get, members, transitive members, delta.

use crate::client::GraphClient;
use crate::delta::{DeltaRequest, DeltaRound};
use crate::models::directory_object::DirectoryObject;
use crate::models::group::Group;
use crate::paging::DeltaLink;
use crate::request::{GetRequest, ListRequest};

/// The `/groups` endpoints; from [`GraphClient::groups`].
#[derive(Debug, Clone)]
pub struct GroupsApi {
    client: GraphClient,
}

impl GraphClient {
    /// The `/groups` endpoints.
    pub fn groups(&self) -> GroupsApi {
        GroupsApi {
            client: self.clone(),
        }
    }
}

impl GroupsApi {
    pub(crate) fn client(&self) -> &GraphClient {
        &self.client
    }

    /// `GET /groups`.
    pub fn list(&self) -> ListRequest<Group> {
        ListRequest::new(self.client.clone(), Ok(self.client.fixed_url(&["groups"])))
    }

    /// `GET /groups/{id}`.
    pub fn get(&self, id: impl AsRef<str>) -> GetRequest<Group> {
        GetRequest::new(
            self.client.clone(),
            self.client.url_for(&["groups", id.as_ref()]),
        )
    }

    /// `GET /groups/{id}/members`: direct members (users, groups, contacts, devices, ...).
    pub fn members(&self, id: impl AsRef<str>) -> ListRequest<DirectoryObject> {
        ListRequest::new(
            self.client.clone(),
            self.client.url_for(&["groups", id.as_ref(), "members"]),
        )
    }

    /// `GET /groups/{id}/transitiveMembers`: direct and nested members.
    pub fn transitive_members(&self, id: impl AsRef<str>) -> ListRequest<DirectoryObject> {
        ListRequest::new(
            self.client.clone(),
            self.client
                .url_for(&["groups", id.as_ref(), "transitiveMembers"]),
        )
    }

    /// `GET /groups/delta`: a first delta round; `.select(["displayName", "members"])` adds `members@delta`.
    pub fn delta(&self) -> DeltaRequest<Group> {
        DeltaRequest::new(
            self.client.clone(),
            self.client.fixed_url(&["groups", "delta"]),
        )
    }

    /// The next delta round from a kept [`DeltaLink`]: it runs at once when streamed,
    /// with the `$select` and `$filter` of the round that started the chain (spec 9), so
    /// it has none to set.
    pub fn delta_from(&self, link: &DeltaLink) -> DeltaRound<Group> {
        DeltaRound::resume(
            self.client.clone(),
            link,
            self.client
                .fixed_url(&["groups", "delta"])
                .path()
                .to_owned(),
        )
    }
}
