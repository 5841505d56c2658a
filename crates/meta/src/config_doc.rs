//! The cluster configuration as a typed document of named settings (seed 001 §4): what each
//! setting is called (`replication.write_consistency`), how it takes effect (live on every
//! node, through the cluster's controllers, or at a node's next start), reading and setting it
//! by name with type checks, validating a change (naming the setting at fault) and the diff
//! between two versions. Pure: no storage, no I/O; `config_table` applies versions.

use serde::{Deserialize, Serialize};

use crate::model::{ClusterConfig, WriteConsistency};

/// How a change to a setting takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// Fixed when the cluster is created; never changes.
    Fixed,
    /// Applied by the system leader's controllers (layout, voters) as soon as it is committed.
    Cluster,
    /// Applied by every node as soon as it sees the new version.
    Live,
    /// Taken into account by each node at its next start.
    Restart,
}

impl ApplyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Cluster => "cluster",
            Self::Live => "live",
            Self::Restart => "restart",
        }
    }
}

/// The kind of value a setting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A positive whole number.
    Count,
    /// `ONE`, `QUORUM` or `ALL`.
    Consistency,
    /// Label selectors (cairn-layout syntax).
    Selectors,
}

/// One named setting of the document.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    pub apply: ApplyMode,
    /// Whether it may be unset (then each node uses its own setting, named in `help`).
    pub optional: bool,
    pub help: &'static str,
    kind: Kind,
}

/// Every setting, in display order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "partitions",
        apply: ApplyMode::Fixed,
        optional: false,
        help: "partition count P (fixed at cluster creation)",
        kind: Kind::Count,
    },
    Setting {
        name: "replication.factor",
        apply: ApplyMode::Cluster,
        optional: false,
        help: "copies of every chunk and voters per partition group (at most the node count)",
        kind: Kind::Count,
    },
    Setting {
        name: "replication.voters",
        apply: ApplyMode::Cluster,
        optional: false,
        help: "desired voters of the system group (odd, 1 to 7)",
        kind: Kind::Count,
    },
    Setting {
        name: "replication.write_consistency",
        apply: ApplyMode::Live,
        optional: true,
        help: "default chunk write consistency: ONE, QUORUM or ALL (unset: DEFAULT_WRITE_CONSISTENCY of each node)",
        kind: Kind::Consistency,
    },
    Setting {
        name: "placement.require",
        apply: ApplyMode::Cluster,
        optional: true,
        help: "replicas only on nodes matching all of these label selectors",
        kind: Kind::Selectors,
    },
    Setting {
        name: "placement.prefer",
        apply: ApplyMode::Cluster,
        optional: true,
        help: "replicas preferably on nodes matching one of these label selectors",
        kind: Kind::Selectors,
    },
    Setting {
        name: "placement.avoid",
        apply: ApplyMode::Cluster,
        optional: true,
        help: "replicas on nodes matching one of these label selectors only when nothing else fits",
        kind: Kind::Selectors,
    },
    Setting {
        name: "gc.grace_secs",
        apply: ApplyMode::Restart,
        optional: true,
        help: "age before an unreferenced chunk may be deleted (unset: GC_GRACE_SECS of each node)",
        kind: Kind::Count,
    },
    Setting {
        name: "gc.interval_secs",
        apply: ApplyMode::Restart,
        optional: true,
        help: "period of garbage-collection passes (unset: GC_INTERVAL_SECS of each node)",
        kind: Kind::Count,
    },
    Setting {
        name: "uploads.expiry_secs",
        apply: ApplyMode::Restart,
        optional: true,
        help: "age at which multipart uploads are aborted (unset: MULTIPART_EXPIRY_SECS of each node)",
        kind: Kind::Count,
    },
    Setting {
        name: "limits.s3_max_connections",
        apply: ApplyMode::Live,
        optional: true,
        help: "open S3 connections per node (unset: S3_MAX_CONNECTIONS of each node)",
        kind: Kind::Count,
    },
    Setting {
        name: "limits.s3_max_inflight",
        apply: ApplyMode::Live,
        optional: true,
        help: "S3 requests handled at once per node (unset: S3_MAX_INFLIGHT of each node)",
        kind: Kind::Count,
    },
    Setting {
        name: "repair.rate_mbps",
        apply: ApplyMode::Live,
        optional: true,
        help: "chunk-sync (anti-entropy) fetch rate per node in MB/s (unset: REPAIR_RATE_MBPS of each node, 0 = unlimited)",
        kind: Kind::Count,
    },
    Setting {
        name: "scrub.rate_mbps",
        apply: ApplyMode::Live,
        optional: true,
        help: "scrub read rate per node in MB/s (unset: SCRUB_RATE_MBPS of each node, 0 = unlimited)",
        kind: Kind::Count,
    },
    Setting {
        name: "lifecycle.rate",
        apply: ApplyMode::Live,
        optional: true,
        help: "object versions the lifecycle worker examines per second per node (unset: LIFECYCLE_RATE of each node, 0 = unlimited)",
        kind: Kind::Count,
    },
    Setting {
        name: "rebalance.max_moves",
        apply: ApplyMode::Cluster,
        optional: true,
        help: "partition replica moves in flight cluster-wide during a rebalance (unset: 2)",
        kind: Kind::Count,
    },
];

/// The setting called `name`.
pub fn setting(name: &str) -> Result<&'static Setting, ConfigError> {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ConfigError::UnknownKey {
            key: name.to_string(),
            known: SETTINGS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A setting's value. `None` (where an `Option<ConfigValue>` is used) means unset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Int(u64),
    Text(String),
    List(Vec<String>),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Text(s) => f.write_str(s),
            Self::List(v) => write!(f, "[{}]", v.join("; ")),
        }
    }
}

/// Display text of a possibly unset value.
pub fn show(v: &Option<ConfigValue>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "unset".into(),
    }
}

/// Why a setting cannot take a value; always names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting {key:?} (settings: {known})")]
    UnknownKey { key: String, known: String },
    #[error("{key}: expected {expected}")]
    WrongType { key: String, expected: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{key} is fixed at cluster creation and cannot be changed")]
    Fixed { key: String },
}

impl ConfigError {
    /// The setting at fault.
    pub fn key(&self) -> &str {
        match self {
            Self::UnknownKey { key, .. }
            | Self::WrongType { key, .. }
            | Self::Invalid { key, .. }
            | Self::Fixed { key } => key,
        }
    }

    fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

fn list(v: &[String]) -> Option<ConfigValue> {
    (!v.is_empty()).then(|| ConfigValue::List(v.to_vec()))
}

fn int<T: Into<u64>>(v: Option<T>) -> Option<ConfigValue> {
    v.map(|n| ConfigValue::Int(n.into()))
}

/// The value of setting `name` in `c` (None: unset).
pub fn get(c: &ClusterConfig, name: &str) -> Result<Option<ConfigValue>, ConfigError> {
    let s = setting(name)?;
    Ok(match s.name {
        "partitions" => int(Some(c.partitions)),
        "replication.factor" => int(Some(c.replication as u64)),
        "replication.voters" => int(Some(c.desired_voters as u64)),
        "replication.write_consistency" => c
            .write_consistency
            .map(|w| ConfigValue::Text(w.as_str().into())),
        "placement.require" => list(&c.placement_require),
        "placement.prefer" => list(&c.placement_prefer),
        "placement.avoid" => list(&c.placement_avoid),
        "gc.grace_secs" => int(c.gc_grace_secs),
        "gc.interval_secs" => int(c.gc_interval_secs),
        "uploads.expiry_secs" => int(c.upload_expiry_secs),
        "limits.s3_max_connections" => int(c.s3_max_connections),
        "limits.s3_max_inflight" => int(c.s3_max_inflight),
        "repair.rate_mbps" => int(c.repair_rate_mbps),
        "scrub.rate_mbps" => int(c.scrub_rate_mbps),
        "lifecycle.rate" => int(c.lifecycle_rate),
        "rebalance.max_moves" => int(c.rebalance_max_moves),
        other => unreachable_setting(other)?,
    })
}

/// Every setting with its value, in display order.
pub fn entries(c: &ClusterConfig) -> Vec<(&'static Setting, Option<ConfigValue>)> {
    SETTINGS
        .iter()
        .map(|s| (s, get(c, s.name).ok().flatten()))
        .collect()
}

fn unreachable_setting<T>(name: &str) -> Result<T, ConfigError> {
    // Every name in SETTINGS has an arm; a missing one is reported, not a panic.
    Err(ConfigError::invalid(name, "setting has no field"))
}

fn count(name: &str, v: &ConfigValue) -> Result<u64, ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: name.into(),
        expected: "a whole number".into(),
    };
    let n = match v {
        ConfigValue::Int(n) => *n,
        // Text from the command line: "300".
        ConfigValue::Text(t) => t.trim().parse().map_err(|_| wrong())?,
        ConfigValue::List(_) => return Err(wrong()),
    };
    if n == 0 {
        return Err(ConfigError::invalid(name, "must be at least 1"));
    }
    Ok(n)
}

fn narrow<T: TryFrom<u64>>(name: &str, n: u64) -> Result<T, ConfigError> {
    T::try_from(n).map_err(|_| ConfigError::invalid(name, format!("{n} is too large")))
}

fn selectors(name: &str, v: &ConfigValue) -> Result<Vec<String>, ConfigError> {
    let raw: Vec<String> = match v {
        ConfigValue::List(l) => l.clone(),
        // The environment's syntax: `disk=ssd; zone in (a,b)`.
        ConfigValue::Text(t) => t.split(';').map(str::to_string).collect(),
        ConfigValue::Int(_) => {
            return Err(ConfigError::WrongType {
                key: name.into(),
                expected: "a list of label selectors".into(),
            })
        }
    };
    let mut out = Vec::new();
    for s in raw {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        cairn_layout::LabelSelector::parse(s)
            .map_err(|e| ConfigError::invalid(name, format!("selector {s:?}: {e}")))?;
        out.push(s.to_string());
    }
    Ok(out)
}

/// Sets `name` to `value` in `c` (None unsets an optional setting), checking the value's type
/// and syntax. Whether the change is acceptable for the cluster is [`validate_change`].
pub fn set(
    c: &mut ClusterConfig,
    name: &str,
    value: Option<&ConfigValue>,
) -> Result<(), ConfigError> {
    let s = setting(name)?;
    if s.apply == ApplyMode::Fixed {
        // Restating the current value (e.g. in a whole document) is not a change.
        let same = match value {
            Some(v) => count(name, v).ok().map(ConfigValue::Int) == get(c, name)?,
            None => false,
        };
        return match same {
            true => Ok(()),
            false => Err(ConfigError::Fixed { key: name.into() }),
        };
    }
    let Some(v) = value else {
        if !s.optional {
            return Err(ConfigError::invalid(name, "cannot be unset"));
        }
        match name {
            "replication.write_consistency" => c.write_consistency = None,
            "placement.require" => c.placement_require.clear(),
            "placement.prefer" => c.placement_prefer.clear(),
            "placement.avoid" => c.placement_avoid.clear(),
            "gc.grace_secs" => c.gc_grace_secs = None,
            "gc.interval_secs" => c.gc_interval_secs = None,
            "uploads.expiry_secs" => c.upload_expiry_secs = None,
            "limits.s3_max_connections" => c.s3_max_connections = None,
            "limits.s3_max_inflight" => c.s3_max_inflight = None,
            "repair.rate_mbps" => c.repair_rate_mbps = None,
            "scrub.rate_mbps" => c.scrub_rate_mbps = None,
            "lifecycle.rate" => c.lifecycle_rate = None,
            "rebalance.max_moves" => c.rebalance_max_moves = None,
            other => return unreachable_setting(other),
        }
        return Ok(());
    };
    match s.kind {
        Kind::Count => {
            let n = count(name, v)?;
            match name {
                "replication.factor" => c.replication = narrow(name, n)?,
                "replication.voters" => c.desired_voters = narrow(name, n)?,
                "gc.grace_secs" => c.gc_grace_secs = Some(n),
                "gc.interval_secs" => c.gc_interval_secs = Some(n),
                "uploads.expiry_secs" => c.upload_expiry_secs = Some(n),
                "limits.s3_max_connections" => c.s3_max_connections = Some(narrow(name, n)?),
                "limits.s3_max_inflight" => c.s3_max_inflight = Some(narrow(name, n)?),
                "repair.rate_mbps" => c.repair_rate_mbps = Some(n),
                "scrub.rate_mbps" => c.scrub_rate_mbps = Some(n),
                "lifecycle.rate" => c.lifecycle_rate = Some(n),
                "rebalance.max_moves" => c.rebalance_max_moves = Some(narrow(name, n)?),
                other => return unreachable_setting(other),
            }
        }
        Kind::Consistency => {
            let w = match v {
                ConfigValue::Text(t) => WriteConsistency::parse(t)
                    .ok_or_else(|| ConfigError::invalid(name, "must be ONE, QUORUM or ALL"))?,
                _ => {
                    return Err(ConfigError::WrongType {
                        key: name.into(),
                        expected: "ONE, QUORUM or ALL".into(),
                    })
                }
            };
            c.write_consistency = Some(w);
        }
        Kind::Selectors => {
            let l = selectors(name, v)?;
            match name {
                "placement.require" => c.placement_require = l,
                "placement.prefer" => c.placement_prefer = l,
                "placement.avoid" => c.placement_avoid = l,
                other => return unreachable_setting(other),
            }
        }
    }
    Ok(())
}

/// One setting that differs between two versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    pub key: String,
    pub from: Option<ConfigValue>,
    pub to: Option<ConfigValue>,
}

impl std::fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// The settings that differ from `old` to `new`, in display order (version and time are not
/// settings).
pub fn diff(old: &ClusterConfig, new: &ClusterConfig) -> Vec<ConfigDiff> {
    entries(old)
        .into_iter()
        .zip(entries(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((s, from), (_, to))| ConfigDiff {
            key: s.name.to_string(),
            from,
            to,
        })
        .collect()
}

/// Checks that the settings changed from `old` to `new` are acceptable for a cluster of
/// `nodes` registered (not removed) nodes; the first problem names its setting. Settings that
/// did not change are not re-checked (a value recorded at formation stays valid).
pub fn validate_change(
    old: &ClusterConfig,
    new: &ClusterConfig,
    nodes: usize,
) -> Result<(), ConfigError> {
    for d in diff(old, new) {
        let key = d.key.as_str();
        match key {
            "partitions" => return Err(ConfigError::Fixed { key: key.into() }),
            "replication.factor" => {
                if new.replication == 0 {
                    return Err(ConfigError::invalid(key, "must be at least 1"));
                }
                if nodes > 0 && new.replication > nodes {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{} copies cannot be placed on {nodes} node{}",
                            new.replication,
                            if nodes == 1 { "" } else { "s" }
                        ),
                    ));
                }
            }
            "replication.voters" => {
                let v = new.desired_voters;
                if v.is_multiple_of(2) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{v} voters tolerate no more failures than {}: use an odd count",
                            v.saturating_sub(1)
                        ),
                    ));
                }
                if !(1..=7).contains(&v) {
                    return Err(ConfigError::invalid(key, "must be 1, 3, 5 or 7"));
                }
            }
            _ => {
                // Re-check the value's own syntax (selectors, ranges) through `set`.
                let mut scratch = old.clone();
                set(&mut scratch, key, d.to.as_ref())?;
            }
        }
    }
    Ok(())
}

/// A recorded version of the cluster configuration: who changed it, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: u64,
    pub at_ms: i64,
    /// A token name or root key; None for the version recorded at formation.
    pub actor: Option<String>,
    pub message: String,
    /// The version this one restores, for a rollback.
    #[serde(default)]
    pub rollback_of: Option<u64>,
    pub config: ClusterConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base() -> ClusterConfig {
        ClusterConfig {
            version: 1,
            partitions: 64,
            replication: 3,
            desired_voters: 3,
            changed_ms: 1,
            ..Default::default()
        }
    }

    fn text(s: &str) -> ConfigValue {
        ConfigValue::Text(s.into())
    }

    #[test]
    fn every_setting_reads_and_unknown_ones_are_refused() {
        let c = base();
        for s in SETTINGS {
            assert!(get(&c, s.name).is_ok(), "{}", s.name);
        }
        let e = get(&c, "replication.factr").unwrap_err();
        assert_eq!(e.key(), "replication.factr");
        assert!(e.to_string().contains("replication.factor"), "{e}");
        let mut c = base();
        assert!(matches!(
            set(&mut c, "bogus", Some(&ConfigValue::Int(1))),
            Err(ConfigError::UnknownKey { .. })
        ));
    }

    #[test]
    fn values_are_typed() {
        let mut c = base();
        set(&mut c, "replication.write_consistency", Some(&text("all"))).unwrap();
        assert_eq!(c.write_consistency, Some(WriteConsistency::All));
        set(&mut c, "gc.grace_secs", Some(&text("300"))).unwrap();
        assert_eq!(c.gc_grace_secs, Some(300));
        let e = set(&mut c, "gc.grace_secs", Some(&text("soon"))).unwrap_err();
        assert!(matches!(e, ConfigError::WrongType { .. }));
        assert_eq!(e.key(), "gc.grace_secs");
        let e = set(
            &mut c,
            "replication.factor",
            Some(&ConfigValue::List(vec![])),
        )
        .unwrap_err();
        assert_eq!(e.key(), "replication.factor");
        let e = set(&mut c, "replication.write_consistency", Some(&text("most"))).unwrap_err();
        assert_eq!(e.key(), "replication.write_consistency");
        let e = set(&mut c, "gc.interval_secs", Some(&ConfigValue::Int(0))).unwrap_err();
        assert_eq!(e.key(), "gc.interval_secs");
        let e = set(&mut c, "replication.factor", None).unwrap_err();
        assert_eq!(e.key(), "replication.factor");
        set(&mut c, "gc.grace_secs", None).unwrap();
        assert_eq!(c.gc_grace_secs, None);
    }

    #[test]
    fn selectors_parse_from_lists_and_text() {
        let mut c = base();
        set(
            &mut c,
            "placement.avoid",
            Some(&text("disk=hdd; zone in (a,b)")),
        )
        .unwrap();
        assert_eq!(c.placement_avoid, vec!["disk=hdd", "zone in (a,b)"]);
        let e = set(
            &mut c,
            "placement.require",
            Some(&ConfigValue::List(vec!["zone in (a".into()])),
        )
        .unwrap_err();
        assert_eq!(e.key(), "placement.require");
        set(&mut c, "placement.avoid", None).unwrap();
        assert!(c.placement_avoid.is_empty());
    }

    #[test]
    fn partitions_are_fixed() {
        let mut c = base();
        assert_eq!(
            set(&mut c, "partitions", Some(&ConfigValue::Int(128))),
            Err(ConfigError::Fixed {
                key: "partitions".into()
            })
        );
        // Restating the current value is not a change.
        set(&mut c, "partitions", Some(&ConfigValue::Int(64))).unwrap();
    }

    #[test]
    fn changes_are_validated_against_the_cluster() {
        let old = base();
        let mut new = old.clone();
        new.replication = 4;
        let e = validate_change(&old, &new, 3).unwrap_err();
        assert_eq!(e.key(), "replication.factor");
        assert!(e.to_string().contains("3 nodes"), "{e}");
        validate_change(&old, &new, 4).unwrap();
        let mut new = old.clone();
        new.desired_voters = 4;
        let e = validate_change(&old, &new, 5).unwrap_err();
        assert_eq!(e.key(), "replication.voters");
        new.desired_voters = 9;
        assert_eq!(
            validate_change(&old, &new, 9).unwrap_err().key(),
            "replication.voters"
        );
        // A value recorded at formation is not re-checked when something else changes.
        let mut odd = base();
        odd.replication = 3;
        let mut next = odd.clone();
        next.gc_grace_secs = Some(60);
        validate_change(&odd, &next, 1).unwrap();
    }

    #[test]
    fn diff_names_what_changed() {
        let old = base();
        let mut new = old.clone();
        new.write_consistency = Some(WriteConsistency::All);
        new.version = 2;
        new.changed_ms = 99;
        let d = diff(&old, &new);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "replication.write_consistency: unset -> ALL"
        );
    }

    #[test]
    fn older_records_without_the_new_settings_still_decode() {
        // What the previous release stored: the first eight fields, positional.
        let old = (
            3u64,
            64u32,
            3usize,
            3usize,
            vec!["disk=ssd".to_string()],
            Vec::<String>::new(),
            Vec::<String>::new(),
            7i64,
        );
        let bytes = rmp_serde::to_vec(&old).unwrap();
        let c: ClusterConfig = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((c.version, c.partitions, c.replication), (3, 64, 3));
        assert_eq!(c.write_consistency, None);
        assert_eq!(c.gc_grace_secs, None);
    }

    fn arb_config() -> impl Strategy<Value = ClusterConfig> {
        let sel = prop::sample::select(vec!["disk=ssd", "zone in (a,b)", "rack!=r1", "tier"]);
        (
            (1usize..6, 1usize..8, prop::option::of(0u8..3)),
            (
                prop::collection::vec(sel.clone(), 0..3),
                prop::collection::vec(sel.clone(), 0..3),
                prop::collection::vec(sel, 0..3),
            ),
            (
                prop::option::of(1u64..10_000),
                prop::option::of(1u64..10_000),
                prop::option::of(1u64..10_000),
                prop::option::of(1u32..10_000),
                prop::option::of(1u32..10_000),
            ),
        )
            .prop_map(|((r, v, w), (req, pre, avo), (g, gi, ue, mc, mi))| {
                let s = |v: Vec<&str>| v.into_iter().map(String::from).collect();
                ClusterConfig {
                    version: 1,
                    partitions: 64,
                    replication: r,
                    desired_voters: v,
                    placement_require: s(req),
                    placement_prefer: s(pre),
                    placement_avoid: s(avo),
                    changed_ms: 0,
                    write_consistency: w.map(|i| {
                        [
                            WriteConsistency::One,
                            WriteConsistency::Quorum,
                            WriteConsistency::All,
                        ][usize::from(i)]
                    }),
                    gc_grace_secs: g,
                    gc_interval_secs: gi,
                    upload_expiry_secs: ue,
                    s3_max_connections: mc,
                    s3_max_inflight: mi,
                    ..Default::default()
                }
            })
            .prop_flat_map(|c| {
                let rate = || prop::option::of(1u64..10_000);
                (Just(c), rate(), rate())
            })
            .prop_map(|(c, rr, sr)| ClusterConfig {
                repair_rate_mbps: rr,
                scrub_rate_mbps: sr,
                ..c
            })
    }

    proptest! {
        #[test]
        fn applying_a_diff_reproduces_the_target(a in arb_config(), b in arb_config()) {
            prop_assert!(diff(&a, &a).is_empty());
            let d = diff(&a, &b);
            let mut c = a.clone();
            for e in &d {
                set(&mut c, &e.key, e.to.as_ref()).unwrap();
            }
            prop_assert_eq!(diff(&c, &b), vec![]);
            // Every differing setting is listed exactly once.
            let keys: std::collections::BTreeSet<_> = d.iter().map(|e| e.key.clone()).collect();
            prop_assert_eq!(keys.len(), d.len());
        }

        #[test]
        fn wrong_types_are_refused_naming_the_setting(
            idx in 0..SETTINGS.len(),
            n in any::<u64>(),
            junk in "[a-z ]{1,8}",
        ) {
            let s = &SETTINGS[idx];
            let mut c = base();
            let wrong = match s.kind {
                Kind::Count => ConfigValue::Text(junk),
                Kind::Consistency => ConfigValue::Int(n),
                Kind::Selectors => ConfigValue::Int(n),
            };
            let e = set(&mut c, s.name, Some(&wrong)).unwrap_err();
            prop_assert_eq!(e.key(), s.name);
            prop_assert!(e.to_string().contains(s.name));
        }

        #[test]
        fn replication_above_the_node_count_is_refused(r in 1usize..10, nodes in 1usize..10) {
            let old = base();
            let mut new = old.clone();
            new.replication = r;
            let res = validate_change(&old, &new, nodes);
            if r == old.replication || r <= nodes {
                prop_assert!(res.is_ok());
            } else {
                let e = res.unwrap_err();
                prop_assert_eq!(e.key(), "replication.factor");
            }
        }
    }
}
