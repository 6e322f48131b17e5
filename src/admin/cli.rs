//! The `admin` subcommands as clap parses them; `--help` is their manual.

use clap::{Args, Subcommand};

/// Rows a list prints at most unless `--limit` says otherwise.
const DEFAULT_LIMIT: &str = "1000";

/// `chat-server admin`: its manual is the doc comment of `cli::Command::Admin`.
#[derive(Args, Debug, Clone)]
pub struct AdminCommand {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// The database to work on, instead of the server's `--database-url`
    /// (`CHAT_DATABASE_URL`).
    #[arg(
        long = "database-url",
        id = "admin_database_url",
        value_name = "DATABASE_URL",
        global = true
    )]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub what: Target,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Target {
    /// Accounts: list, show, disable, enable, reset a password.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Rooms: list, delete, set the owner.
    #[command(subcommand)]
    Rooms(RoomsCommand),
}

#[derive(Subcommand, Debug, Clone)]
pub enum UsersCommand {
    /// Accounts by username: id, created, disabled, live sessions.
    List {
        /// Accounts listed at most.
        #[arg(long, default_value = DEFAULT_LIMIT)]
        limit: u32,
    },
    /// One account, with its rooms.
    Show {
        /// The username (any case).
        name: String,
    },
    /// Disables an account: its logins are refused (PERMISSION_DENIED
    /// "this account is disabled") and every session of it ends, with its
    /// streams, on every node within a second.
    Disable {
        /// The username (any case).
        name: String,
    },
    /// Enables a disabled account: it may log in again.
    Enable {
        /// The username (any case).
        name: String,
    },
    /// Sets a new password and ends every session of the account. Prints
    /// a generated password (stdout only), to hand to the user once; with
    /// `--stdin`, reads the password from the first line of stdin instead.
    ResetPassword {
        /// The username (any case).
        name: String,
        /// Read the new password from stdin (its first line) instead of
        /// generating one.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum RoomsCommand {
    /// Rooms, oldest first: id, name, kind, members, newest seq.
    List {
        /// Rooms listed at most.
        #[arg(long, default_value = DEFAULT_LIMIT)]
        limit: u32,
    },
    /// Deletes a room with its members, messages and log. Its members'
    /// open streams get an `error` for the room (NOT_FOUND, "room ID was
    /// deleted") and nothing more from it, on every node within a second.
    Delete {
        /// The room's id.
        id: String,
    },
    /// Makes a member the owner of a group room: ownership moves as when
    /// the owner gives it (the old owner becomes an admin), with the
    /// room's `member` events (ROLE_CHANGED), which every node delivers
    /// within a second.
    SetOwner {
        /// The room's id.
        id: String,
        /// The new owner's username (any case); a member of the room.
        name: String,
    },
}
