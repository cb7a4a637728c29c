//! `/users`: list, get, memberships, manager, photo, delta.

use bytes::Bytes;
use reqwest::Method;

use crate::client::{Call, GraphClient};
use crate::delta::{DeltaRequest, DeltaRound};
use crate::error::GraphError;
use crate::models::directory_object::DirectoryObject;
use crate::models::user::User;
use crate::paging::DeltaLink;
use crate::request::{GetRequest, ListRequest};

/// The `/users` endpoints; from [`GraphClient::users`].
#[derive(Debug, Clone)]
pub struct UsersApi {
    client: GraphClient,
}

impl GraphClient {
    /// The `/users` endpoints.
    pub fn users(&self) -> UsersApi {
        UsersApi {
            client: self.clone(),
        }
    }
}

impl UsersApi {
    pub(crate) fn client(&self) -> &GraphClient {
        &self.client
    }

    /// `GET /users`: all users, paged (100 per page unless `$top` or the client's page size says otherwise).
    pub fn list(&self) -> ListRequest<User> {
        ListRequest::new(self.client.clone(), Ok(self.client.fixed_url(&["users"])))
    }

    /// `GET /users/{id | userPrincipalName}`.
    pub fn get(&self, id_or_upn: impl AsRef<str>) -> GetRequest<User> {
        GetRequest::new(
            self.client.clone(),
            self.client.url_for(&["users", id_or_upn.as_ref()]),
        )
    }

    /// `GET /users/{id}/memberOf`: groups, directory roles and administrative units the user is a direct member of.
    pub fn member_of(&self, id_or_upn: impl AsRef<str>) -> ListRequest<DirectoryObject> {
        ListRequest::new(
            self.client.clone(),
            self.client
                .url_for(&["users", id_or_upn.as_ref(), "memberOf"]),
        )
    }

    /// `GET /users/{id}/transitiveMemberOf`: direct and nested memberships.
    pub fn transitive_member_of(&self, id_or_upn: impl AsRef<str>) -> ListRequest<DirectoryObject> {
        ListRequest::new(
            self.client.clone(),
            self.client
                .url_for(&["users", id_or_upn.as_ref(), "transitiveMemberOf"]),
        )
    }

    /// `GET /users/{id}/transitiveMemberOf/microsoft.graph.directoryRole`: the directory
    /// roles the user holds, directly or through a role-assignable group, as
    /// [`DirectoryObject::DirectoryRole`] entries (their `roleTemplateId` in `extra`).
    /// Only active role assignments appear; a role the user is merely eligible for (PIM)
    /// does not. No advanced query is needed for this cast
    /// ([user-list-transitivememberof](https://learn.microsoft.com/graph/api/user-list-transitivememberof)).
    pub fn directory_roles(&self, id_or_upn: impl AsRef<str>) -> ListRequest<DirectoryObject> {
        ListRequest::new(
            self.client.clone(),
            self.client.url_for(&[
                "users",
                id_or_upn.as_ref(),
                "transitiveMemberOf",
                "microsoft.graph.directoryRole",
            ]),
        )
    }

    /// `GET /users/{id}/manager`: a user or contact; `None` when no manager is assigned (404, spec 13).
    pub fn manager(&self, id_or_upn: impl AsRef<str>) -> ManagerRequest {
        ManagerRequest {
            inner: GetRequest::new(
                self.client.clone(),
                self.client
                    .url_for(&["users", id_or_upn.as_ref(), "manager"]),
            ),
        }
    }

    /// `GET /users/{id}/photo/$value` (the largest photo) or `/photos/{size}/$value`.
    pub fn photo(&self, id_or_upn: impl AsRef<str>) -> PhotoRequest {
        PhotoRequest {
            client: self.client.clone(),
            user: id_or_upn.as_ref().to_owned(),
            size: None,
        }
    }

    /// `GET /users/delta`: a first delta round (all users), or from now with [`DeltaRequest::from_now`].
    pub fn delta(&self) -> DeltaRequest<User> {
        DeltaRequest::new(
            self.client.clone(),
            self.client.fixed_url(&["users", "delta"]),
        )
    }

    /// The next delta round from a kept [`DeltaLink`]: it runs at once when streamed,
    /// with the `$select` and `$filter` of the round that started the chain (spec 9), so
    /// it has none to set:
    ///
    /// ```compile_fail
    /// # fn resume(client: graph_client::GraphClient, link: graph_client::DeltaLink) {
    /// let round = client.users().delta_from(&link).select(["mail"]); // no such method
    /// # }
    /// ```
    pub fn delta_from(&self, link: &DeltaLink) -> DeltaRound<User> {
        DeltaRound::resume(
            self.client.clone(),
            link,
            self.client.fixed_url(&["users", "delta"]).path().to_owned(),
        )
    }
}

/// `GET /users/{id}/manager`; `.send()` gives `None` when there is no manager.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct ManagerRequest {
    inner: GetRequest<DirectoryObject>,
}

impl ManagerRequest {
    /// `$select` on the manager.
    pub fn select<I, S>(self, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            inner: self.inner.select(properties),
        }
    }

    /// The manager, or `None` when none is assigned.
    ///
    /// # Errors
    ///
    /// Any error of the request other than 404.
    pub async fn send(self) -> Result<Option<DirectoryObject>, GraphError> {
        self.inner.send_optional().await
    }
}

/// The sizes Graph stores profile photos in (spec 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PhotoSize {
    /// 48x48
    S48,
    /// 64x64
    S64,
    /// 96x96
    S96,
    /// 120x120
    S120,
    /// 240x240
    S240,
    /// 360x360
    S360,
    /// 432x432
    S432,
    /// 504x504
    S504,
    /// 648x648
    S648,
}

impl PhotoSize {
    /// The size id in the URL, e.g. `240x240`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S48 => "48x48",
            Self::S64 => "64x64",
            Self::S96 => "96x96",
            Self::S120 => "120x120",
            Self::S240 => "240x240",
            Self::S360 => "360x360",
            Self::S432 => "432x432",
            Self::S504 => "504x504",
            Self::S648 => "648x648",
        }
    }
}

/// A profile photo: its bytes and content type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Photo {
    /// `Content-Type`, e.g. `image/jpeg`.
    pub content_type: String,
    /// The image bytes.
    pub bytes: Bytes,
}

/// `GET /users/{id}/photo/$value`; `.send()` gives `None` when the user has no photo.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct PhotoRequest {
    client: GraphClient,
    user: String,
    size: Option<PhotoSize>,
}

impl PhotoRequest {
    /// A given size instead of the largest.
    pub fn size(mut self, size: PhotoSize) -> Self {
        self.size = Some(size);
        self
    }

    /// The photo, or `None` when there is none (404, spec 13). Redirects are not followed,
    /// so the bearer token never goes to another host.
    ///
    /// # Errors
    ///
    /// Any error of the request other than 404 (a body over the size limit included).
    pub async fn send(self) -> Result<Option<Photo>, GraphError> {
        let url = match self.size {
            Some(size) => {
                self.client
                    .url_for(&["users", &self.user, "photos", size.as_str(), "$value"])
            }
            None => self
                .client
                .url_for(&["users", &self.user, "photo", "$value"]),
        }
        .map_err(crate::request::invalid_id)?;
        let call = Call {
            method: Method::GET,
            url: url.as_str(),
            eventual: false,
            json_body: None,
            accept: "image/*",
            batch: false,
            units: None,
        };
        match self.client.execute(call).await {
            Ok(reply) => {
                let content_type = reply
                    .headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                Ok(Some(Photo {
                    content_type,
                    bytes: reply.body,
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A profile photo's metadata (`GET /users/{id}/photo`): size and content type.
///
/// A user without a photo may get a 1x1 `image/gif` placeholder here instead of a 404
/// (an older documented sample, spec 13); accept both.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ProfilePhoto {
    /// The size id, e.g. `240X240` (Graph writes a capital X).
    #[serde(default)]
    pub id: Option<String>,
    /// Width in pixels.
    #[serde(default)]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// `@odata.mediaContentType`, e.g. `image/jpeg`.
    #[serde(rename = "@odata.mediaContentType", default)]
    pub media_content_type: Option<String>,
    /// `@odata.mediaEtag` (empty for the placeholder).
    #[serde(rename = "@odata.mediaEtag", default)]
    pub media_etag: Option<String>,
}

impl UsersApi {
    /// `GET /users/{id}/photo`: the metadata of the largest photo.
    pub fn photo_metadata(&self, id_or_upn: impl AsRef<str>) -> GetRequest<ProfilePhoto> {
        GetRequest::new(
            self.client.clone(),
            self.client.url_for(&["users", id_or_upn.as_ref(), "photo"]),
        )
    }
}
