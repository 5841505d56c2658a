//! Access keys, grants, root-key rotation, tokens and the master-key check in the system
//! group's state machine.

use std::sync::Arc;

use cairn_meta::model::{Grant, KeyStatus, Permission, TokenRecord, TokenScope};
use cairn_meta::secrets::MasterKey;
use cairn_meta::{Command, CommandError, KeyChange, MetaStore, Response};

fn store() -> (tempfile::TempDir, Arc<redb::Database>, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    (dir, db, meta)
}

fn apply(db: &redb::Database, meta: &MetaStore, cmd: Command) -> Response {
    let txn = db.begin_write().unwrap();
    let r = meta.apply(&txn, 0, &cmd).unwrap();
    txn.commit().unwrap();
    r
}

fn root(mk: &MasterKey, node: &str, ak: &str, secret: &str) -> Command {
    Command::SetRootKey {
        node_id: node.into(),
        record: mk
            .new_record(ak, secret, &format!("root key of node {node}"), 1)
            .unwrap(),
    }
}

fn audit(meta: &MetaStore) -> Vec<String> {
    meta.audit_log(0, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| match e.actor {
            Some(a) => format!("{a}: {}", e.what),
            None => e.what,
        })
        .collect()
}

#[test]
fn rotating_a_root_key_revokes_the_old_one_for_good() {
    let (_d, db, meta) = store();
    let mk = MasterKey::generate();
    assert_eq!(
        apply(&db, &meta, root(&mk, "n1", "OLD", "old-secret")),
        Response::Done
    );
    assert_eq!(
        apply(&db, &meta, root(&mk, "n2", "OLD", "old-secret")),
        Response::Done
    );
    // n1 moves to a new key: OLD stays (n2 still uses it).
    assert_eq!(
        apply(&db, &meta, root(&mk, "n1", "NEW", "new-secret")),
        Response::Done
    );
    assert_eq!(
        meta.access_key(0, "OLD").unwrap().unwrap().status,
        KeyStatus::Active
    );
    // n2 moves too: nobody uses OLD any more, so it is revoked everywhere.
    assert_eq!(
        apply(&db, &meta, root(&mk, "n2", "NEW", "new-secret")),
        Response::Done
    );
    let old = meta.access_key(0, "OLD").unwrap().unwrap();
    assert_eq!(old.status, KeyStatus::Deleted);
    assert!(old.sealed.is_none() && old.secret_key.is_empty());
    // A node still configured with OLD cannot bring it back.
    assert_eq!(
        apply(&db, &meta, root(&mk, "n3", "OLD", "old-secret")),
        Response::Refused(CommandError::AccessKeyRevoked("OLD".into()))
    );
    // Rotating only the secret of NEW: the old secret is never accepted again.
    assert_eq!(
        apply(&db, &meta, root(&mk, "n1", "NEW", "newer-secret")),
        Response::Done
    );
    assert_eq!(
        apply(&db, &meta, root(&mk, "n2", "NEW", "new-secret")),
        Response::Refused(CommandError::AccessKeyRevoked("NEW".into()))
    );
    let new = meta.access_key(0, "NEW").unwrap().unwrap();
    assert_eq!(
        mk.open("NEW", new.sealed.as_ref().unwrap()).unwrap(),
        "newer-secret"
    );
    for line in audit(&meta) {
        assert!(!line.contains("-secret"), "{line}");
    }
}

#[test]
fn a_config_cannot_turn_an_ordinary_key_into_a_root_key() {
    let (_d, db, meta) = store();
    let mk = MasterKey::generate();
    let rec = mk.new_record("APP", "app-secret", "app", 1).unwrap();
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::CreateAccessKey {
                record: rec.clone()
            }
        ),
        Response::Done
    );
    assert_eq!(
        apply(&db, &meta, Command::CreateAccessKey { record: rec }),
        Response::Refused(CommandError::AccessKeyExists)
    );
    assert_eq!(
        apply(&db, &meta, root(&mk, "n1", "APP", "app-secret")),
        Response::Refused(CommandError::AccessKeyExists)
    );
    assert!(!meta.access_key(0, "APP").unwrap().unwrap().root);
}

#[test]
fn legacy_plaintext_root_keys_are_sealed_and_revoked_on_rotation() {
    let (_d, db, meta) = store();
    let mk = MasterKey::generate();
    let legacy: cairn_meta::model::AccessKeyRecord = rmp_serde::from_slice(
        &rmp_serde::to_vec(&("LEG", "plain-legacy", "root key of node n1", 5i64)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        apply(&db, &meta, Command::PutAccessKey { record: legacy }),
        Response::Done
    );
    // The node restarts with the same key: the record gets sealed, the plaintext goes.
    assert_eq!(
        apply(&db, &meta, root(&mk, "n1", "LEG", "plain-legacy")),
        Response::Done
    );
    let r = meta.access_key(0, "LEG").unwrap().unwrap();
    assert!(r.secret_key.is_empty());
    assert_eq!(
        mk.open("LEG", r.sealed.as_ref().unwrap()).unwrap(),
        "plain-legacy"
    );
    // A legacy key no node re-registers is sealed in place (same secret), once.
    let legacy3: cairn_meta::model::AccessKeyRecord = rmp_serde::from_slice(
        &rmp_serde::to_vec(&("LEG3", "plain-3", "root key of node n9", 5i64)).unwrap(),
    )
    .unwrap();
    apply(&db, &meta, Command::PutAccessKey { record: legacy3 });
    let seal = || Command::UpdateAccessKey {
        access_key: "LEG3".into(),
        change: KeyChange::Seal {
            sealed: mk.seal("LEG3", "plain-3").unwrap(),
            fingerprint: mk.fingerprint("LEG3", "plain-3"),
        },
        at_ms: 6,
    };
    assert_eq!(apply(&db, &meta, seal()), Response::Done);
    assert!(matches!(
        apply(&db, &meta, seal()),
        Response::Refused(CommandError::Invalid(_))
    ));
    let r3 = meta.access_key(0, "LEG3").unwrap().unwrap();
    assert!(r3.secret_key.is_empty());
    assert_eq!(
        mk.open("LEG3", r3.sealed.as_ref().unwrap()).unwrap(),
        "plain-3"
    );
    // A legacy key of a node that rotated before ever re-registering is revoked too.
    let legacy2: cairn_meta::model::AccessKeyRecord = rmp_serde::from_slice(
        &rmp_serde::to_vec(&("LEG2", "plain-2", "root key of node n2", 5i64)).unwrap(),
    )
    .unwrap();
    apply(&db, &meta, Command::PutAccessKey { record: legacy2 });
    assert_eq!(
        apply(&db, &meta, root(&mk, "n2", "FRESH", "fresh")),
        Response::Done
    );
    assert_eq!(
        meta.access_key(0, "LEG2").unwrap().unwrap().status,
        KeyStatus::Deleted
    );
}

#[test]
fn key_changes_disable_grant_rotate_and_delete() {
    let (_d, db, meta) = store();
    let mk = MasterKey::generate();
    let mut rec = mk.new_record("BK", "bk-secret", "backup", 1).unwrap();
    rec.grants.push(Grant {
        bucket: "backups".into(),
        permission: Permission::Write,
    });
    apply(&db, &meta, Command::CreateAccessKey { record: rec });
    let upd = |change| Command::Audited {
        actor: "token ops".into(),
        command: Box::new(Command::UpdateAccessKey {
            access_key: "BK".into(),
            change,
            at_ms: 2,
        }),
    };
    assert_eq!(
        apply(&db, &meta, upd(KeyChange::Status(KeyStatus::Disabled))),
        Response::Done
    );
    assert_eq!(
        meta.access_key(0, "BK").unwrap().unwrap().status,
        KeyStatus::Disabled
    );
    assert_eq!(
        apply(&db, &meta, upd(KeyChange::Status(KeyStatus::Active))),
        Response::Done
    );
    assert_eq!(
        apply(
            &db,
            &meta,
            upd(KeyChange::Grant(Grant {
                bucket: "logs-*".into(),
                permission: Permission::Read
            }))
        ),
        Response::Done
    );
    assert!(matches!(
        apply(
            &db,
            &meta,
            upd(KeyChange::Grant(Grant {
                bucket: "a*b".into(),
                permission: Permission::Read
            }))
        ),
        Response::Refused(CommandError::Invalid(_))
    ));
    assert_eq!(meta.access_key(0, "BK").unwrap().unwrap().grants.len(), 2);
    let sealed = mk.seal("BK", "rotated").unwrap();
    let fp = mk.fingerprint("BK", "rotated");
    assert_eq!(
        apply(
            &db,
            &meta,
            upd(KeyChange::Rotate {
                sealed: sealed.clone(),
                fingerprint: fp
            })
        ),
        Response::Done
    );
    // The old secret cannot come back.
    assert_eq!(
        apply(
            &db,
            &meta,
            upd(KeyChange::Rotate {
                sealed,
                fingerprint: mk.fingerprint("BK", "bk-secret")
            })
        ),
        Response::Refused(CommandError::AccessKeyRevoked("BK".into()))
    );
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::DeleteAccessKey {
                access_key: "BK".into(),
                at_ms: 3
            }
        ),
        Response::Done
    );
    let gone = meta.access_key(0, "BK").unwrap().unwrap();
    assert_eq!(gone.status, KeyStatus::Deleted);
    assert!(gone.grants.is_empty() && gone.sealed.is_none());
    // Deleted is final: no update, no re-creation under the same id.
    assert_eq!(
        apply(&db, &meta, upd(KeyChange::Status(KeyStatus::Active))),
        Response::Refused(CommandError::NoSuchAccessKey("BK".into()))
    );
    let again = mk.new_record("BK", "x", "again", 4).unwrap();
    assert_eq!(
        apply(&db, &meta, Command::CreateAccessKey { record: again }),
        Response::Refused(CommandError::AccessKeyExists)
    );
    let log = audit(&meta);
    assert!(
        log.contains(&"token ops: access key BK disabled".to_string()),
        "{log:?}"
    );
    assert!(log.contains(&"delete access key BK".to_string()), "{log:?}");
}

#[test]
fn tokens_are_named_once_and_revoked_by_name() {
    let (_d, db, meta) = store();
    let tok = |name: &str, hash: &str| TokenRecord {
        name: name.into(),
        hash: hash.into(),
        scope: TokenScope::Read,
        creator: "root key AK".into(),
        created_ms: 1,
        expires_ms: Some(1000),
        revoked_ms: None,
    };
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::CreateToken {
                record: tok("ci", "h1")
            }
        ),
        Response::Done
    );
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::CreateToken {
                record: tok("ci", "h2")
            }
        ),
        Response::Refused(CommandError::TokenExists("ci".into()))
    );
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::RevokeToken {
                name: "ci".into(),
                at_ms: 5
            }
        ),
        Response::Done
    );
    assert_eq!(meta.token(0, "h1").unwrap().unwrap().revoked_ms, Some(5));
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::RevokeToken {
                name: "ci".into(),
                at_ms: 6
            }
        ),
        Response::Refused(CommandError::NoSuchToken("ci".into()))
    );
    // The name is free again once revoked.
    assert_eq!(
        apply(
            &db,
            &meta,
            Command::CreateToken {
                record: tok("ci", "h3")
            }
        ),
        Response::Done
    );
    assert_eq!(meta.list_tokens(0).unwrap().len(), 2);
}

#[test]
fn the_master_key_check_is_set_once() {
    let (_d, db, meta) = store();
    let a = MasterKey::generate().check_value();
    let b = MasterKey::generate().check_value();
    assert_eq!(
        apply(&db, &meta, Command::SetMasterKeyCheck { check: a.clone() }),
        Response::Done
    );
    assert_eq!(
        apply(&db, &meta, Command::SetMasterKeyCheck { check: a.clone() }),
        Response::Done
    );
    assert_eq!(
        apply(&db, &meta, Command::SetMasterKeyCheck { check: b }),
        Response::Refused(CommandError::MasterKeyMismatch)
    );
    assert_eq!(meta.master_key_check(0).unwrap(), Some(a));
}
