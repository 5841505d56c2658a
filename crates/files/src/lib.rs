//! `FileService`: files for native clients over gRPC (seed 000's data plane), and the typed
//! client `cairn mb|cp|ls|rm` use.
//!
//! A file is an ordinary object: the server is a thin adapter over [`cairn_object::ObjectService`]
//! (`client → FileService → ObjectService → chunk writer / partition router`), so a file uploaded
//! here is readable over S3 and vice versa. Bodies stream in both directions with bounded
//! memory. Every call is signed with the node's S3 credentials ([`auth`]); the secret never
//! crosses the wire.

pub mod auth;
pub mod client;
mod error;
mod metrics;
pub mod names;
mod server;

pub use auth::Credentials;
pub use cairn_rpc::pb::{
    BucketInfo, DownloadRequest, FileInfo, ListFilesReply, ListFilesRequest, UploadHeader,
};
pub use client::{ClientError, Download, FileClient, UploadOptions};
pub use metrics::FileMetrics;
pub use server::FileServer;

/// Largest data payload per streamed message, both directions.
pub const PIECE_SIZE: usize = 1 << 20;
/// Most files + common prefixes per List page.
pub const MAX_LIST_KEYS: u32 = 1000;
