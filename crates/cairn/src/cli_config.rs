//! `cairn config get|set|unset|history|rollback` and `cairn audit`: thin clients of
//! `/cluster/config*` and `/cluster/audit` (any node answers).

use anyhow::Context;

use crate::admin_config::{ChangeAnswer, ConfigView, DiffView, HistoryEntry};
use crate::cli::{ms_date, parse_ttl, request, AdminArgs};

/// The replicated cluster configuration.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Show every setting (or one), how it applies, and the version each node applied.
    Get {
        /// One setting, e.g. replication.write_consistency (prints only its value).
        key: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a setting cluster-wide, e.g. `replication.write_consistency ALL`; says which nodes
    /// applied it live and which settings wait for a restart.
    Set {
        key: String,
        /// A number, a word, or `;`-separated label selectors for placement.*.
        value: String,
        /// Why (recorded in the history and the audit log).
        #[arg(long, short)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Unset a setting: each node uses its own setting again.
    Unset {
        key: String,
        #[arg(long, short)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Who changed what, when and why.
    History {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Restore version N (as a new version).
    Rollback {
        version: u64,
        #[arg(long, short)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `cairn audit`: the audit log of cluster changes.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only changes from this long ago on, e.g. 90s, 30m, 1h, 7d.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

fn value_text(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "unset".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Some(other) => other.to_string(),
    }
}

fn diff_line(d: &DiffView) -> String {
    format!(
        "{}: {} -> {} ({})",
        d.key,
        value_text(&d.from),
        value_text(&d.to),
        d.apply
    )
}

/// The human report of a change.
fn render_change(a: &ChangeAnswer) -> String {
    let mut out = format!("configuration version {}\n", a.version);
    for d in &a.diff {
        out.push_str(&format!("  {}\n", diff_line(d)));
    }
    out.push_str(&format!(
        "applied on: {}\n",
        if a.applied.is_empty() {
            "-".into()
        } else {
            a.applied.join(", ")
        }
    ));
    if !a.pending.is_empty() {
        let pending: Vec<String> = a
            .nodes
            .iter()
            .filter(|n| a.pending.contains(&n.node_id))
            .map(|n| format!("{} ({})", n.node_id, n.health))
            .collect();
        out.push_str(&format!("not applied yet: {}\n", pending.join(", ")));
    }
    if !a.restart_required.is_empty() {
        out.push_str(&format!(
            "takes effect at each node's next restart: {}\n",
            a.restart_required.join(", ")
        ));
    }
    out
}

fn render_config(c: &ConfigView) -> String {
    let mut out = format!(
        "configuration version {} (changed {})\n\n{:<28} {:<8} VALUE\n",
        c.version,
        ms_date(Some(c.changed_ms)),
        "SETTING",
        "APPLIES"
    );
    for s in &c.settings {
        out.push_str(&format!(
            "{:<28} {:<8} {}\n",
            s.key,
            s.apply,
            value_text(&s.value)
        ));
    }
    out.push_str(&format!(
        "\n{:<16} {:<8} {:<8} RESTART REQUIRED FOR\n",
        "NODE", "HEALTH", "APPLIED"
    ));
    for n in &c.nodes {
        out.push_str(&format!(
            "{:<16} {:<8} {:<8} {}\n",
            n.node_id,
            n.health,
            n.applied_version.map_or("-".into(), |v| format!("v{v}")),
            if n.restart_required.is_empty() {
                "-".into()
            } else {
                n.restart_required.join(", ")
            }
        ));
    }
    out
}

fn render_history(h: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in h {
        out.push_str(&format!(
            "v{:<4} {}  {}{}\n",
            e.version,
            ms_date(Some(e.at_ms)),
            e.actor.as_deref().unwrap_or("(cluster)"),
            match (&e.message, e.rollback_of) {
                (m, _) if !m.is_empty() => format!(": {m}"),
                (_, Some(n)) => format!(": rollback to v{n}"),
                _ => String::new(),
            }
        ));
        for d in &e.diff {
            out.push_str(&format!("       {}\n", diff_line(d)));
        }
    }
    out
}

async fn change(
    admin: &AdminArgs,
    key: &str,
    value: serde_json::Value,
    message: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut settings = serde_json::Map::new();
    settings.insert(key.to_string(), value);
    let body = serde_json::json!({
        "settings": settings,
        "message": message.unwrap_or_default(),
    });
    let out = request(admin, "PATCH", "/cluster/config", Some(body)).await?;
    print_change(&out, json)
}

fn print_change(out: &[u8], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", String::from_utf8_lossy(out));
        return Ok(());
    }
    let a: ChangeAnswer = serde_json::from_slice(out).context("decoding the answer")?;
    print!("{}", render_change(&a));
    Ok(())
}

pub async fn config(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Get { key, json, admin } => {
            let out = request(&admin, "GET", "/cluster/config", None).await?;
            let c: ConfigView = serde_json::from_slice(&out).context("decoding the answer")?;
            match key {
                Some(k) => {
                    let s = c.settings.iter().find(|s| s.key == k).with_context(|| {
                        let known: Vec<&str> = c.settings.iter().map(|s| s.key.as_str()).collect();
                        format!("unknown setting {k:?} (settings: {})", known.join(", "))
                    })?;
                    if json {
                        println!("{}", serde_json::to_string(&s.value)?);
                    } else {
                        println!("{}", value_text(&s.value));
                    }
                }
                None if json => println!("{}", String::from_utf8_lossy(&out)),
                None => print!("{}", render_config(&c)),
            }
        }
        ConfigCommand::Set {
            key,
            value,
            message,
            json,
            admin,
        } => change(&admin, &key, value.into(), message, json).await?,
        ConfigCommand::Unset {
            key,
            message,
            json,
            admin,
        } => change(&admin, &key, serde_json::Value::Null, message, json).await?,
        ConfigCommand::History { json, admin } => {
            let mut all: Vec<HistoryEntry> = Vec::new();
            loop {
                let after = all.last().map_or(0, |e| e.version);
                let out = request(
                    &admin,
                    "GET",
                    &format!("/cluster/config/history?after={after}&max=1000"),
                    None,
                )
                .await?;
                let page: Vec<HistoryEntry> =
                    serde_json::from_slice(&out).context("decoding the answer")?;
                let done = page.len() < 1000;
                all.extend(page);
                if done {
                    break;
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", render_history(&all));
            }
        }
        ConfigCommand::Rollback {
            version,
            message,
            json,
            admin,
        } => {
            let body = serde_json::json!({"message": message.unwrap_or_default()});
            let out = request(
                &admin,
                "POST",
                &format!("/cluster/config/rollback/{version}"),
                Some(body),
            )
            .await?;
            print_change(&out, json)?;
        }
    }
    Ok(())
}

/// The audit entries from the first one at or after `cutoff_ms` on (entries are in sequence
/// order; those that carry no time are kept when they follow one inside the window).
fn since(entries: Vec<cairn_meta::AuditEntry>, cutoff_ms: i64) -> Vec<cairn_meta::AuditEntry> {
    match entries.iter().position(|e| e.at_ms >= cutoff_ms) {
        Some(i) => entries.into_iter().skip(i).collect(),
        None => Vec::new(),
    }
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    const PAGE: usize = 1000;
    let cutoff = match &args.since {
        Some(s) => {
            let secs = parse_ttl(s).map_err(|_| {
                anyhow::anyhow!("--since {s:?}: use a number with s, m, h or d (e.g. 1h)")
            })?;
            let secs = i64::try_from(secs).context("--since is too large")?;
            Some(crate::admin_auth::now_ms().saturating_sub(secs.saturating_mul(1000)))
        }
        None => None,
    };
    let mut all: Vec<cairn_meta::AuditEntry> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.seq);
        let out = request(
            &args.admin,
            "GET",
            &format!("/cluster/audit?after={after}&max={PAGE}"),
            None,
        )
        .await?;
        let page: Vec<cairn_meta::AuditEntry> =
            serde_json::from_slice(&out).context("decoding the audit log")?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            break;
        }
    }
    if let Some(c) = cutoff {
        all = since(all, c);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<6} {:<25} {:<24} {:<8} WHAT",
        "SEQ", "TIME", "ACTOR", "OUTCOME"
    );
    for e in &all {
        println!(
            "{:<6} {:<25} {:<24} {:<8} {}{}",
            e.seq,
            if e.at_ms > 0 {
                ms_date(Some(e.at_ms))
            } else {
                "-".into()
            },
            e.actor.as_deref().unwrap_or("(cluster)"),
            if e.outcome.is_some() {
                "refused"
            } else {
                "applied"
            },
            e.what,
            e.outcome
                .as_deref()
                .map(|o| format!(": {o}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, at_ms: i64) -> cairn_meta::AuditEntry {
        cairn_meta::AuditEntry {
            seq,
            at_ms,
            what: format!("e{seq}"),
            actor: None,
            outcome: None,
        }
    }

    #[test]
    fn since_keeps_the_window_and_untimed_entries_inside_it() {
        let all = vec![
            entry(1, 10),
            entry(2, 0),
            entry(3, 50),
            entry(4, 0),
            entry(5, 60),
        ];
        let seqs = |v: Vec<cairn_meta::AuditEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(since(all.clone(), 40)), vec![3, 4, 5]);
        assert_eq!(seqs(since(all.clone(), 0)), vec![1, 2, 3, 4, 5]);
        assert!(since(all, 100).is_empty());
    }

    #[test]
    fn values_print_plainly() {
        assert_eq!(value_text(&None), "unset");
        assert_eq!(value_text(&Some(serde_json::json!("ALL"))), "ALL");
        assert_eq!(value_text(&Some(serde_json::json!(3))), "3");
        assert_eq!(
            value_text(&Some(serde_json::json!(["a=b", "c"]))),
            "[a=b; c]"
        );
    }
}
