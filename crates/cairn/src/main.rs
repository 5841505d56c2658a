//! `cairn`: one binary for the server, the benchmark and (later) the CLI.

mod admin;
mod cli;
mod identity;
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
        Command::Cluster(cmd) => runtime.block_on(cli::run(cmd)),
    }
}
