//! Node configuration. Sources, lowest precedence first: built-in defaults, the TOML file given
//! with `--config`, environment variables (upper-case names, e.g. `NODE_API_PORT`), then
//! command-line flags. The file uses the same names in lower case. Durations are seconds.
//! Invalid values fail at start with a message naming the setting.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Every setting a node reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory: metadata, chunks, node identity.
    pub storage_path: PathBuf,
    /// Node name in the cluster; generated once and persisted when unset.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub node_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub node_bind_addr: String,
    /// Address peers and clients use to reach this node (default: the bind address).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub node_advertise_addr: Option<String>,
    pub node_api_port: u16,
    pub node_rpc_port: u16,
    pub node_admin_port: u16,
    /// Root S3 credentials; generated at first start and persisted when unset.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub access_key: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secret_key: Option<String>,
    /// `host:rpc_port,...` to join through; empty = single node.
    #[serde(deserialize_with = "lenient::string")]
    pub cluster_seeds: String,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub cluster_join_token: Option<String>,
    /// Comma-separated extra join tokens whose gossip packets and join proofs are accepted
    /// (the node itself seals and proves with `CLUSTER_JOIN_TOKEN` only): set while rotating
    /// the token with rolling restarts.
    #[serde(deserialize_with = "lenient::string")]
    pub cluster_join_token_accept: String,
    /// Operator-provided RPC identity instead of the cluster CA (all three or none; the node
    /// certificate's common name must be the node id; re-read when the files change).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tls_ca_cert: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tls_node_cert: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tls_node_key: Option<String>,
    /// The cluster master key (64 hex chars) sealing access-key secrets; overrides
    /// `<data>/master.key` and must be the same on every node.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub encryption_key: Option<String>,
    /// `/metrics` on the management port needs a `read` operator token.
    pub metrics_require_token: bool,
    #[serde(deserialize_with = "lenient::string")]
    pub cluster_name: String,
    /// Copies of every chunk and voters per partition group (capped at the node count).
    pub replication_factor: u32,
    /// Desired voters of the system group (1-5); other nodes are learners.
    pub cluster_voters: u32,
    /// `ONE`, `QUORUM` or `ALL` replicas must acknowledge a chunk write.
    #[serde(deserialize_with = "lenient::string")]
    pub default_write_consistency: String,
    /// Failure domain of this node.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub node_zone: Option<String>,
    /// `k=v,k=v` labels of this node.
    #[serde(deserialize_with = "lenient::string")]
    pub node_labels: String,
    /// Placement policy, recorded in the cluster configuration when the cluster forms:
    /// `;`-separated label selectors (`disk=ssd; zone in (a,b)`). Replicas only on nodes
    /// matching all of `PLACEMENT_REQUIRE`, preferably on nodes matching one of
    /// `PLACEMENT_PREFER`, and on nodes matching one of `PLACEMENT_AVOID` only when nothing
    /// else fits.
    #[serde(deserialize_with = "lenient::string")]
    pub placement_require: String,
    #[serde(deserialize_with = "lenient::string")]
    pub placement_prefer: String,
    #[serde(deserialize_with = "lenient::string")]
    pub placement_avoid: String,
    /// Period of node heartbeats (registration with fresh stats).
    pub heartbeat_interval_secs: u64,
    /// Silence after which a node is considered down.
    pub node_timeout_secs: u64,
    /// Partitions P (fixed at cluster creation; power of two).
    pub partitions: u32,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Objects up to this many bytes are stored inside their metadata record.
    pub inline_threshold: u64,
    /// Age before an unreferenced chunk may be deleted.
    pub gc_grace_secs: u64,
    pub gc_interval_secs: u64,
    /// Multipart uploads older than this are aborted.
    pub multipart_expiry_secs: u64,
    /// Raft entries between snapshots of a group.
    pub raft_snapshot_every: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub s3_region: String,
    /// Comma-separated base domains for virtual-host-style requests (`bucket.domain`).
    #[serde(deserialize_with = "lenient::string")]
    pub s3_domains: String,
    /// `tracing` filter, e.g. `info` or `cairn=debug`.
    #[serde(deserialize_with = "lenient::string")]
    pub log: String,
    /// Open connections the S3 listener accepts; more are answered 503 SlowDown.
    pub s3_max_connections: u32,
    /// S3 requests handled at once; more are answered 503 SlowDown.
    pub s3_max_inflight: u32,
    /// Time a client has to send request headers (S3 and management ports).
    pub http_header_timeout_secs: u64,
    /// Longest pause in a request body before the request fails.
    pub http_body_idle_timeout_secs: u64,
    /// Accept AWS Signature Version 2 on the S3 port (off: only SigV4).
    pub s3_allow_sigv2: bool,
    /// PEM certificate chain and private key: the S3 and management ports serve HTTPS.
    /// Re-read when the files change.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Log line format on stderr: `plain` (human; colour only on a terminal) or `json` (one
    /// object per line, with the fields of the enclosing spans such as `request_id`).
    #[serde(deserialize_with = "lenient::string")]
    pub log_format: String,
    /// Free bytes the data directory's file system must keep: below it `/ready` fails.
    pub disk_reserve_bytes: u64,
    /// Scrubber read rate in megabytes (10^6 bytes) per second over this node's chunk files
    /// (0: unlimited). Kept modest so client traffic keeps the disk.
    pub scrub_rate_mbps: u64,
    /// Time from the end of one full scrub pass to the start of the next.
    pub scrub_interval_secs: u64,
    /// Time between passes of the hand-back worker, which drops local copies of chunks whose
    /// partition the layout placed elsewhere once every holder has them.
    pub handback_interval_secs: u64,
    /// How long a node must stay down before the layout controller re-homes its partitions
    /// (a new layout without it); a node in maintenance is never re-homed.
    pub repair_grace_secs: u64,
    /// Chunk-sync (anti-entropy) fetch rate in megabytes (10^6 bytes) per second (0:
    /// unlimited); the cluster setting `repair.rate_mbps` overrides it live.
    pub repair_rate_mbps: u64,
    /// How many seconds count as one day in lifecycle rules (86400; shorter for tests and
    /// demos: with 2, `Days=1` expires an object 2-4 s after it was written).
    pub lifecycle_day_secs: u64,
    /// Time between passes of the lifecycle worker.
    pub lifecycle_interval_secs: u64,
    /// Object versions the lifecycle worker examines per second (0: unlimited); the cluster
    /// setting `lifecycle.rate` overrides it live.
    pub lifecycle_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            storage_path: PathBuf::from("./data"),
            node_id: None,
            node_bind_addr: "0.0.0.0".into(),
            node_advertise_addr: None,
            node_api_port: 9000,
            node_rpc_port: 7000,
            node_admin_port: 8080,
            access_key: None,
            secret_key: None,
            cluster_seeds: String::new(),
            cluster_join_token: None,
            cluster_join_token_accept: String::new(),
            tls_ca_cert: None,
            tls_node_cert: None,
            tls_node_key: None,
            encryption_key: None,
            metrics_require_token: false,
            cluster_name: "cairn".into(),
            replication_factor: 3,
            cluster_voters: 3,
            default_write_consistency: "QUORUM".into(),
            node_zone: None,
            node_labels: String::new(),
            placement_require: String::new(),
            placement_prefer: String::new(),
            placement_avoid: String::new(),
            heartbeat_interval_secs: 5,
            node_timeout_secs: 15,
            partitions: 64,
            chunk_size: 4 << 20,
            inline_threshold: 64 << 10,
            gc_grace_secs: 600,
            gc_interval_secs: 60,
            multipart_expiry_secs: 86_400,
            raft_snapshot_every: 10_000,
            s3_region: "us-east-1".into(),
            s3_domains: "localhost".into(),
            log: "info,s3s=off,openraft=warn".into(),
            s3_max_connections: 1024,
            s3_max_inflight: 256,
            http_header_timeout_secs: 10,
            http_body_idle_timeout_secs: 30,
            s3_allow_sigv2: false,
            tls_cert: None,
            tls_key: None,
            log_format: "plain".into(),
            disk_reserve_bytes: 512 << 20,
            scrub_rate_mbps: 8,
            scrub_interval_secs: 7 * 86_400,
            handback_interval_secs: 60,
            repair_grace_secs: 600,
            repair_rate_mbps: 0,
            lifecycle_day_secs: 86_400,
            lifecycle_interval_secs: 3600,
            lifecycle_rate: 1000,
        }
    }
}

/// Environment values are parsed as TOML-ish scalars (`NODE_ID=1` arrives as an integer);
/// text settings accept any scalar and keep its text.
mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }

    impl Scalar {
        fn text(self) -> String {
            match self {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::U(u) => u.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            }
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Scalar::deserialize(d)?.text())
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::text))
    }
}

/// Names of every setting (lower case, as in the file).
pub const SETTINGS: &[&str] = &[
    "storage_path",
    "node_id",
    "node_bind_addr",
    "node_advertise_addr",
    "node_api_port",
    "node_rpc_port",
    "node_admin_port",
    "access_key",
    "secret_key",
    "cluster_seeds",
    "cluster_join_token",
    "cluster_join_token_accept",
    "tls_ca_cert",
    "tls_node_cert",
    "tls_node_key",
    "encryption_key",
    "metrics_require_token",
    "cluster_name",
    "replication_factor",
    "cluster_voters",
    "default_write_consistency",
    "node_zone",
    "node_labels",
    "placement_require",
    "placement_prefer",
    "placement_avoid",
    "heartbeat_interval_secs",
    "node_timeout_secs",
    "partitions",
    "chunk_size",
    "inline_threshold",
    "gc_grace_secs",
    "gc_interval_secs",
    "multipart_expiry_secs",
    "raft_snapshot_every",
    "s3_region",
    "s3_domains",
    "log",
    "s3_max_connections",
    "s3_max_inflight",
    "http_header_timeout_secs",
    "http_body_idle_timeout_secs",
    "s3_allow_sigv2",
    "tls_cert",
    "tls_key",
    "log_format",
    "disk_reserve_bytes",
    "scrub_rate_mbps",
    "scrub_interval_secs",
    "handback_interval_secs",
    "repair_grace_secs",
    "repair_rate_mbps",
    "lifecycle_day_secs",
    "lifecycle_interval_secs",
    "lifecycle_rate",
];

/// Flags of `cairn server`; each overrides the file and the environment.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct ServerFlags {
    /// TOML configuration file.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory [env: STORAGE_PATH]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_path: Option<PathBuf>,
    /// Node name [env: NODE_ID]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Bind address [env: NODE_BIND_ADDR]
    #[arg(long = "bind-addr")]
    #[serde(rename = "node_bind_addr", skip_serializing_if = "Option::is_none")]
    pub bind_addr: Option<String>,
    /// S3 port [env: NODE_API_PORT]
    #[arg(long = "api-port")]
    #[serde(rename = "node_api_port", skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
    /// gRPC port [env: NODE_RPC_PORT]
    #[arg(long = "rpc-port")]
    #[serde(rename = "node_rpc_port", skip_serializing_if = "Option::is_none")]
    pub rpc_port: Option<u16>,
    /// Management HTTP port [env: NODE_ADMIN_PORT]
    #[arg(long = "admin-port")]
    #[serde(rename = "node_admin_port", skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    /// Log filter [env: LOG]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// A configuration problem, naming the setting (by its environment name).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("invalid setting {setting}: {msg}")]
    Invalid { setting: String, msg: String },
}

fn invalid(setting: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_uppercase(),
        msg: msg.into(),
    }
}

/// figment 0.10 panics on some quoted environment values (an escape after a non-ASCII
/// character: it slices the string at a character index, not a byte index). Each setting's
/// value is parsed on its own first, so such input is an error naming the setting, not a crash.
fn check_env_values() -> Result<(), ConfigError> {
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if !SETTINGS.contains(&lower.as_str()) {
            continue;
        }
        let value = value.to_string();
        let parsed =
            std::panic::catch_unwind(move || value.parse::<figment::value::Value>().map(|_| ()));
        if parsed.is_err() {
            return Err(invalid(
                &lower,
                "cannot be parsed: check its quotes and backslash escapes",
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Loads defaults < `flags.config` file < environment < flags, then validates.
    pub fn load(flags: &ServerFlags) -> Result<Self, ConfigError> {
        check_env_values()?;
        Self::load_from(flags, Env::raw().only(SETTINGS))
    }

    fn load_from(flags: &ServerFlags, env: Env) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &flags.config {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.clone(),
                    msg: "not found or not a file".into(),
                });
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(env).merge(Serialized::defaults(flags));
        let cfg: Config = fig.extract().map_err(|e| {
            let setting = e
                .path
                .last()
                .cloned()
                .unwrap_or_else(|| "configuration".into());
            match (&flags.config, e.kind.clone()) {
                (Some(path), figment::error::Kind::UnknownField(f, _)) => ConfigError::File {
                    path: path.clone(),
                    msg: format!("unknown setting `{f}`"),
                },
                _ => invalid(&setting, e.kind.to_string()),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tls = [&self.tls_ca_cert, &self.tls_node_cert, &self.tls_node_key];
        if tls.iter().any(|t| t.is_some()) && !tls.iter().all(|t| t.is_some()) {
            return Err(invalid(
                "tls_ca_cert",
                "TLS_CA_CERT, TLS_NODE_CERT and TLS_NODE_KEY go together: set all three or none",
            ));
        }
        if self.storage_path.as_os_str().is_empty() {
            return Err(invalid("storage_path", "must not be empty"));
        }
        if let Some(id) = &self.node_id {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(invalid(
                    "node_id",
                    "must be 1-64 characters of [A-Za-z0-9._-]",
                ));
            }
        }
        if self.node_bind_addr.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "node_bind_addr",
                format!("`{}` is not an IP address", self.node_bind_addr),
            ));
        }
        for (name, port) in [
            ("node_api_port", self.node_api_port),
            ("node_rpc_port", self.node_rpc_port),
            ("node_admin_port", self.node_admin_port),
        ] {
            if port == 0 {
                return Err(invalid(name, "must be between 1 and 65535"));
            }
        }
        if self.node_api_port == self.node_rpc_port
            || self.node_api_port == self.node_admin_port
            || self.node_rpc_port == self.node_admin_port
        {
            return Err(invalid(
                "node_api_port",
                "NODE_API_PORT, NODE_RPC_PORT and NODE_ADMIN_PORT must differ",
            ));
        }
        match (&self.access_key, &self.secret_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "secret_key",
                    "ACCESS_KEY is set but SECRET_KEY is not",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "access_key",
                    "SECRET_KEY is set but ACCESS_KEY is not",
                ))
            }
            (Some(a), Some(s)) => {
                if a.len() < 3
                    || a.len() > 128
                    || !a
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(invalid(
                        "access_key",
                        "must be 3-128 characters of [A-Za-z0-9_-]",
                    ));
                }
                if s.len() < 8
                    || s.len() > 128
                    || s.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(invalid(
                        "secret_key",
                        "must be 8-128 characters without whitespace",
                    ));
                }
            }
            (None, None) => {}
        }
        if self.partitions == 0 || !self.partitions.is_power_of_two() || self.partitions > 4096 {
            return Err(invalid(
                "partitions",
                "must be a power of two between 1 and 4096",
            ));
        }
        if !(64 << 10..=64 << 20).contains(&self.chunk_size) {
            return Err(invalid(
                "chunk_size",
                "must be between 65536 (64 KiB) and 67108864 (64 MiB) bytes",
            ));
        }
        if self.inline_threshold > self.chunk_size || self.inline_threshold > 1 << 20 {
            return Err(invalid(
                "inline_threshold",
                "must be at most 1 MiB and at most CHUNK_SIZE",
            ));
        }
        if self.gc_interval_secs == 0 {
            return Err(invalid("gc_interval_secs", "must be at least 1"));
        }
        if self.scrub_interval_secs == 0 {
            return Err(invalid("scrub_interval_secs", "must be at least 1"));
        }
        if self.handback_interval_secs == 0 {
            return Err(invalid("handback_interval_secs", "must be at least 1"));
        }
        if self.scrub_rate_mbps > 1_000_000 {
            return Err(invalid(
                "scrub_rate_mbps",
                "must be at most 1000000 (0 means unlimited)",
            ));
        }
        if self.repair_rate_mbps > 1_000_000 {
            return Err(invalid(
                "repair_rate_mbps",
                "must be at most 1000000 (0 means unlimited)",
            ));
        }
        if self.lifecycle_day_secs == 0 {
            return Err(invalid("lifecycle_day_secs", "must be at least 1"));
        }
        if self.lifecycle_interval_secs == 0 {
            return Err(invalid("lifecycle_interval_secs", "must be at least 1"));
        }
        if self.multipart_expiry_secs == 0 {
            return Err(invalid("multipart_expiry_secs", "must be at least 1"));
        }
        if self.raft_snapshot_every < 100 {
            return Err(invalid("raft_snapshot_every", "must be at least 100"));
        }
        if self.s3_region.is_empty() {
            return Err(invalid("s3_region", "must not be empty"));
        }
        if self.replication_factor == 0 || self.replication_factor > 7 {
            return Err(invalid("replication_factor", "must be between 1 and 7"));
        }
        if !(1..=5).contains(&self.cluster_voters) {
            return Err(invalid("cluster_voters", "must be between 1 and 5"));
        }
        if !["ONE", "QUORUM", "ALL"]
            .contains(&self.default_write_consistency.to_ascii_uppercase().as_str())
        {
            return Err(invalid(
                "default_write_consistency",
                "must be ONE, QUORUM or ALL",
            ));
        }
        if self.heartbeat_interval_secs == 0 {
            return Err(invalid("heartbeat_interval_secs", "must be at least 1"));
        }
        if self.node_timeout_secs <= self.heartbeat_interval_secs {
            return Err(invalid(
                "node_timeout_secs",
                "must be longer than HEARTBEAT_INTERVAL_SECS",
            ));
        }
        if self.s3_max_connections == 0 {
            return Err(invalid("s3_max_connections", "must be at least 1"));
        }
        if self.s3_max_inflight == 0 {
            return Err(invalid("s3_max_inflight", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.http_header_timeout_secs) {
            return Err(invalid(
                "http_header_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=3600).contains(&self.http_body_idle_timeout_secs) {
            return Err(invalid(
                "http_body_idle_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid("tls_key", "TLS_CERT is set but TLS_KEY is not"))
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert", "TLS_KEY is set but TLS_CERT is not"))
            }
            (Some(c), Some(k)) => {
                for (name, p) in [("tls_cert", c), ("tls_key", k)] {
                    if !p.is_file() {
                        return Err(invalid(
                            name,
                            format!("{} is not a readable file", p.display()),
                        ));
                    }
                }
            }
            (None, None) => {}
        }
        if !["plain", "json"].contains(&self.log_format.as_str()) {
            return Err(invalid("log_format", "must be plain or json"));
        }
        self.labels()?;
        self.join_token_accept()?;
        self.placement()?;
        for seed in self.seeds() {
            if !seed.contains(':') {
                return Err(invalid(
                    "cluster_seeds",
                    format!("`{seed}` is not host:port"),
                ));
            }
        }
        Ok(())
    }

    /// `CLUSTER_SEEDS` split on commas.
    pub fn seeds(&self) -> Vec<String> {
        split_list(&self.cluster_seeds)
    }

    /// `CLUSTER_JOIN_TOKEN_ACCEPT` split on commas; an empty entry (`a,,b`, a trailing comma)
    /// is refused rather than skipped, since it is most likely a token lost in editing.
    pub fn join_token_accept(&self) -> Result<Vec<String>, ConfigError> {
        if self.cluster_join_token_accept.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.cluster_join_token_accept
            .split(',')
            .map(str::trim)
            .map(|t| {
                if t.is_empty() {
                    Err(invalid(
                        "cluster_join_token_accept",
                        "has an empty entry: give comma-separated tokens",
                    ))
                } else {
                    Ok(t.to_string())
                }
            })
            .collect()
    }

    /// `NODE_LABELS` parsed into a map.
    pub fn labels(&self) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
        let mut out = std::collections::BTreeMap::new();
        for item in split_list(&self.node_labels) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(invalid("node_labels", format!("`{item}` is not key=value")));
            };
            if k.trim().is_empty() {
                return Err(invalid("node_labels", format!("`{item}` has an empty key")));
            }
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(out)
    }

    /// `PLACEMENT_REQUIRE`, `PLACEMENT_PREFER`, `PLACEMENT_AVOID` split into selectors, each
    /// checked against the selector grammar.
    #[allow(clippy::type_complexity)]
    pub fn placement(&self) -> Result<(Vec<String>, Vec<String>, Vec<String>), ConfigError> {
        let parse = |name: &'static str, v: &str| -> Result<Vec<String>, ConfigError> {
            let mut out = Vec::new();
            for sel in v.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                if let Err(e) = sel.parse::<cairn_layout::LabelSelector>() {
                    return Err(invalid(name, format!("`{sel}`: {e}")));
                }
                out.push(sel.to_string());
            }
            Ok(out)
        };
        Ok((
            parse("placement_require", &self.placement_require)?,
            parse("placement_prefer", &self.placement_prefer)?,
            parse("placement_avoid", &self.placement_avoid)?,
        ))
    }

    /// `S3_DOMAINS` split on commas.
    pub fn domains(&self) -> Vec<String> {
        split_list(&self.s3_domains)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.storage_path
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn load_with(env: &[(&str, &str)], flags: &ServerFlags) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            for (k, v) in env {
                jail.set_env(k, v);
            }
            result = Some(Config::load(flags));
            Ok(())
        });
        result.unwrap_or_else(|| Ok(Config::default()))
    }

    #[test]
    fn lifecycle_settings_are_read_and_checked() {
        let c = load_with(
            &[
                ("LIFECYCLE_DAY_SECS", "2"),
                ("LIFECYCLE_INTERVAL_SECS", "1"),
                ("LIFECYCLE_RATE", "0"),
            ],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(
            (
                c.lifecycle_day_secs,
                c.lifecycle_interval_secs,
                c.lifecycle_rate
            ),
            (2, 1, 0)
        );
        assert_eq!(Config::default().lifecycle_day_secs, 86_400);
        let e = load_with(&[("LIFECYCLE_DAY_SECS", "0")], &ServerFlags::default()).unwrap_err();
        assert!(e.to_string().contains("LIFECYCLE_DAY_SECS"), "{e}");
    }

    #[test]
    fn scrub_settings_are_read_and_checked() {
        let c = load_with(
            &[("SCRUB_RATE_MBPS", "0"), ("SCRUB_INTERVAL_SECS", "1")],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!((c.scrub_rate_mbps, c.scrub_interval_secs), (0, 1));
        let c = load_with(&[("REPAIR_RATE_MBPS", "3")], &ServerFlags::default()).unwrap();
        assert_eq!(c.repair_rate_mbps, 3);
        assert_eq!(
            Config::default().repair_rate_mbps,
            0,
            "unlimited by default"
        );
        let e = load_with(&[("SCRUB_INTERVAL_SECS", "0")], &ServerFlags::default()).unwrap_err();
        assert!(e.to_string().contains("SCRUB_INTERVAL_SECS"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_with(&[], &ServerFlags::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.node_api_port, 9000);
        assert_eq!(c.storage_path, PathBuf::from("./data"));
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(
            &file,
            "node_api_port = 9100\nnode_rpc_port = 7100\nstorage_path = \"/tmp/x\"\n",
        )
        .unwrap();
        let flags = ServerFlags {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = load_with(&[("NODE_API_PORT", "9200")], &flags).unwrap();
        assert_eq!(c.node_api_port, 9200, "env beats file");
        assert_eq!(c.node_rpc_port, 7100, "file beats default");
        assert_eq!(c.storage_path, PathBuf::from("/tmp/x"));
        let flags = ServerFlags {
            config: Some(file),
            api_port: Some(9300),
            ..Default::default()
        };
        let c = load_with(&[("NODE_API_PORT", "9200")], &flags).unwrap();
        assert_eq!(c.node_api_port, 9300, "flag beats env");
    }

    #[test]
    fn seed_environment_names_work() {
        let c = load_with(
            &[
                ("STORAGE_PATH", "/srv/cairn"),
                ("NODE_ID", "n1"),
                ("NODE_BIND_ADDR", "127.0.0.2"),
                ("NODE_RPC_PORT", "7001"),
                ("NODE_ADMIN_PORT", "8081"),
                ("ACCESS_KEY", "admin"),
                ("SECRET_KEY", "secret-key-1"),
                ("CLUSTER_SEEDS", "a:7000, b:7000"),
            ],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(c.node_id.as_deref(), Some("n1"));
        assert_eq!(c.node_bind_addr, "127.0.0.2");
        assert_eq!(c.node_rpc_port, 7001);
        assert_eq!(c.node_admin_port, 8081);
        assert_eq!(c.access_key.as_deref(), Some("admin"));
        assert_eq!(c.seeds(), vec!["a:7000", "b:7000"]);
    }

    #[test]
    fn numeric_looking_text_settings_are_text() {
        let c = load_with(
            &[
                ("NODE_ID", "1"),
                ("ACCESS_KEY", "12345"),
                ("SECRET_KEY", "12345678"),
                ("CLUSTER_JOIN_TOKEN", "42"),
            ],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(c.node_id.as_deref(), Some("1"));
        assert_eq!(c.access_key.as_deref(), Some("12345"));
        assert_eq!(c.secret_key.as_deref(), Some("12345678"));
        assert_eq!(c.cluster_join_token.as_deref(), Some("42"));
    }

    #[test]
    fn accepted_join_tokens_are_a_checked_list() {
        let c = load_with(&[], &ServerFlags::default()).unwrap();
        assert!(c.join_token_accept().unwrap().is_empty());
        let c = load_with(
            &[("CLUSTER_JOIN_TOKEN_ACCEPT", "old-token, older")],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(c.join_token_accept().unwrap(), vec!["old-token", "older"]);
        // A numeric-looking token is text like CLUSTER_JOIN_TOKEN.
        let c = load_with(
            &[("CLUSTER_JOIN_TOKEN_ACCEPT", "42")],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(c.join_token_accept().unwrap(), vec!["42"]);
        for bad in ["a,,b", "a,", ",a", "a, ,b"] {
            let err = load_with(
                &[("CLUSTER_JOIN_TOKEN_ACCEPT", bad)],
                &ServerFlags::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("CLUSTER_JOIN_TOKEN_ACCEPT"), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let cases: &[(&str, &str, &str)] = &[
            ("NODE_API_PORT", "abc", "NODE_API_PORT"),
            ("NODE_API_PORT", "0", "NODE_API_PORT"),
            ("NODE_BIND_ADDR", "not-an-ip", "NODE_BIND_ADDR"),
            ("PARTITIONS", "3", "PARTITIONS"),
            ("CHUNK_SIZE", "10", "CHUNK_SIZE"),
            ("ACCESS_KEY", "admin", "SECRET_KEY"),
            ("NODE_ID", "bad id", "NODE_ID"),
            ("CLUSTER_SEEDS", "nohost", "CLUSTER_SEEDS"),
            (
                "DEFAULT_WRITE_CONSISTENCY",
                "MOST",
                "DEFAULT_WRITE_CONSISTENCY",
            ),
            ("NODE_LABELS", "zone", "NODE_LABELS"),
            ("PLACEMENT_REQUIRE", "disk in ssd", "PLACEMENT_REQUIRE"),
            ("CLUSTER_VOTERS", "9", "CLUSTER_VOTERS"),
            ("S3_MAX_CONNECTIONS", "0", "S3_MAX_CONNECTIONS"),
            ("S3_MAX_INFLIGHT", "0", "S3_MAX_INFLIGHT"),
            ("HTTP_HEADER_TIMEOUT_SECS", "0", "HTTP_HEADER_TIMEOUT_SECS"),
            (
                "HTTP_BODY_IDLE_TIMEOUT_SECS",
                "0",
                "HTTP_BODY_IDLE_TIMEOUT_SECS",
            ),
            ("S3_ALLOW_SIGV2", "maybe", "S3_ALLOW_SIGV2"),
            ("TLS_CERT", "/nonexistent/cert.pem", "TLS_KEY"),
            ("TLS_KEY", "/nonexistent/key.pem", "TLS_CERT"),
            ("LOG_FORMAT", "xml", "LOG_FORMAT"),
            ("DISK_RESERVE_BYTES", "lots", "DISK_RESERVE_BYTES"),
        ];
        for (k, v, named) in cases {
            let err = load_with(&[(k, v)], &ServerFlags::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(named),
                "{k}={v}: error `{err}` should name {named}"
            );
        }
    }

    #[test]
    fn a_value_figment_cannot_parse_names_its_setting() {
        // Found by fuzz_config: figment 0.10 panics on this quoted value.
        let err = load_with(
            &[("STORAGE_PATH", "\"\u{e000}\\a\"")],
            &ServerFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("STORAGE_PATH"), "{err}");
    }

    #[test]
    fn tls_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "x").unwrap();
        let c = cert.to_str().unwrap();
        let err = load_with(
            &[("TLS_CERT", c), ("TLS_KEY", "/nonexistent/k.pem")],
            &ServerFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("TLS_KEY") && err.contains("/nonexistent/k.pem"),
            "{err}"
        );
        let ok = load_with(
            &[("TLS_CERT", c), ("TLS_KEY", c), ("S3_ALLOW_SIGV2", "true")],
            &ServerFlags::default(),
        )
        .unwrap();
        assert_eq!(ok.tls_cert.as_deref(), Some(cert.as_path()));
        assert!(ok.s3_allow_sigv2);
    }

    #[test]
    fn unknown_file_setting_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, "node_api_prot = 1\n").unwrap();
        let flags = ServerFlags {
            config: Some(file),
            ..Default::default()
        };
        let err = load_with(&[], &flags).unwrap_err().to_string();
        assert!(err.contains("node_api_prot"), "{err}");
    }
}
