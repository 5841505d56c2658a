//! `cairn kms ...`: the SSE-KMS key store through the management API (`admin_kms.rs`).

use anyhow::Context;

use crate::admin_kms::KmsKeyView;
use crate::cli::{ms_date, request, AdminArgs};

/// Keys of the built-in SSE-KMS key store.
#[derive(clap::Subcommand)]
pub enum KmsCommand {
    /// Create a named 256-bit key (its material never leaves the cluster).
    CreateKey {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List keys (never their material).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Disable a key: objects under it can be neither written nor read until `enable`.
    Disable {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Enable {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// A key name as one path segment (`aws/s3` → `aws%2Fs3`; names hold no other reserved
/// characters).
fn segment(name: &str) -> String {
    name.replace('/', "%2F")
}

fn print_key(out: &[u8]) -> anyhow::Result<()> {
    let k: KmsKeyView = serde_json::from_slice(out).context("decoding the answer")?;
    println!("{} {}", k.name, k.status);
    Ok(())
}

pub async fn kms(cmd: KmsCommand) -> anyhow::Result<()> {
    match cmd {
        KmsCommand::CreateKey {
            name,
            description,
            admin,
        } => {
            let body = serde_json::json!({"name": name, "description": description});
            print_key(&request(&admin, "POST", "/kms/keys", Some(body)).await?)?;
        }
        KmsCommand::List { json, admin } => {
            let out = request(&admin, "GET", "/kms/keys", None).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&out));
                return Ok(());
            }
            let list: Vec<KmsKeyView> =
                serde_json::from_slice(&out).context("decoding the answer")?;
            println!(
                "{:<32} {:<9} {:<26} DESCRIPTION",
                "NAME", "STATUS", "CREATED"
            );
            for k in list {
                println!(
                    "{:<32} {:<9} {:<26} {}",
                    k.name,
                    k.status,
                    ms_date(Some(k.created_ms)),
                    k.description
                );
            }
        }
        KmsCommand::Disable { name, admin } => {
            let path = format!("/kms/keys/{}/disable", segment(&name));
            print_key(&request(&admin, "POST", &path, None).await?)?;
        }
        KmsCommand::Enable { name, admin } => {
            let path = format!("/kms/keys/{}/enable", segment(&name));
            print_key(&request(&admin, "POST", &path, None).await?)?;
        }
    }
    Ok(())
}
