//! Generated gRPC types and service stubs for `proto/cairn.proto` (package `cairn.v1`).

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cairn.v1");
}
