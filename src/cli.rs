//! The command line: the server's flags (`config`), and the subcommands
//! beside serving (`admin`). With no subcommand, `chat-server` serves.

use clap::{Parser, Subcommand};

use crate::admin::AdminCommand;
use crate::config::Config;

/// A real-time chat server over gRPC (and grpc-web).
#[derive(Parser, Debug, Clone)]
#[command(name = "chat-server", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// The operator's tool: accounts and rooms, on the server's database,
    /// while it runs.
    ///
    /// Works on the database the server is configured with
    /// (`--database-url` or `CHAT_DATABASE_URL`, SQLite or PostgreSQL),
    /// while the server runs, and needs no NATS: every node reads the
    /// tool's changes from the database within a second
    /// (docs/operations.md, "Admin tool"). Each command prints a table, or
    /// JSON with `--json`. Exit codes: 0 done, 1 a bad argument or
    /// something that does not exist, 2 a database error (and clap's 2 for
    /// a usage error).
    Admin(AdminCommand),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_serves_with_the_flags_as_before() {
        let cli = Cli::try_parse_from(["chat-server", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.listen.port(), 1);
    }

    #[test]
    fn admin_takes_the_servers_database_flag_before_or_after_it() {
        let cli = Cli::try_parse_from([
            "chat-server",
            "--database-url",
            "sqlite://a.db",
            "admin",
            "users",
            "show",
            "alice",
            "--json",
        ])
        .unwrap();
        let Some(Command::Admin(admin)) = cli.command else {
            panic!("not admin");
        };
        assert_eq!(cli.config.database_url, "sqlite://a.db");
        assert!(admin.json);
        assert!(admin.database_url.is_none());
        let cli = Cli::try_parse_from([
            "chat-server",
            "admin",
            "rooms",
            "list",
            "--database-url",
            "sqlite://b.db",
        ])
        .unwrap();
        let Some(Command::Admin(admin)) = cli.command else {
            panic!("not admin");
        };
        assert_eq!(admin.database_url.as_deref(), Some("sqlite://b.db"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
