//! A node's persistent identity in its data directory: its name and the root S3 credentials.
//! Both are generated once at first start when not configured, so restarts keep them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

const NODE_ID_FILE: &str = "node_id";
const CREDENTIALS_FILE: &str = "credentials.toml";

/// Returns the configured node id, or the persisted one, or a new persisted one.
pub fn node_id(dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    let path = dir.join(NODE_ID_FILE);
    if let Some(id) = configured {
        if !path.exists() {
            write_private(&path, id.as_bytes())?;
        }
        return Ok(id.to_string());
    }
    if path.exists() {
        let id = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let id = id.trim().to_string();
        anyhow::ensure!(
            !id.is_empty(),
            "{} is empty; set NODE_ID or delete the file",
            path.display()
        );
        return Ok(id);
    }
    let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    write_private(&path, id.as_bytes())?;
    Ok(id)
}

/// The Raft id of a node: a stable 64-bit hash of its name.
pub fn raft_id(node_id: &str) -> u64 {
    let h = blake3::hash(node_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

#[derive(Serialize, Deserialize)]
struct Credentials {
    access_key: String,
    secret_key: String,
}

/// Root credentials: configured ones win; otherwise the persisted pair; otherwise a new pair,
/// persisted and returned with `true` so the caller prints it once.
pub fn credentials(
    dir: &Path,
    access: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<(String, String, bool)> {
    if let (Some(a), Some(s)) = (access, secret) {
        return Ok((a.to_string(), s.to_string(), false));
    }
    if let Some((a, s)) = stored_credentials(dir)? {
        return Ok((a, s, false));
    }
    let path = dir.join(CREDENTIALS_FILE);
    let hex = |n: usize| {
        let mut s = String::new();
        while s.len() < n {
            s.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        s.truncate(n);
        s
    };
    let c = Credentials {
        access_key: format!("CA{}", hex(18).to_uppercase()),
        secret_key: hex(40),
    };
    write_private(&path, toml::to_string(&c)?.as_bytes())?;
    Ok((c.access_key, c.secret_key, true))
}

/// The root credentials persisted in a node's data directory, if there are any (the CLI
/// reads them when run beside the node).
pub fn stored_credentials(dir: &Path) -> anyhow::Result<Option<(String, String)>> {
    let path = dir.join(CREDENTIALS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let c: Credentials =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some((c.access_key, c.secret_key)))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_persisted() {
        let dir = tempfile_dir();
        let a = node_id(&dir, None).unwrap();
        assert_eq!(node_id(&dir, None).unwrap(), a);
        let (k, s, fresh) = credentials(&dir, None, None).unwrap();
        assert!(fresh);
        let (k2, s2, fresh2) = credentials(&dir, None, None).unwrap();
        assert_eq!((k, s, false), (k2, s2, fresh2));
        let (k3, _, _) = credentials(&dir, Some("configured"), Some("secret123")).unwrap();
        assert_eq!(k3, "configured");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cairn-id-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
