//! `cairn rebalance status|pause|resume|cancel`: the rebalance plan through the management API
//! (`GET /admin/rebalances`, `POST /admin/rebalances/{pause,resume,cancel}`). A table for
//! people, `--json` for scripts, `--follow` for a progress bar until the plan is done.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use cairn_cluster::rebalance::PlanStatus;

use crate::admin_cluster::RebalancesResponse;
use crate::cli::{request, AdminArgs};
use crate::cli_cluster::human_bytes;

/// How often `--follow` asks for the status.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(clap::Subcommand)]
pub enum RebalanceCommand {
    /// The plan: moves planned / moving / done / cancelled, bytes moved of the estimated
    /// total, rate, ETA, and every partition's move.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
        /// Show a progress bar and follow the plan until it is done (Ctrl-C to stop).
        #[arg(long, visible_alias = "watch")]
        follow: bool,
    },
    /// No new replica move starts; moves in flight finish (operator token).
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Planned moves start again (operator token).
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Drops the moves not started yet: their partitions stay where they are until the set of
    /// nodes changes again; moves in flight finish (operator token).
    Cancel {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: RebalanceCommand) -> anyhow::Result<()> {
    let (admin, json, action) = match cmd {
        RebalanceCommand::Status {
            admin,
            json,
            follow,
        } => {
            return match follow {
                true => follow_status(&admin).await,
                false => status(&admin, json).await,
            }
        }
        RebalanceCommand::Pause { admin, json } => (admin, json, "pause"),
        RebalanceCommand::Resume { admin, json } => (admin, json, "resume"),
        RebalanceCommand::Cancel { admin, json } => (admin, json, "cancel"),
    };
    let body = request(&admin, "POST", &format!("/admin/rebalances/{action}"), None).await?;
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let plan: PlanStatus = serde_json::from_slice(&body).context("decoding the plan status")?;
    print!("{}", render(&plan));
    Ok(())
}

async fn fetch(admin: &AdminArgs) -> anyhow::Result<(Vec<u8>, RebalancesResponse)> {
    let body = request(admin, "GET", "/admin/rebalances", None).await?;
    let r = serde_json::from_slice(&body).context("decoding the rebalance status")?;
    Ok((body.to_vec(), r))
}

async fn status(admin: &AdminArgs, json: bool) -> anyhow::Result<()> {
    let (body, r) = fetch(admin).await?;
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    print!("{}", render(&r.plan));
    Ok(())
}

/// `--follow`: a bar of bytes moved over the estimated total, with the move counts as its
/// message, until no move is planned or in flight. Without a terminal, one summary line per change.
async fn follow_status(admin: &AdminArgs) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(0),
        if tty {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let mut last = String::new();
    loop {
        let (_, r) = fetch(admin).await?;
        let p = &r.plan;
        bar.set_length(p.bytes_total.max(p.bytes_moved));
        bar.set_position(p.bytes_moved);
        let line = summary(p);
        bar.set_message(line.clone());
        if !tty && line != last {
            println!("{line}");
        }
        last = line;
        if p.planned == 0 && p.moving == 0 {
            bar.finish();
            print!("{}", render(p));
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// One line: state and counts.
pub fn summary(p: &PlanStatus) -> String {
    format!(
        "{} (layout v{}): {} planned, {} moving (max {}), {} done, {} cancelled",
        p.state, p.layout_version, p.planned, p.moving, p.max_moves, p.done, p.cancelled
    )
}

fn eta(p: &PlanStatus) -> String {
    match p.eta_secs {
        Some(s) if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        Some(s) if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        Some(s) => format!("{s}s"),
        None => "unknown".into(),
    }
}

/// The plan for people: a summary, bytes and ETA, then one line per partition.
pub fn render(p: &PlanStatus) -> String {
    let mut out = format!(
        "rebalance {}\nbytes: {} of ~{} moved, {}/s, eta {}\n",
        summary(p),
        human_bytes(p.bytes_moved),
        human_bytes(p.bytes_total),
        human_bytes(p.rate_bytes_per_sec),
        eta(p)
    );
    if p.partitions.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:>9} {:<10} {:<24} {:<24} {:<12} {:>10}\n",
        "PARTITION", "STATE", "FROM", "TO", "BY", "BYTES"
    ));
    for m in &p.partitions {
        out.push_str(&format!(
            "{:>9} {:<10} {:<24} {:<24} {:<12} {:>10}\n",
            m.partition,
            m.state.as_str(),
            m.from.join(","),
            m.to.join(","),
            m.node.as_deref().unwrap_or("-"),
            human_bytes(m.bytes)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_meta::rebalance::{MoveState, PlannedMove};

    #[test]
    fn the_table_shows_counts_bytes_eta_and_each_partition() {
        let p = PlanStatus {
            layout_version: 4,
            state: "running".into(),
            max_moves: 2,
            planned: 1,
            moving: 1,
            done: 2,
            bytes_moved: 3 << 20,
            bytes_total: 6 << 20,
            rate_bytes_per_sec: 1 << 20,
            eta_secs: Some(125),
            partitions: vec![PlannedMove {
                partition: 7,
                from: vec!["n1".into(), "n2".into()],
                to: vec!["n1".into(), "n4".into()],
                state: MoveState::Moving,
                node: Some("n1".into()),
                started_ms: 1,
                done_ms: 0,
                bytes: 0,
            }],
            ..Default::default()
        };
        let t = render(&p);
        assert!(t.contains("running (layout v4): 1 planned, 1 moving (max 2), 2 done"));
        assert!(t.contains("3.0 MiB of ~6.0 MiB moved, 1.0 MiB/s, eta 2m05s"));
        assert!(t.lines().any(|l| l.contains("moving")
            && l.contains("n1,n2")
            && l.contains("n1,n4")
            && l.trim_start().starts_with('7')));
    }
}
