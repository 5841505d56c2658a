//! `cairn`: one binary for the server, the benchmark and the CLI.

mod admin;
mod admin_auth;
mod admin_cluster;
mod admin_config;
mod admin_heal;
mod admin_keys;
mod admin_kms;
mod admin_rebalance;
mod admin_workers;
mod cli;
mod cli_cluster;
mod cli_config;
mod cli_kms;
mod cli_node;
mod cli_rebalance;
mod config_live;
mod datadir;
mod files;
mod https;
mod identity;
mod logs;
mod master;
mod metrics_text;
mod node_admin;
mod node_metrics;
mod openapi;
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
    /// One node's management plane: status, log-level, shutdown; `exec` on every node a label
    /// selector matches.
    #[command(subcommand)]
    Node(cli_node::NodeCommand),
    /// A node's recent log lines, or (--follow) its live log.
    Logs(cli_node::LogsArgs),
    /// Operator tokens for the management API: create, ls, revoke.
    #[command(subcommand)]
    Token(cli::TokenCommand),
    /// S3 access keys and their grants: create, ls, disable, enable, rm, rotate, grant, ungrant.
    #[command(subcommand)]
    Key(cli::KeyCommand),
    /// The replicated cluster configuration: get, set, unset, history, rollback.
    #[command(subcommand)]
    Config(cli_config::ConfigCommand),
    /// The audit log of cluster changes (who, when, what).
    Audit(cli_config::AuditArgs),
    /// Replica moves after a join or a layout change: status (--follow), pause, resume, cancel.
    #[command(subcommand)]
    Rebalance(cli_rebalance::RebalanceCommand),
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
    /// The SSE-KMS key store: create-key, list, disable, enable.
    #[command(subcommand)]
    Kms(cli_kms::KmsCommand),
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
        Command::Node(cmd) => user_facing(runtime.block_on(cli_node::node(cmd))),
        Command::Logs(a) => user_facing(runtime.block_on(cli_node::logs(a))),
        Command::Token(cmd) => user_facing(runtime.block_on(cli::token(cmd))),
        Command::Key(cmd) => user_facing(runtime.block_on(cli::key(cmd))),
        Command::Config(cmd) => user_facing(runtime.block_on(cli_config::config(cmd))),
        Command::Rebalance(cmd) => user_facing(runtime.block_on(cli_rebalance::run(cmd))),
        Command::Audit(a) => user_facing(runtime.block_on(cli_config::audit(a))),
        Command::Bucket(cmd) => user_facing(runtime.block_on(cli_cluster::bucket(cmd))),
        Command::Mb(a) => user_facing(runtime.block_on(files::mb(a))),
        Command::Rb(a) => user_facing(runtime.block_on(files::rb(a))),
        Command::Cp(a) => user_facing(runtime.block_on(files::cp(a))),
        Command::Ls(a) => user_facing(runtime.block_on(files::ls(a))),
        Command::Rm(a) => user_facing(runtime.block_on(files::rm(a))),
        Command::Kms(cmd) => user_facing(runtime.block_on(cli_kms::kms(cmd))),
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
