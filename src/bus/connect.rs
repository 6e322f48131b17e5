//! How a node authenticates to NATS itself: a user and password, a token,
//! an NKey, a credentials file, and TLS, from the configuration. (What the
//! nodes say to each other is authenticated apart from this, by
//! `bus::seal`: NATS credentials decide who may publish on the cluster's
//! subjects, the cluster secret decides what a node believes.)

use anyhow::Context as _;
use async_nats::ConnectOptions;

use crate::config::Config;

/// The options a node connects to NATS with, besides its own behaviour.
///
/// # Errors
/// When a file cannot be read, or more than one way to authenticate is
/// given.
pub async fn options(config: &Config) -> anyhow::Result<ConnectOptions> {
    let given: Vec<&str> = [
        ("--nats-user", config.nats_user.is_some()),
        (
            "--nats-token-file / CHAT_NATS_TOKEN",
            config.nats_token_file.is_some() || config.nats_token.is_some(),
        ),
        ("--nats-nkey-file", config.nats_nkey_file.is_some()),
        ("--nats-creds-file", config.nats_creds_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    anyhow::ensure!(
        given.len() <= 1,
        "NATS takes one way to authenticate, not {}",
        given.join(" and ")
    );

    let mut options = ConnectOptions::new();
    if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &config.nats_token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(path) = &config.nats_token_file {
        options = options.token(read_secret(path, "NATS token")?);
    }
    if let Some(path) = &config.nats_nkey_file {
        let seed = read_secret(path, "NATS NKey seed")?;
        // async-nats would only fail later, signing the server's nonce,
        // with an error that does not say the seed is at fault.
        anyhow::ensure!(
            nkeys::KeyPair::from_seed(&seed).is_ok(),
            "{} does not hold a valid NKey seed (it starts with S and is 58 characters)",
            path.display()
        );
        options = options.nkey(seed);
    }
    if let Some(path) = &config.nats_creds_file {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("reading the NATS credentials file {}", path.display()))?;
    }
    let mut tls = false;
    if let Some(ca) = &config.nats_tls_ca {
        options = options.add_root_certificates(ca.clone());
        tls = true;
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
        tls = true;
    }
    Ok(options.require_tls(tls))
}

/// The first line of a file holding one secret.
fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} from {}", path.display()))?;
    let secret = text.trim().to_owned();
    anyhow::ensure!(!secret.is_empty(), "{} holds no {what}", path.display());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[tokio::test]
    async fn a_file_that_holds_no_nkey_seed_is_named_as_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        std::fs::write(&path, "not a seed at all\n").unwrap();
        let mut config = Config::defaults();
        config.nats_nkey_file = Some(path.clone());

        let Err(error) = options(&config).await else {
            panic!("a file without a seed was taken");
        };
        let error = error.to_string();

        assert!(error.contains("does not hold a valid NKey seed"), "{error}");
        assert!(!error.contains("not a seed at all"), "{error}");
    }
    use crate::config::Hidden;

    #[tokio::test]
    async fn one_way_to_authenticate_at_most() {
        let mut config = Config::defaults();
        config.nats_user = Some("chat".into());
        config.nats_password = Some(Hidden::new("password"));
        config.nats_nkey_file = Some(PathBuf::from("/nonexistent/seed"));

        let error = options(&config).await.unwrap_err();

        assert_eq!(
            error.to_string(),
            "NATS takes one way to authenticate, not --nats-user and --nats-nkey-file"
        );
    }

    #[tokio::test]
    async fn an_empty_token_file_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut config = Config::defaults();
        config.nats_token_file = Some(file.path().to_owned());

        let error = options(&config).await.unwrap_err();

        assert_eq!(
            error.to_string(),
            format!("{} holds no NATS token", file.path().display())
        );
    }
}
