//! The data directory is private to the node's user: directory 0700, files 0600.
//!
//! The server sets the process umask to 0o077 before it creates anything, so every file and
//! directory it creates afterwards (meta.redb, chunks, tmp, quarantine, identity and key files)
//! is private whatever the caller's umask. A data directory made by an older release keeps its
//! files' modes, but the directory itself is narrowed to 0700, which closes every path into it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Sets the umask, creates `data` if missing and makes it 0700.
pub fn make_private(data: &Path) -> anyhow::Result<()> {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail and touches no
    // memory. Called at start, before the server creates files or starts threads that do.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating STORAGE_PATH {}", data.display()))?;
    let mode = std::fs::metadata(data)
        .with_context(|| format!("reading STORAGE_PATH {}", data.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making STORAGE_PATH {} private (0700)", data.display()))?;
        tracing::info!(data = %data.display(), "data directory made private (0700)");
    }
    Ok(())
}
