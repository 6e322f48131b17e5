//! Where the token signing keys come from.
//!
//! In order of preference: a key file (`--jwt-secret-file`: one key per
//! line, the first signs, every one verifies), a single key (`--jwt-secret`
//! or `CHAT_JWT_SECRET`), or, for the embedded SQLite database only, a key
//! the server generates once into `jwt-secret` beside the database file,
//! readable by its own user alone. A key never lives in the database: a
//! copy of the database (a backup, a support dump) must not let anyone mint
//! tokens. Servers of earlier versions kept their generated key in the
//! `settings` table; it is moved to the file (so its tokens stay valid) and
//! deleted from the database.
//!
//! A PostgreSQL database is shared by a cluster, whose nodes must share
//! their keys: they are given one, or the node refuses to start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::{Config, Secret};
use crate::store::{self, Store};

use super::token;

/// The `settings` key under which earlier versions kept their generated key.
const LEGACY_SETTING: &str = "jwt_secret";
/// The generated key's file name, beside the SQLite database.
const GENERATED_FILE: &str = "jwt-secret";

/// The signing keys, the signing one first.
///
/// # Errors
/// When the key file cannot be read or holds a key under 16 bytes, when a
/// PostgreSQL server has no key, or when the generated key cannot be
/// written.
pub async fn load(config: &Config, store: &dyn Store) -> anyhow::Result<Vec<Secret>> {
    if let Some(path) = &config.jwt_secret_file {
        let keys = read_key_file(path)?;
        forget_legacy(store).await?;
        return Ok(keys);
    }
    if let Some(secret) = &config.jwt_secret {
        let secret = secret
            .clone()
            .checked()
            .map_err(|why| anyhow::anyhow!("--jwt-secret (CHAT_JWT_SECRET): {why}"))?;
        forget_legacy(store).await?;
        return Ok(vec![secret]);
    }
    let Some(database) = store::sqlite_file(&config.database_url) else {
        bail!(
            "no token signing key: a PostgreSQL database may be shared by several nodes, \
             which must share their keys; give one with --jwt-secret-file or CHAT_JWT_SECRET"
        );
    };
    let file = database.parent().map_or_else(
        || PathBuf::from(GENERATED_FILE),
        |dir| dir.join(GENERATED_FILE),
    );
    if file.exists() {
        let keys = read_key_file(&file)?;
        forget_legacy(store).await?;
        return Ok(keys);
    }
    let legacy = store
        .setting_or_init(LEGACY_SETTING, "")
        .await
        .context("reading an earlier version's signing key")?;
    let key = if legacy.is_empty() {
        token::new_secret()
    } else {
        legacy
    };
    write_private(&file, &key)?;
    forget_legacy(store).await?;
    tracing::info!(file = %file.display(), "the token signing key is kept in a file of its own");
    Ok(vec![key.parse().map_err(anyhow::Error::msg)?])
}

/// Removes the key an earlier version kept in the database.
async fn forget_legacy(store: &dyn Store) -> anyhow::Result<()> {
    let removed = store
        .remove_setting(LEGACY_SETTING)
        .await
        .context("removing the signing key from the database")?;
    if removed.is_some_and(|value| !value.is_empty()) {
        tracing::warn!(
            "removed the token signing key that an earlier version kept in the database; \
             rotate keys if copies of the database may have leaked"
        );
    }
    Ok(())
}

/// Reads a key file: one key per line, blank lines and `#` comments
/// skipped.
fn read_key_file(path: &Path) -> anyhow::Result<Vec<Secret>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing keys from {}", path.display()))?;
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .enumerate()
        .map(|(index, line)| {
            line.parse::<Secret>()
                .map_err(|why| anyhow::anyhow!("{}, key {}: {why}", path.display(), index + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if keys.is_empty() {
        bail!("{} holds no signing key", path.display());
    }
    Ok(keys)
}

/// Writes a new file that only this user may read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{contents}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_keeps_its_order_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# new\nnew-key-0123456789\n\nold-key-0123456789\n").unwrap();
        let keys = read_key_file(&path).unwrap();
        let keys: Vec<&str> = keys.iter().map(Secret::expose).collect();
        assert_eq!(keys, ["new-key-0123456789", "old-key-0123456789"]);

        std::fs::write(&path, "short\n").unwrap();
        let error = read_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("key 1"), "{error}");
        std::fs::write(&path, "\n# nothing\n").unwrap();
        assert!(read_key_file(&path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_generated_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATED_FILE);
        write_private(&path, "abc").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_private(&path, "again").is_err(), "never overwritten");
    }
}
