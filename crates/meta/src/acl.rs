//! S3 access control lists as stored: the grants a bucket or an object version gives beyond
//! its owner's FULL_CONTROL. Only the two groups Cairn can enforce are stored — AllUsers
//! (anyone, anonymous requests included) and AuthenticatedUsers (any access key of the
//! cluster); the S3 layer refuses other grantees before anything is stored, and maps these
//! grants onto its policy model (`cairn-s3` `acl.rs`).

use serde::{Deserialize, Serialize};

/// A predefined S3 group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclGroup {
    /// `http://acs.amazonaws.com/groups/global/AllUsers`.
    AllUsers,
    /// `http://acs.amazonaws.com/groups/global/AuthenticatedUsers`.
    AuthenticatedUsers,
}

/// An ACL permission, as S3 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

/// One grant to a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub group: AclGroup,
    pub permission: AclPermission,
}
