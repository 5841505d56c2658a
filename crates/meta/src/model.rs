//! Records kept in the state machines: buckets (system group), objects, multipart uploads and
//! chunk reference sets (partition groups).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Content address of a chunk: the BLAKE3 hash of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data` into its content address.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a 64-character lowercase hex string.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// The partition that owns this chunk's reference set.
    pub fn partition(&self, partitions: u32) -> u32 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        (u64::from_be_bytes(b) % u64::from(partitions.max(1))) as u32
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One chunk of an object, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u64,
}

/// Where an object's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// Small objects live inside the metadata record: one Raft round trip, no chunk files.
    Inline(#[serde(with = "serde_bytes_compat")] Vec<u8>),
    /// Larger objects are a sequence of content-addressed chunks.
    Chunks(Vec<ChunkRef>),
}

impl ObjectData {
    /// Chunks this data references (none when inline).
    pub fn chunks(&self) -> &[ChunkRef] {
        match self {
            ObjectData::Inline(_) => &[],
            ObjectData::Chunks(c) => c,
        }
    }
}

/// S3 checksum algorithms whose value we store and return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// HTTP headers stored with an object and returned on GET/HEAD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` values, keyed by the lower-case suffix.
    pub user: BTreeMap<String, String>,
    /// S3 object tags, in the order the client gave them (validated by the S3 layer). Kept
    /// with the headers because they share their life: stored in the version's record (and an
    /// upload's, applied at completion), replaced by an overwrite, dropped with the object.
    /// Appended with a default, so records written before tags existed read as untagged.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The version's ACL grants beyond the owner's (empty: private), set by `x-amz-acl` /
    /// `x-amz-grant-*` at upload or by PutObjectAcl. Enforced only while the bucket's ACLs
    /// are enabled. Appended with a default: older records read as private.
    #[serde(default)]
    pub acl: Vec<crate::acl::AclGrant>,
}

/// One S3 tag (object or bucket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The current version of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Unique per write; names this version in chunk reference sets.
    pub version: String,
    pub size: u64,
    /// Hex MD5 for a single PUT, `md5-of-md5s-N` for a multipart upload (no quotes).
    pub etag: String,
    /// Unix milliseconds.
    pub last_modified_ms: i64,
    pub headers: ObjectHeaders,
    /// Base64 S3 checksum, when the client sent one.
    pub checksum: Option<(ChecksumAlgo, String)>,
    /// Part sizes when the object came from a multipart upload.
    pub parts: Option<Vec<u64>>,
    pub data: ObjectData,
    /// Written while the bucket's versioning was Enabled: S3 names it by `version`. Otherwise
    /// (never versioned, Suspended, or written before versioning existed) it is the key's
    /// `null` version. Appended with a default (positional msgpack).
    #[serde(default)]
    pub versioned: bool,
    /// Base64 checksums of the parts (same algorithm as `checksum`), in part order, when the
    /// object came from a checksummed multipart upload (GetObjectAttributes' ObjectParts).
    /// Appended with a default: older records read as having none.
    #[serde(default)]
    pub part_checksums: Option<Vec<String>>,
    /// How the stored bytes are encrypted (None: plaintext). `size` and `etag` describe the
    /// plaintext; `data` holds the sealed segments. Appended with a default, so records
    /// written before encryption existed read as plaintext.
    #[serde(default)]
    pub encryption: Option<ObjectEncryption>,
    /// Object lock on this version: retention and legal hold (None: never locked). Appended
    /// with a default, so records written before object lock existed read as unlocked.
    #[serde(default)]
    pub lock: Option<crate::lock::VersionLock>,
}

/// Which server-side encryption protects an object, as S3 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseAlgorithm {
    /// SSE-S3 (`AES256`): the data key is wrapped by the cluster's SSE key.
    S3,
    /// SSE-C: the data key is wrapped by a key derived from the customer's key, which is
    /// never stored.
    Customer,
    /// SSE-KMS (`aws:kms`): the data key is wrapped by a named key of the built-in key store
    /// (`ObjectEncryption::kms_key_id`).
    Kms,
}

/// The encryption of one object: its data key, wrapped, and the segment size it was sealed
/// with (see `cairn_object::sse`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEncryption {
    pub algorithm: SseAlgorithm,
    /// 12-byte nonce followed by the sealed 32-byte data key.
    pub wrapped_key: Vec<u8>,
    /// Plaintext bytes per sealed segment.
    pub segment_size: u32,
    /// For an object completed from a multipart upload: the random salt of each part, in
    /// order (the part's key is derived from the upload's data key and its salt, see
    /// `cairn_object::sse::DataKey::for_part`); empty for a single-PUT object, whose segments
    /// are sealed with the data key itself. Appended with a default.
    #[serde(default)]
    pub part_salts: Vec<Vec<u8>>,
    /// The key-store key that wraps the data key, for SSE-KMS. Appended with a default.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

impl ObjectRecord {
    /// The version id S3 shows for this record: `version`, or `null`.
    pub fn version_id(&self) -> &str {
        if self.versioned {
            &self.version
        } else {
            crate::versions::NULL_VERSION
        }
    }
}

/// A bucket's S3 versioning state (None on the bucket record: never versioned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    Enabled,
    Suspended,
}

/// A bucket, kept in the system group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_ms: i64,
    /// Chunk write consistency of this bucket's objects (None: the node default).
    #[serde(default)]
    pub write_consistency: Option<WriteConsistency>,
    /// The access key that created it (it owns the bucket); None for buckets created before
    /// keys had owners, which only root keys and grants reach.
    #[serde(default)]
    pub owner: Option<String>,
    /// S3 versioning (None: never enabled). Kept on the record so a PUT learns it from the
    /// bucket lookup it already makes.
    #[serde(default)]
    pub versioning: Option<Versioning>,
    /// S3 object lock (None: not enabled; once enabled never removed). Appended with a
    /// default; on the record so a PUT learns the default retention from its bucket lookup.
    #[serde(default)]
    pub object_lock: Option<crate::lock::BucketLock>,
}

/// How many replicas of a chunk must be durable before a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteConsistency {
    One,
    Quorum,
    All,
}

impl WriteConsistency {
    /// Parses `ONE`, `QUORUM` or `ALL` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ONE" => Some(Self::One),
            "QUORUM" => Some(Self::Quorum),
            "ALL" => Some(Self::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "ONE",
            Self::Quorum => "QUORUM",
            Self::All => "ALL",
        }
    }

    /// Acknowledgements needed out of `n` replicas.
    pub fn required(self, n: usize) -> usize {
        match self {
            Self::One => 1.min(n),
            Self::Quorum => n / 2 + 1,
            Self::All => n,
        }
    }
}

/// An open multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub headers: ObjectHeaders,
    pub checksum_algo: Option<ChecksumAlgo>,
    /// How the object's checksum is derived from the parts' (None: no checksum, or an upload
    /// created before checksum types, which reads as composite). Appended with a default.
    #[serde(default)]
    pub checksum_kind: Option<ChecksumKind>,
    /// Object lock headers of CreateMultipartUpload, applied to the object at completion
    /// (with the bucket's default retention for what they leave out). Appended with a default.
    #[serde(default)]
    pub lock: Option<crate::lock::VersionLock>,
    /// The upload's encryption: its one data key (wrapped) that every part's key derives
    /// from. None: parts are stored in plaintext. Appended with a default.
    #[serde(default)]
    pub encryption: Option<ObjectEncryption>,
}

/// The two multipart checksum types of S3 (`x-amz-checksum-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumKind {
    /// The checksum of the concatenated part checksums, written `<base64>-<parts>`.
    Composite,
    /// The checksum of the whole object (CRC algorithms only), combined from the parts'.
    FullObject,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    /// Unique per upload of this part; names it in chunk reference sets.
    pub version: String,
    pub size: u64,
    /// Hex MD5 of the part (no quotes).
    pub etag: String,
    pub last_modified_ms: i64,
    pub checksum: Option<(ChecksumAlgo, String)>,
    pub data: ObjectData,
    /// For a part of an encrypted upload: the random salt its key derives from (a new one
    /// for every upload of the part, so a replaced part never reuses a key). Empty for a
    /// plaintext part. Appended with a default.
    #[serde(default)]
    pub sse_salt: Vec<u8>,
}

/// Serialises `Vec<u8>` as a msgpack binary rather than an array of integers.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Lifecycle of a node in the cluster catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Joining,
    Active,
    Draining,
    Removed,
}

/// A registered node (system group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub raft_id: u64,
    pub rpc_addr: String,
    pub api_addr: String,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_capacity_bytes: u64,
    pub disk_free_bytes: u64,
    pub state: NodeState,
    pub registered_ms: i64,
    /// Health as last judged by the system leader's failure detector.
    #[serde(default)]
    pub health: NodeHealth,
    /// When the node's last heartbeat was recorded (unix ms; 0: never).
    #[serde(default)]
    pub last_heartbeat_ms: i64,
    /// When `health` last changed (unix ms, the system leader's clock; 0: not recorded).
    /// The layout controller re-homes a node down for longer than `REPAIR_GRACE_SECS`.
    #[serde(default)]
    pub health_changed_ms: i64,
    /// Operator maintenance flag: while set, the node is never re-homed for being down.
    #[serde(default)]
    pub maintenance: bool,
}

/// Cluster-wide settings, fixed or versioned in the system group (seed 001: the cluster
/// configuration). Recorded by the bootstrap node from its own settings (version 1), then
/// changed through the management API (`crate::config_doc` names, validates and diffs them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub version: u64,
    /// Fixed at creation: every node must run with the same `PARTITIONS`.
    pub partitions: u32,
    pub replication: usize,
    pub desired_voters: usize,
    /// Placement policy as label selectors (cairn-layout syntax): replicas only on nodes
    /// matching all of `require`, preferably on nodes matching any of `prefer`, on nodes
    /// matching any of `avoid` only when nothing else fits.
    pub placement_require: Vec<String>,
    pub placement_prefer: Vec<String>,
    pub placement_avoid: Vec<String>,
    pub changed_ms: i64,
    /// Default chunk write consistency of every node (None: each node's
    /// `DEFAULT_WRITE_CONSISTENCY`). Applied live.
    #[serde(default)]
    pub write_consistency: Option<WriteConsistency>,
    /// GC grace and pass interval in seconds (None: each node's `GC_GRACE_SECS` /
    /// `GC_INTERVAL_SECS`). Applied at a node's next start.
    #[serde(default)]
    pub gc_grace_secs: Option<u64>,
    #[serde(default)]
    pub gc_interval_secs: Option<u64>,
    /// Age at which multipart uploads are aborted (None: `MULTIPART_EXPIRY_SECS`).
    #[serde(default)]
    pub upload_expiry_secs: Option<u64>,
    /// S3 rate limits (None: each node's `S3_MAX_CONNECTIONS` / `S3_MAX_INFLIGHT`). Applied
    /// live.
    #[serde(default)]
    pub s3_max_connections: Option<u32>,
    #[serde(default)]
    pub s3_max_inflight: Option<u32>,
    /// Chunk-sync (anti-entropy) and scrub rates in MB/s (None: each node's
    /// `REPAIR_RATE_MBPS` / `SCRUB_RATE_MBPS`). Applied live.
    #[serde(default)]
    pub repair_rate_mbps: Option<u64>,
    #[serde(default)]
    pub scrub_rate_mbps: Option<u64>,
    /// Replica moves in flight cluster-wide (None: `rebalance::DEFAULT_MAX_MOVES`). Applied
    /// by the partition leaders as they claim moves.
    #[serde(default)]
    pub rebalance_max_moves: Option<u32>,
    /// Object versions the lifecycle worker examines per second on each node (None: each
    /// node's `LIFECYCLE_RATE`; 0: unlimited). Applied live.
    #[serde(default)]
    pub lifecycle_rate: Option<u64>,
}

impl ClusterConfig {
    /// One line for the audit log and status.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "partitions={} replication={} voters={}",
            self.partitions, self.replication, self.desired_voters
        );
        for (name, v) in [
            ("require", &self.placement_require),
            ("prefer", &self.placement_prefer),
            ("avoid", &self.placement_avoid),
        ] {
            if !v.is_empty() {
                out.push_str(&format!(" {name}=[{}]", v.join("; ")));
            }
        }
        out
    }
}

/// An S3 access key valid cluster-wide (system group).
///
/// Records written before grants existed carry only the first four fields (positional
/// msgpack); they were all nodes' root keys with a plaintext secret, so they load as active
/// root keys whose `secret_key` is plaintext. New records keep `secret_key` empty and hold the
/// secret sealed under the cluster master key (`crate::secrets`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key: String,
    /// Plaintext secret of a record written by an older release; empty for sealed records.
    pub secret_key: String,
    /// Who added it (e.g. "root key of node n1") or the name given at creation.
    pub description: String,
    pub created_ms: i64,
    /// The secret, sealed with the master key (None only for legacy plaintext records and for
    /// deleted keys).
    #[serde(default)]
    pub sealed: Option<SealedSecret>,
    /// Keyed hash of the secret under the master key: lets the state machine compare secrets
    /// without seeing them (hex; empty for legacy records).
    #[serde(default)]
    pub fingerprint: String,
    /// Root keys may do everything. Legacy records were all root keys.
    #[serde(default = "legacy_root")]
    pub root: bool,
    /// Nodes whose configuration (ACCESS_KEY/SECRET_KEY or credentials.toml) names this key
    /// as their root key. A root key no node configures any more is revoked.
    #[serde(default)]
    pub root_nodes: Vec<String>,
    #[serde(default)]
    pub status: KeyStatus,
    /// May create buckets, and then owns them.
    #[serde(default)]
    pub allow_create_bucket: bool,
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Fingerprints of secrets this key had before a rotation: never accepted again.
    #[serde(default)]
    pub revoked_fingerprints: Vec<String>,
}

fn legacy_root() -> bool {
    true
}

/// A key's lifecycle. `Deleted` is a tombstone (no secret, no grants) so the id and its old
/// secrets can never come back, e.g. from a node still configured with a revoked root key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    #[default]
    Active,
    Disabled,
    Deleted,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
        }
    }
}

/// What a grant allows on a bucket; each level includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// List, head and get objects; head the bucket.
    Read,
    /// Read, plus put, copy into, delete objects and multipart uploads.
    Write,
    /// Write, plus delete the bucket and change its settings.
    Owner,
}

impl Permission {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Owner => "owner",
        }
    }
}

/// A permission on one bucket (`backups`) or on every bucket whose name starts with a prefix
/// (`logs-*`; a lone `*` is every bucket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub bucket: String,
    pub permission: Permission,
}

/// A secret sealed with ChaCha20-Poly1305 under the master key; the access key id is the
/// associated data, so a sealed secret cannot be moved to another key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    #[serde(with = "serde_bytes_compat")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    pub ciphertext: Vec<u8>,
}

/// Scope of an operator token on the management API; each includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TokenScope {
    /// Read-only: status, audit log, metrics.
    Read,
    /// Read, plus operational changes (drain, rebalance, ...).
    Operator,
    /// Everything, including access keys and tokens.
    Admin,
}

impl TokenScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Some(Self::Read),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// An operator token (system group). Only its BLAKE3 hash is stored, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name, shown in the audit log for every use.
    pub name: String,
    /// Hex BLAKE3 hash of the token.
    pub hash: String,
    pub scope: TokenScope,
    /// Who created it: a token name or `root key AK...`.
    pub creator: String,
    pub created_ms: i64,
    /// Unix ms after which it is refused (None: never expires).
    pub expires_ms: Option<i64>,
    #[serde(default)]
    pub revoked_ms: Option<i64>,
}

/// A node's health in the catalog: up → suspect → down (seed 002), back to up when it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeHealth {
    #[default]
    Up,
    Suspect,
    Down,
}

impl NodeHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }
}

/// A layout version: partition -> ordered replica node ids (system group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    pub version: u64,
    pub replication: usize,
    pub assignments: Vec<Vec<String>>,
    pub created_ms: i64,
}
