//! `cairn`: one binary for the server, the benchmark and the CLI.

mod admin;
mod admin_auth;
mod admin_cluster;
mod admin_keys;
mod cli;
mod cli_cluster;
mod datadir;
mod files;
mod https;
mod identity;
mod master;
mod metrics_text;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a distributed, S3-compatible object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (with no flags: a one-node cluster with its data in ./data).
    Server(cairn_config::ServerFlags),
    /// Inspect the cluster through any node's management plane.
    #[command(subcommand)]
    Cluster(cli::ClusterCommand),
    /// Operator tokens for the management API: create, ls, revoke.
    #[command(subcommand)]
    Token(cli::TokenCommand),
    /// S3 access keys and their grants: create, ls, disable, enable, rm, rotate, grant, ungrant.
    #[command(subcommand)]
    Key(cli::KeyCommand),
    /// Per-node management: `exec --selector SEL ACTION` on every matching node.
    #[command(subcommand)]
    Node(cli_cluster::NodeCommand),
    /// Buckets and their usage through the management API: ls, info, usage.
    #[command(subcommand)]
    Bucket(cli_cluster::BucketCommand),
    /// Make a bucket (over a node's RPC port, like cp/ls/rm).
    Mb(files::MbArgs),
    /// Remove an empty bucket.
    Rb(files::RbArgs),
    /// Upload a local file (or stdin) to cairn://bucket/key, or download one (to a file or stdout).
    Cp(files::CpArgs),
    /// List buckets, or the files under cairn://bucket[/prefix].
    Ls(files::LsArgs),
    /// Delete files: cairn://bucket/key ...
    Rm(files::RmArgs),
    /// Drive an S3 endpoint with concurrent PUT/GET/LIST/DELETE and print throughput and latency.
    Bench(cairn_bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(flags) => runtime.block_on(server::run(flags)),
        Command::Bench(args) => runtime.block_on(cairn_bench::run(args)),
        Command::Cluster(cmd) => user_facing(runtime.block_on(cli::run(cmd))),
        Command::Token(cmd) => user_facing(runtime.block_on(cli::token(cmd))),
        Command::Key(cmd) => user_facing(runtime.block_on(cli::key(cmd))),
        Command::Node(cmd) => user_facing(runtime.block_on(cli_cluster::node(cmd))),
        Command::Bucket(cmd) => user_facing(runtime.block_on(cli_cluster::bucket(cmd))),
        Command::Mb(a) => user_facing(runtime.block_on(files::mb(a))),
        Command::Rb(a) => user_facing(runtime.block_on(files::rb(a))),
        Command::Cp(a) => user_facing(runtime.block_on(files::cp(a))),
        Command::Ls(a) => user_facing(runtime.block_on(files::ls(a))),
        Command::Rm(a) => user_facing(runtime.block_on(files::rm(a))),
    }
}

/// A file command's failure as one line on stderr and exit code 1: these errors are about the
/// user's input or the server's answer, so a backtrace (RUST_BACKTRACE) would only bury them.
fn user_facing(r: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = r {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
