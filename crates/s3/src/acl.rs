//! S3 ACLs mapped onto the policy model: canned ACLs (`x-amz-acl`), grant headers
//! (`x-amz-grant-*`) and AccessControlPolicy bodies are parsed into the group grants Cairn
//! stores (`cairn_meta::acl`), and each stored grant is evaluated as an Allow statement of a
//! policy ([`to_policy`]), so an explicit Deny of the bucket policy still wins over it.
//!
//! Grantees: the AllUsers group (anyone, anonymous requests included), the AuthenticatedUsers
//! group (any access key of this cluster) and the owner (whose FULL_CONTROL is implicit).
//! Any other grantee — an e-mail address or a canonical id that is not the owner's — names an
//! account Cairn does not have and is refused as AWS refuses an unknown one; the LogDelivery
//! group and the `aws-exec-read` / `log-delivery-write` canned ACLs answer 501 (Cairn has no
//! log delivery or EC2).
//!
//! What a grant allows (AWS's ACL-to-policy mapping): on a bucket, READ = list the objects
//! and their versions and uploads, WRITE = put and delete objects, READ_ACP / WRITE_ACP =
//! Get/PutBucketAcl; on an object version, READ = GetObject(Version), READ_ACP / WRITE_ACP =
//! Get/PutObject(Version)Acl; FULL_CONTROL = all of them.

use cairn_meta::acl::{AclGrant, AclGroup, AclPermission};
use cairn_meta::model::ObjectHeaders;
use http::{HeaderMap, StatusCode};
use s3s::dto::{AccessControlPolicy, Grant, Grantee, Owner, Permission, Type};
use s3s::{s3_error, S3Error, S3Result};

use crate::error::custom_error;
use crate::policy::{resource_of, Policy};

pub(crate) const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub(crate) const AUTHENTICATED_USERS_URI: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The grant headers and the permission each gives.
const GRANT_HEADERS: [(&str, AclPermission); 5] = [
    ("x-amz-grant-read", AclPermission::Read),
    ("x-amz-grant-write", AclPermission::Write),
    ("x-amz-grant-read-acp", AclPermission::ReadAcp),
    ("x-amz-grant-write-acp", AclPermission::WriteAcp),
    ("x-amz-grant-full-control", AclPermission::FullControl),
];

fn grant(group: AclGroup, permission: AclPermission) -> AclGrant {
    AclGrant { group, permission }
}

/// The grants of a canned ACL (beyond the owner's).
pub(crate) fn canned(name: &str) -> S3Result<Vec<AclGrant>> {
    use AclGroup::*;
    use AclPermission::*;
    match name.trim() {
        // The owner of the bucket owns every object: these add nothing.
        "private" | "bucket-owner-read" | "bucket-owner-full-control" => Ok(Vec::new()),
        "public-read" => Ok(vec![grant(AllUsers, Read)]),
        "public-read-write" => Ok(vec![grant(AllUsers, Read), grant(AllUsers, Write)]),
        "authenticated-read" => Ok(vec![grant(AuthenticatedUsers, Read)]),
        "aws-exec-read" | "log-delivery-write" => Err(s3_error!(
            NotImplemented,
            "The canned ACL {name} grants to a service Cairn does not have; nothing was stored"
        )),
        _ => Err(s3_error!(InvalidArgument, "Invalid canned ACL: {name}")),
    }
}

/// The group a grantee names, None for the owner; refuses grantees Cairn cannot enforce.
fn grantee(kind: &str, value: &str, owner_id: &str) -> S3Result<Option<AclGroup>> {
    match kind {
        "uri" => match value {
            ALL_USERS_URI => Ok(Some(AclGroup::AllUsers)),
            AUTHENTICATED_USERS_URI => Ok(Some(AclGroup::AuthenticatedUsers)),
            LOG_DELIVERY_URI => Err(s3_error!(
                NotImplemented,
                "Grants to the LogDelivery group are not implemented; nothing was stored"
            )),
            _ => Err(s3_error!(InvalidArgument, "Invalid group uri")),
        },
        "id" if value == owner_id => Ok(None),
        "id" => Err(s3_error!(InvalidArgument, "Invalid id")),
        "emailaddress" => Err(custom_error(
            "UnresolvableGrantByEmailAddress",
            "The e-mail address you provided does not match any account on record.",
            StatusCode::BAD_REQUEST,
        )),
        _ => Err(s3_error!(
            InvalidArgument,
            "Argument format not recognized: {kind}"
        )),
    }
}

/// The grants of a request's ACL headers: None when it has none (the default, private),
/// InvalidRequest when it has both a canned ACL and grant headers (as AWS).
pub(crate) fn from_headers(headers: &HeaderMap, owner_id: &str) -> S3Result<Option<Vec<AclGrant>>> {
    let text = |name: &str| -> S3Result<Option<&str>> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| s3_error!(InvalidArgument, "header {name} is not valid ASCII"))
            })
            .transpose()
    };
    let canned_acl = text("x-amz-acl")?;
    let any_grant = GRANT_HEADERS.iter().any(|(h, _)| headers.contains_key(*h));
    match (canned_acl, any_grant) {
        (Some(_), true) => {
            return Err(s3_error!(
                InvalidRequest,
                "Specifying both Canned ACLs and Header Grants is not allowed"
            ))
        }
        (Some(c), false) => return canned(c).map(Some),
        (None, false) => return Ok(None),
        (None, true) => {}
    }
    let mut grants = Vec::new();
    for (name, permission) in GRANT_HEADERS {
        let Some(v) = text(name)? else { continue };
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (kind, value) = item
                .split_once('=')
                .ok_or_else(|| s3_error!(InvalidArgument, "Argument format not recognized"))?;
            let value = value.trim().trim_matches('"');
            if let Some(group) = grantee(&kind.trim().to_ascii_lowercase(), value, owner_id)? {
                push(&mut grants, grant(group, permission));
            }
        }
    }
    Ok(Some(grants))
}

/// `headers` of a new object (PutObject, CopyObject, CreateMultipartUpload) with the ACL of
/// the request's ACL headers (private without any: a copy never takes the source's ACL).
pub(crate) fn with_header_acl(
    mut headers: ObjectHeaders,
    request: &HeaderMap,
    owner_id: &str,
) -> S3Result<ObjectHeaders> {
    headers.acl = from_headers(request, owner_id)?.unwrap_or_default();
    Ok(headers)
}

fn push(grants: &mut Vec<AclGrant>, g: AclGrant) {
    if !grants.contains(&g) {
        grants.push(g);
    }
}

fn permission_of(p: Option<&Permission>) -> S3Result<AclPermission> {
    match p.map(Permission::as_str) {
        Some(Permission::READ) => Ok(AclPermission::Read),
        Some(Permission::WRITE) => Ok(AclPermission::Write),
        Some(Permission::READ_ACP) => Ok(AclPermission::ReadAcp),
        Some(Permission::WRITE_ACP) => Ok(AclPermission::WriteAcp),
        Some(Permission::FULL_CONTROL) => Ok(AclPermission::FullControl),
        _ => Err(malformed_acl()),
    }
}

fn malformed_acl() -> S3Error {
    custom_error(
        "MalformedACLError",
        "The XML you provided was not well-formed or did not validate against our published schema",
        StatusCode::BAD_REQUEST,
    )
}

/// The grants of a PutBucketAcl / PutObjectAcl body.
pub(crate) fn from_body(body: &AccessControlPolicy, owner_id: &str) -> S3Result<Vec<AclGrant>> {
    let mut grants = Vec::new();
    for g in body.grants.as_deref().unwrap_or_default() {
        let permission = permission_of(g.permission.as_ref())?;
        let e = g.grantee.as_ref().ok_or_else(malformed_acl)?;
        let (kind, value) = match e.type_.as_str() {
            Type::GROUP => ("uri", e.uri.as_deref()),
            Type::CANONICAL_USER => ("id", e.id.as_deref()),
            Type::AMAZON_CUSTOMER_BY_EMAIL => ("emailaddress", e.email_address.as_deref()),
            _ => return Err(malformed_acl()),
        };
        let value = value.ok_or_else(malformed_acl)?;
        if let Some(group) = grantee(kind, value, owner_id)? {
            push(&mut grants, grant(group, permission));
        }
    }
    Ok(grants)
}

/// Whether a body grants anything to anyone but the owner's FULL_CONTROL (refused when the
/// bucket's ACLs are disabled), judged before it is parsed.
pub(crate) fn body_grants_others(body: &AccessControlPolicy, owner_id: &str) -> bool {
    !body.grants.as_deref().unwrap_or_default().iter().all(|g| {
        g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
            && g.grantee
                .as_ref()
                .is_some_and(|e| e.id.as_deref() == Some(owner_id) && e.uri.is_none())
    })
}

/// Whether grants are public in AWS's sense (every grant to AllUsers or AuthenticatedUsers
/// is): refused by BlockPublicAcls, ignored under IgnorePublicAcls.
pub(crate) fn is_public(grants: &[AclGrant]) -> bool {
    !grants.is_empty()
}

/// The ACL as GetBucketAcl / GetObjectAcl answer it: the owner with FULL_CONTROL, then the
/// stored group grants.
pub(crate) fn to_dto(owner: &Owner, grants: &[AclGrant]) -> Vec<Grant> {
    let mut out = vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: Type::from(Type::CANONICAL_USER.to_owned()),
            uri: None,
        }),
        permission: Some(Permission::from(Permission::FULL_CONTROL.to_owned())),
    }];
    for g in grants {
        let uri = match g.group {
            AclGroup::AllUsers => ALL_USERS_URI,
            AclGroup::AuthenticatedUsers => AUTHENTICATED_USERS_URI,
        };
        let permission = match g.permission {
            AclPermission::Read => Permission::READ,
            AclPermission::Write => Permission::WRITE,
            AclPermission::ReadAcp => Permission::READ_ACP,
            AclPermission::WriteAcp => Permission::WRITE_ACP,
            AclPermission::FullControl => Permission::FULL_CONTROL,
        };
        out.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: None,
                type_: Type::from(Type::GROUP.to_owned()),
                uri: Some(uri.to_owned()),
            }),
            permission: Some(Permission::from(permission.to_owned())),
        });
    }
    out
}

/// The bucket-level and object-level actions a bucket grant allows.
fn bucket_actions(p: AclPermission) -> (Vec<&'static str>, Vec<&'static str>) {
    const READ: [&str; 3] = [
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:ListBucketMultipartUploads",
    ];
    const WRITE: [&str; 4] = [
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload",
    ];
    match p {
        AclPermission::Read => (READ.to_vec(), vec![]),
        AclPermission::Write => (vec![], WRITE.to_vec()),
        AclPermission::ReadAcp => (vec!["s3:GetBucketAcl"], vec![]),
        AclPermission::WriteAcp => (vec!["s3:PutBucketAcl"], vec![]),
        AclPermission::FullControl => {
            let mut b = READ.to_vec();
            b.extend(["s3:GetBucketAcl", "s3:PutBucketAcl"]);
            (b, WRITE.to_vec())
        }
    }
}

/// The actions an object grant allows on that object.
fn object_actions(p: AclPermission) -> Vec<&'static str> {
    const READ: [&str; 2] = ["s3:GetObject", "s3:GetObjectVersion"];
    const READ_ACP: [&str; 2] = ["s3:GetObjectAcl", "s3:GetObjectVersionAcl"];
    const WRITE_ACP: [&str; 2] = ["s3:PutObjectAcl", "s3:PutObjectVersionAcl"];
    match p {
        AclPermission::Read => READ.to_vec(),
        // WRITE means nothing on an object (AWS stores it and ignores it).
        AclPermission::Write => Vec::new(),
        AclPermission::ReadAcp => READ_ACP.to_vec(),
        AclPermission::WriteAcp => WRITE_ACP.to_vec(),
        AclPermission::FullControl => [READ, READ_ACP, WRITE_ACP].concat(),
    }
}

/// The Allow statements `grants` stand for, on `bucket` (key None) or on object `key`.
pub(crate) fn to_policy(bucket: &str, key: Option<&str>, grants: &[AclGrant]) -> Policy {
    let mut allows = Vec::new();
    for g in grants {
        let everyone = g.group == AclGroup::AllUsers;
        match key {
            None => {
                let (on_bucket, on_objects) = bucket_actions(g.permission);
                if !on_bucket.is_empty() {
                    allows.push((everyone, on_bucket, resource_of(bucket, None)));
                }
                if !on_objects.is_empty() {
                    allows.push((everyone, on_objects, resource_of(bucket, Some("*"))));
                }
            }
            // The object's own ARN: evaluated only for requests on this object, so a `*` in
            // its key can match nothing else.
            Some(k) => {
                let actions = object_actions(g.permission);
                if !actions.is_empty() {
                    allows.push((everyone, actions, resource_of(bucket, Some(k))));
                }
            }
        }
    }
    Policy::from_allows(allows)
}

/// Whether an object request's action can be allowed by the object's own ACL (the others are
/// decided by the bucket's ACL alone, so no object lookup is needed for them).
pub(crate) fn object_acl_applies(action: &str) -> bool {
    matches!(
        action,
        "s3:GetObject"
            | "s3:GetObjectVersion"
            | "s3:GetObjectAcl"
            | "s3:GetObjectVersionAcl"
            | "s3:PutObjectAcl"
            | "s3:PutObjectVersionAcl"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Request, Who};
    use std::collections::BTreeMap;

    const OWNER: &str = "0123abcd";

    fn eval(p: &Policy, who: Who<'_>, action: &str, resource: &str) -> Decision {
        let ctx = BTreeMap::new();
        p.evaluate(&Request {
            who,
            action,
            resource,
            context: &ctx,
        })
    }

    #[test]
    fn canned_acls_map_to_group_grants() {
        use AclGroup::*;
        use AclPermission::*;
        assert!(canned("private").unwrap().is_empty());
        assert!(canned("bucket-owner-full-control").unwrap().is_empty());
        assert_eq!(canned("public-read").unwrap(), vec![grant(AllUsers, Read)]);
        assert_eq!(
            canned("public-read-write").unwrap(),
            vec![grant(AllUsers, Read), grant(AllUsers, Write)]
        );
        assert_eq!(
            canned("authenticated-read").unwrap(),
            vec![grant(AuthenticatedUsers, Read)]
        );
        assert_eq!(
            *canned("log-delivery-write").unwrap_err().code(),
            s3s::S3ErrorCode::NotImplemented
        );
        assert_eq!(
            *canned("publicread").unwrap_err().code(),
            s3s::S3ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn object_public_read_allows_anonymous_reads_only() {
        let p = to_policy("b", Some("k"), &canned("public-read").unwrap());
        let k = "arn:aws:s3:::b/k";
        assert_eq!(eval(&p, Who::Anonymous, "s3:GetObject", k), Decision::Allow);
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetObjectVersion", k),
            Decision::Allow
        );
        assert_eq!(eval(&p, Who::Key("K"), "s3:GetObject", k), Decision::Allow);
        for action in [
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:GetObjectAcl",
            "s3:PutObjectAcl",
        ] {
            assert_eq!(
                eval(&p, Who::Anonymous, action, k),
                Decision::Silent,
                "{action}"
            );
        }
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetObject", "arn:aws:s3:::b/other"),
            Decision::Silent
        );
    }

    #[test]
    fn authenticated_read_needs_a_key() {
        let p = to_policy("b", Some("k"), &canned("authenticated-read").unwrap());
        let k = "arn:aws:s3:::b/k";
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetObject", k),
            Decision::Silent
        );
        assert_eq!(
            eval(&p, Who::Key("ANY"), "s3:GetObject", k),
            Decision::Allow
        );
    }

    #[test]
    fn bucket_grants_cover_listing_and_writes() {
        let p = to_policy("b", None, &canned("public-read-write").unwrap());
        let b = "arn:aws:s3:::b";
        let o = "arn:aws:s3:::b/any/key";
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:ListBucket", b),
            Decision::Allow
        );
        assert_eq!(eval(&p, Who::Anonymous, "s3:PutObject", o), Decision::Allow);
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:DeleteObject", o),
            Decision::Allow
        );
        // A bucket's READ lists objects but does not read them.
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetObject", o),
            Decision::Silent
        );
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:PutBucketPolicy", b),
            Decision::Silent
        );
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetBucketAcl", b),
            Decision::Silent
        );
        let full = to_policy(
            "b",
            None,
            &[grant(
                AclGroup::AuthenticatedUsers,
                AclPermission::FullControl,
            )],
        );
        assert_eq!(
            eval(&full, Who::Key("K"), "s3:GetBucketAcl", b),
            Decision::Allow
        );
        assert_eq!(
            eval(&full, Who::Key("K"), "s3:PutBucketAcl", b),
            Decision::Allow
        );
        assert_eq!(
            eval(&full, Who::Anonymous, "s3:GetBucketAcl", b),
            Decision::Silent
        );
        assert!(
            to_policy("b", None, &[]).evaluate(&Request {
                who: Who::Anonymous,
                action: "s3:ListBucket",
                resource: b,
                context: &BTreeMap::new(),
            }) == Decision::Silent
        );
    }

    #[test]
    fn a_key_with_wildcards_matches_only_itself() {
        let p = to_policy("b", Some("a*"), &canned("public-read").unwrap());
        assert_eq!(
            eval(&p, Who::Anonymous, "s3:GetObject", "arn:aws:s3:::b/a*"),
            Decision::Allow
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn grant_headers() {
        assert_eq!(from_headers(&headers(&[]), OWNER).unwrap(), None);
        let h = headers(&[
            (
                "x-amz-grant-read",
                &format!("uri=\"{ALL_USERS_URI}\", id=\"{OWNER}\""),
            ),
            ("x-amz-grant-full-control", &format!("id={OWNER}")),
            (
                "x-amz-grant-read-acp",
                &format!("uri=\"{AUTHENTICATED_USERS_URI}\""),
            ),
        ]);
        assert_eq!(
            from_headers(&h, OWNER).unwrap().unwrap(),
            vec![
                grant(AclGroup::AllUsers, AclPermission::Read),
                grant(AclGroup::AuthenticatedUsers, AclPermission::ReadAcp)
            ]
        );
        let code = |pairs: &[(&str, &str)]| {
            from_headers(&headers(pairs), OWNER)
                .unwrap_err()
                .code()
                .as_str()
                .to_owned()
        };
        assert_eq!(
            code(&[("x-amz-grant-read", "id=\"someone-else\"")]),
            "InvalidArgument"
        );
        assert_eq!(
            code(&[("x-amz-grant-read", "emailAddress=\"a@b.c\"")]),
            "UnresolvableGrantByEmailAddress"
        );
        assert_eq!(
            code(&[("x-amz-grant-write", &format!("uri=\"{LOG_DELIVERY_URI}\""))]),
            "NotImplemented"
        );
        assert_eq!(
            code(&[("x-amz-acl", "public-read"), ("x-amz-grant-read", "id=x")]),
            "InvalidRequest"
        );
        assert_eq!(code(&[("x-amz-grant-read", "nonsense")]), "InvalidArgument");
    }

    #[test]
    fn bodies() {
        let owner = Owner {
            display_name: None,
            id: Some(OWNER.into()),
        };
        let mut dto = to_dto(&owner, &canned("public-read").unwrap());
        assert_eq!(dto.len(), 2);
        let body = AccessControlPolicy {
            grants: Some(dto.clone()),
            owner: Some(owner.clone()),
        };
        assert!(body_grants_others(&body, OWNER));
        assert_eq!(
            from_body(&body, OWNER).unwrap(),
            canned("public-read").unwrap()
        );
        dto.truncate(1);
        let only_owner = AccessControlPolicy {
            grants: Some(dto),
            owner: Some(owner),
        };
        assert!(!body_grants_others(&only_owner, OWNER));
        assert!(from_body(&only_owner, OWNER).unwrap().is_empty());
    }
}
