//! Opening the store a database URL names.

use std::sync::Arc;

use crate::admin::AdminStore;
use crate::error::{Error, Result};
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::store::Store;
use crate::Synchronous;

/// Opens the store a database URL names, creating and migrating it.
/// `synchronous` is SQLite's durability, `pool_size` PostgreSQL's
/// connections.
///
/// # Errors
/// `BadUrl` for an unsupported URL; database errors as they come.
pub async fn connect(
    url: &str,
    synchronous: Synchronous,
    pool_size: u32,
) -> Result<Arc<dyn Store>> {
    Ok(connect_with_admin(url, synchronous, pool_size).await?.0)
}

/// `connect`, and the operator's view (`AdminStore`) of the same store,
/// on the same connections: for the server, which follows the control
/// events, and the admin tool.
///
/// # Errors
/// As `connect`.
pub async fn connect_with_admin(
    url: &str,
    synchronous: Synchronous,
    pool_size: u32,
) -> Result<(Arc<dyn Store>, Arc<dyn AdminStore>)> {
    if url.starts_with("sqlite:") {
        let store = Arc::new(SqliteStore::connect(url, synchronous).await?);
        Ok((store.clone(), store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        // PostgreSQL's durability is the server's `synchronous_commit`.
        let store = Arc::new(PostgresStore::connect(url, pool_size).await?);
        Ok((store.clone(), store))
    } else {
        Err(Error::BadUrl(format!(
            "unsupported database URL {:?}: expected sqlite://PATH or postgres://HOST/DB",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The file of a `sqlite://` database URL; `None` for other databases
/// (and for an in-memory SQLite database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:"))
        .then(|| file.to_path_buf())
}
