//! The node side of the cluster master key and of root keys: loading or creating
//! `<data>/master.key` after formation, checking it against the value the system group
//! recorded, and recording this node's configured root key (which revokes the one it used
//! before, cluster-wide).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::secrets::{KeyDirectory, MasterKey, MASTER_KEY_FILE};
use cairn_meta::{Command, CommandError, Query, QueryResult, Response};
use cairn_raft::Registry;
use tokio::sync::watch;

async fn recorded_check(registry: &Registry) -> anyhow::Result<Option<String>> {
    match registry
        .query(SYSTEM_GROUP, &Query::MasterKeyCheck)
        .await
        .context("reading the master key check")?
    {
        QueryResult::Text(t) => Ok(t),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

async fn record_check(registry: &Registry, key: &MasterKey) -> anyhow::Result<()> {
    let cmd = Command::SetMasterKeyCheck {
        check: key.check_value(),
    };
    match registry
        .propose(SYSTEM_GROUP, cmd)
        .await
        .context("recording the master key check")?
    {
        Response::Refused(CommandError::MasterKeyMismatch) => Err(mismatch()),
        Response::Refused(e) => Err(anyhow::anyhow!("recording the master key check: {e}")),
        _ => Ok(()),
    }
}

fn mismatch() -> anyhow::Error {
    anyhow::anyhow!(
        "this node's master key ({MASTER_KEY_FILE} or ENCRYPTION_KEY) is not the one that seals \
         this cluster's access-key secrets: use the same key on every node"
    )
}

/// The cluster master key: `ENCRYPTION_KEY`, else `<data>/master.key`, else (the node that
/// forms the cluster or runs alone) a new key written to `<data>/master.key`. A node that
/// joined a cluster without receiving its key, or holds another one, is refused with a message.
pub async fn master_key(
    data: &Path,
    configured: Option<&str>,
    registry: &Registry,
    clustered: bool,
) -> anyhow::Result<MasterKey> {
    let local = MasterKey::load(data, configured)?;
    let mut check = recorded_check(registry).await?;
    if local.is_none() && check.is_none() && clustered {
        // Another node may be forming the cluster right now; give it time to record its key.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            check = recorded_check(registry).await?;
            if check.is_some() {
                break;
            }
        }
    }
    match (local, check) {
        (Some(k), Some(c)) if k.check_value() == c => Ok(k),
        (Some(_), Some(_)) => Err(mismatch()),
        (Some(k), None) => {
            record_check(registry, &k).await?;
            Ok(k)
        }
        (None, Some(_)) => anyhow::bail!(
            "this node joined a cluster whose secrets are sealed with a master key it does not \
             have: copy {MASTER_KEY_FILE} from a member into {} (mode 0600) or set \
             ENCRYPTION_KEY to the cluster's key",
            data.display()
        ),
        (None, None) => {
            let k = MasterKey::generate();
            record_check(registry, &k).await?;
            k.store(data)?;
            tracing::info!(file = %data.join(MASTER_KEY_FILE).display(), "created the cluster master key");
            Ok(k)
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Records this node's configured root key in the system group (sealed), retrying until the
/// group answers. The node stops vouching for the root key it used before, which is revoked
/// once no node uses it. Until the answer, the key directory accepts the configured key on
/// this node only; afterwards only the system group decides.
pub async fn register_root_key(
    registry: Arc<Registry>,
    keys: Arc<KeyDirectory>,
    node_id: String,
    access_key: String,
    secret_key: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let record = match keys.master().new_record(
        &access_key,
        &secret_key,
        &format!("root key of node {node_id}"),
        now_ms(),
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot seal the root key");
            keys.root_settled();
            return;
        }
    };
    loop {
        let cmd = Command::SetRootKey {
            node_id: node_id.clone(),
            record: record.clone(),
        };
        match registry.propose(SYSTEM_GROUP, cmd).await {
            Ok(Response::Refused(CommandError::AccessKeyRevoked(_))) => {
                tracing::error!(%access_key, "ACCESS_KEY/SECRET_KEY of this node were revoked (deleted or rotated away): S3 and file calls signed with them are refused; configure new root credentials");
                keys.root_settled();
                return;
            }
            Ok(Response::Refused(e)) => {
                tracing::error!(%access_key, error = %e, "this node's root key was not accepted by the cluster: calls signed with it are refused");
                keys.root_settled();
                return;
            }
            Ok(_) => {
                tracing::info!(%access_key, "root key is valid on every node of the cluster");
                keys.root_settled();
                return;
            }
            Err(e) => tracing::debug!(error = %e, "root key not recorded yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Seals, in place, the plaintext secrets of access keys written by an older release that no
/// restarting node reseals (e.g. the root key of a node that is gone). Runs once at start on
/// every node; a record another node sealed first is refused and skipped.
pub async fn seal_legacy_keys(registry: Arc<Registry>, keys: Arc<KeyDirectory>) {
    let legacy = match keys.store().list_access_keys(SYSTEM_GROUP) {
        Ok(all) => all
            .into_iter()
            .filter(|k| k.sealed.is_none() && !k.secret_key.is_empty()),
        Err(e) => {
            tracing::warn!(error = %e, "listing access keys to seal");
            return;
        }
    };
    for rec in legacy {
        let master = keys.master();
        let sealed = match master.seal(&rec.access_key, &rec.secret_key) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sealing a legacy secret");
                continue;
            }
        };
        let cmd = Command::UpdateAccessKey {
            access_key: rec.access_key.clone(),
            change: cairn_meta::KeyChange::Seal {
                sealed,
                fingerprint: master.fingerprint(&rec.access_key, &rec.secret_key),
            },
            at_ms: now_ms(),
        };
        match registry.propose(SYSTEM_GROUP, cmd).await {
            Ok(Response::Done) => {
                tracing::info!(access_key = %rec.access_key, "sealed a plaintext secret left by an older release")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "legacy secret not sealed yet"),
        }
    }
}
