//! Versions of the cluster configuration in the system group's state machine: the apply side
//! of `Command::ChangeConfig` (a set or a rollback through the management API) and the
//! history every version is recorded in, with who, when, why. Each history record is stored
//! with named fields under `config_history/<version>` in the group's metadata table.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::command::{CommandError, Response};
use crate::config_doc::{self, ConfigVersion};
use crate::keys;
use crate::model::{ClusterConfig, NodeRecord, NodeState};
use crate::store::{decode, encode, encode_named, CLUSTER_CONFIG, NODES, SM_META};
use crate::{MetaError, MetaStore};

const HISTORY_PREFIX: &str = "config_history/";

fn history_name(version: u64) -> String {
    format!("{HISTORY_PREFIX}{version:020}")
}

impl MetaStore {
    /// Applies a new configuration version proposed through the management API: refused
    /// (state unchanged) unless it is the next version, keeps the partition count, changes
    /// something, and every changed setting is valid for the registered nodes.
    pub(crate) fn apply_config_change(
        &self,
        txn: &WriteTransaction,
        group: u64,
        config: &ClusterConfig,
        actor: &str,
        message: &str,
        rollback_of: Option<u64>,
    ) -> Result<Response, MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        let k = keys::sm_meta(group, CLUSTER_CONFIG);
        let current: ClusterConfig = match meta.get(k.as_slice())? {
            Some(v) => decode(v.value())?,
            None => {
                return Ok(Response::Refused(CommandError::Invalid(
                    "the cluster configuration is not recorded yet".into(),
                )))
            }
        };
        if config.version != current.version + 1 {
            return Ok(Response::Refused(CommandError::StaleConfig(
                current.version,
            )));
        }
        let nodes = {
            let t = txn.open_table(NODES)?;
            let (s, e) = (keys::group_start(group), keys::group_end(group));
            let mut n = 0;
            for item in t.range(s.as_slice()..e.as_slice())? {
                let (_, v) = item?;
                if decode::<NodeRecord>(v.value())?.state != NodeState::Removed {
                    n += 1;
                }
            }
            n
        };
        let changes = config_doc::diff(&current, config);
        if changes.is_empty() {
            return Ok(Response::Refused(CommandError::Invalid(format!(
                "nothing changes: version {} already has these settings",
                current.version
            ))));
        }
        if let Err(e) = config_doc::validate_change(&current, config, nodes) {
            return Ok(Response::Refused(CommandError::InvalidConfig {
                field: e.key().to_string(),
                message: e.to_string(),
            }));
        }
        meta.insert(k.as_slice(), encode(config)?.as_slice())?;
        let current_recorded = meta
            .get(keys::sm_meta(group, &history_name(current.version)).as_slice())?
            .is_some();
        drop(meta);
        if !current_recorded {
            // Formed before history was kept: keep the version being replaced too.
            self.record_config_version(
                txn,
                group,
                &ConfigVersion {
                    version: current.version,
                    at_ms: current.changed_ms,
                    actor: None,
                    message: "recorded before configuration history was kept".into(),
                    rollback_of: None,
                    config: current.clone(),
                },
            )?;
        }
        self.record_config_version(
            txn,
            group,
            &ConfigVersion {
                version: config.version,
                at_ms: config.changed_ms,
                actor: Some(actor.to_string()),
                message: message.to_string(),
                rollback_of,
                config: config.clone(),
            },
        )?;
        let what: Vec<String> = changes.iter().map(ToString::to_string).collect();
        let mut line = format!("cluster config v{}: {}", config.version, what.join(", "));
        if let Some(n) = rollback_of {
            line.push_str(&format!(" (rollback to v{n})"));
        }
        if !message.is_empty() {
            line.push_str(&format!(" ({message})"));
        }
        self.audit(txn, group, config.changed_ms, line)?;
        Ok(Response::Done)
    }

    /// Records `v` in the configuration history.
    pub(crate) fn record_config_version(
        &self,
        txn: &WriteTransaction,
        group: u64,
        v: &ConfigVersion,
    ) -> Result<(), MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        meta.insert(
            keys::sm_meta(group, &history_name(v.version)).as_slice(),
            encode_named(v)?.as_slice(),
        )?;
        Ok(())
    }

    /// Recorded configuration versions after `after`, oldest first, at most `max`. A cluster
    /// formed before versions were recorded shows its current configuration as its only one.
    pub fn config_history(
        &self,
        group: u64,
        after: u64,
        max: usize,
    ) -> Result<Vec<ConfigVersion>, MetaError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(SM_META)?;
        let start = keys::sm_meta(group, &history_name(after.saturating_add(1)));
        let end = keys::sm_meta(group, &format!("{HISTORY_PREFIX}~"));
        let mut out = Vec::new();
        for item in t.range(start.as_slice()..end.as_slice())?.take(max) {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        if out.is_empty() && after == 0 && max > 0 {
            let none_recorded = t
                .range(keys::sm_meta(group, HISTORY_PREFIX).as_slice()..end.as_slice())?
                .next()
                .is_none();
            if none_recorded {
                if let Some(c) = self.cluster_config(group)? {
                    out.push(ConfigVersion {
                        version: c.version,
                        at_ms: c.changed_ms,
                        actor: None,
                        message: "recorded before configuration history was kept".into(),
                        rollback_of: None,
                        config: c,
                    });
                }
            }
        }
        Ok(out)
    }
}
