//! The endpoints: [`UsersApi`] and [`GroupsApi`].

pub(crate) mod groups;
pub(crate) mod users;
