//! `chat-server admin`: the operator's tool, for accounts and rooms, on
//! the database the server is configured with, while the server runs.
//!
//! Every change goes through `chat_store::AdminStore`, which writes it
//! with a control event in one transaction; each node reads the control
//! events twice a second (`control`) and ends what the change ends: the
//! tool needs no NATS and reaches every node of a cluster. `cli` is the
//! command line (and `--help`), `output` the tables and JSON it prints.
//! Errors are one line on stderr and an exit code: 1 for a bad argument
//! or something that does not exist, 2 for a database error.

pub mod cli;
pub mod output;

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;

use rand::Rng as _;
use serde_json::Value;

use crate::auth::password;
use crate::config::{redact_url, Config};
use crate::domain::{MemberRole, Password, RoomId, Timestamp, Username};
use crate::store::{self, AdminStore, MembershipChange, MembershipKind, Synchronous};

pub use cli::AdminCommand;
use cli::{RoomsCommand, Target, UsersCommand};

/// Connections the tool opens to PostgreSQL: it runs one statement at a
/// time.
const POOL_SIZE: u32 = 2;

/// Length of a generated password: 20 characters of 56 gives 116 bits.
const GENERATED_LENGTH: usize = 20;

/// What generated passwords are made of: letters and digits, without the
/// ones easily mistaken for each other when read out (0 O o 1 l I).
const GENERATED_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Why the tool failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// A bad argument, or what it names does not exist: exit code 1.
    Refused(String),
    /// The database could not be opened or failed: exit code 2.
    Database(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Refused(_) => 1,
            Self::Database(_) => 2,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Refused(message) | Self::Database(message) => message,
        }
    }
}

impl From<store::Error> for Failure {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NotFound(message)
            | store::Error::Taken(message)
            | store::Error::Forbidden(message)
            | store::Error::Refused(message)
            | store::Error::Invalid(message)
            | store::Error::LimitReached(message)
            | store::Error::BadUrl(message) => Self::Refused(message),
            other => Self::Database(format!("{:#}", anyhow::Error::new(other))),
        }
    }
}

/// Runs one admin command and returns the process's exit code, having
/// printed the result to stdout, or one line to stderr.
pub async fn run(config: &Config, command: AdminCommand) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match execute(config, command).await {
        Ok(printed) => {
            if stdout.write_all(printed.as_bytes()).is_err() {
                return 1;
            }
            0
        }
        Err(failure) => {
            let message = failure.message().replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "error: {message}");
            failure.exit_code()
        }
    }
}

/// Runs one admin command, returning what it prints.
///
/// # Errors
/// A [`Failure`] saying what went wrong.
pub async fn execute(config: &Config, command: AdminCommand) -> Result<String, Failure> {
    // Checked before the database is opened: a typo costs no connection.
    let action = Action::parse(command.what)?;
    let url = command
        .database_url
        .as_deref()
        .unwrap_or(&config.database_url);
    let (store, admin) = open(url, config.sqlite_synchronous).await?;
    let done = action.run(&*store, &*admin, command.json).await;
    store.close().await;
    done
}

/// An admin command, its arguments checked.
enum Action {
    ListUsers { limit: u32 },
    ShowUser(Username),
    Disable(Username),
    Enable(Username),
    ResetPassword { name: Username, stdin: bool },
    ListRooms { limit: u32 },
    DeleteRoom(RoomId),
    SetOwner { room_id: RoomId, name: Username },
}

impl Action {
    fn parse(target: Target) -> Result<Self, Failure> {
        Ok(match target {
            Target::Users(command) => match command {
                UsersCommand::List { limit } => Self::ListUsers { limit },
                UsersCommand::Show { name } => Self::ShowUser(username(&name)?),
                UsersCommand::Disable { name } => Self::Disable(username(&name)?),
                UsersCommand::Enable { name } => Self::Enable(username(&name)?),
                UsersCommand::ResetPassword { name, stdin } => Self::ResetPassword {
                    name: username(&name)?,
                    stdin,
                },
            },
            Target::Rooms(command) => match command {
                RoomsCommand::List { limit } => Self::ListRooms { limit },
                RoomsCommand::Delete { id } => Self::DeleteRoom(room_id(&id)?),
                RoomsCommand::SetOwner { id, name } => Self::SetOwner {
                    room_id: room_id(&id)?,
                    name: username(&name)?,
                },
            },
        })
    }

    async fn run(
        self,
        data: &dyn store::Store,
        store: &dyn AdminStore,
        json: bool,
    ) -> Result<String, Failure> {
        let now = Timestamp::now();
        Ok(match self {
            Self::ListUsers { limit } => {
                let users = store.list_users(limit, now).await?;
                render(json, output::users_json(&users), || {
                    output::users_table(&users)
                })
            }
            Self::ShowUser(name) => {
                let details = store.user_details(&name, now).await?;
                render(json, output::user_details_json(&details), || {
                    output::user_details_text(&details)
                })
            }
            Self::Disable(name) => {
                let change = store.disable_user(&name, now).await?;
                render(json, output::user_change_json(&change), || {
                    output::user_change_text("disabled", &change, &[])
                })
            }
            Self::Enable(name) => {
                let change = store.enable_user(&name, now).await?;
                render(json, output::user_change_json(&change), || {
                    output::user_change_text("enabled", &change, &[])
                })
            }
            Self::ResetPassword { name, stdin } => {
                let (password, generated) = if stdin {
                    (read_password()?, None)
                } else {
                    let text = generate_password();
                    let password = Password::parse(text.clone())
                        .map_err(|e| Failure::Database(format!("a generated password: {e}")))?;
                    (password, Some(text))
                };
                let hash = tokio::task::spawn_blocking(move || password::hash_once(&password))
                    .await
                    .map_err(|e| Failure::Database(format!("hashing the password: {e}")))?
                    .map_err(|e| Failure::Database(format!("{e:#}")))?;
                let change = store.reset_password(&name, &hash, now).await?;
                let mut value = output::user_change_json(&change);
                value["password"] = generated.clone().map_or(Value::Null, Value::String);
                render(json, value, || {
                    let extra: Vec<(&str, String)> = generated
                        .iter()
                        .map(|text| ("new password", text.clone()))
                        .collect();
                    output::user_change_text("password reset", &change, &extra)
                })
            }
            Self::ListRooms { limit } => {
                let rooms = store.list_rooms(limit).await?;
                render(json, output::rooms_json(&rooms), || {
                    output::rooms_table(&rooms)
                })
            }
            Self::DeleteRoom(room_id) => {
                let room = store.delete_room(room_id, now).await?;
                render(json, output::room_json(&room), || {
                    output::room_deleted_text(&room)
                })
            }
            Self::SetOwner { room_id, name } => {
                let owner = store.room_owner(room_id).await?.ok_or_else(|| {
                    Failure::Refused(format!(
                        "room {room_id} has no owner to replace: a direct room has none, \
                         and an empty room no members"
                    ))
                })?;
                let target = data.user_by_name(&name).await?.ok_or_else(|| {
                    Failure::Refused(format!("no user named {:?}", name.as_str()))
                })?;
                let changed = owner.id != target.id;
                if changed {
                    // Done as the owner giving it: the store's rules (a
                    // member only; the old owner becomes an admin) and its
                    // events are the same as for SetMemberRole.
                    data.change_membership(&MembershipChange {
                        room_id,
                        actor: owner.clone(),
                        at: now,
                        kind: MembershipKind::SetRole {
                            target: target.id,
                            role: MemberRole::Owner,
                        },
                    })
                    .await?;
                    store.owner_set(room_id, target.id, now).await?;
                }
                let value = serde_json::json!({
                    "room_id": room_id.to_string(),
                    "owner": target.username,
                    "previous_owner": owner.username,
                    "changed": changed,
                });
                render(json, value, || {
                    output::fields(&[
                        (
                            "done",
                            if changed {
                                "owner set".to_owned()
                            } else {
                                "owner already: nothing changed".to_owned()
                            },
                        ),
                        ("room", room_id.to_string()),
                        ("owner", target.username.clone()),
                        ("previous owner", owner.username.clone()),
                    ])
                })
            }
        })
    }
}

/// JSON (one document, one line) or the text `table` makes.
fn render(json: bool, value: Value, table: impl FnOnce() -> String) -> String {
    if json {
        format!("{value}\n")
    } else {
        table()
    }
}

fn username(name: &str) -> Result<Username, Failure> {
    Username::parse(name).map_err(|e| Failure::Refused(format!("invalid username {name:?}: {e}")))
}

fn room_id(id: &str) -> Result<RoomId, Failure> {
    RoomId::parse("the room id", id).map_err(|e| Failure::Refused(format!("{e}: {id:?}")))
}

/// Opens the server's database. A SQLite file that is not there is an
/// error, not a new database: the tool works on the server's.
async fn open(
    url: &str,
    synchronous: Synchronous,
) -> Result<(Arc<dyn store::Store>, Arc<dyn AdminStore>), Failure> {
    if let Some(file) = store::sqlite_file(url) {
        if !file.exists() {
            return Err(Failure::Database(format!(
                "no database at {}: give the server's --database-url (or CHAT_DATABASE_URL)",
                file.display()
            )));
        }
    }
    store::connect_with_admin(url, synchronous, POOL_SIZE)
        .await
        .map_err(|error| match error {
            store::Error::BadUrl(message) => Failure::Refused(message),
            other => Failure::Database(format!(
                "opening the database at {}: {:#}",
                redact_url(url),
                anyhow::Error::new(other)
            )),
        })
}

/// A new password, from the operating system's random source.
fn generate_password() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..GENERATED_LENGTH)
        .map(|_| char::from(GENERATED_ALPHABET[rng.gen_range(0..GENERATED_ALPHABET.len())]))
        .collect()
}

/// The first line of stdin, as a password.
fn read_password() -> Result<Password, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Refused(format!("reading the password from stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Password::parse(line.to_owned())
        .map_err(|e| Failure::Refused(format!("the password read from stdin: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_and_of_the_alphabet() {
        let first = generate_password();
        assert_eq!(first.len(), GENERATED_LENGTH);
        assert!(first.bytes().all(|b| GENERATED_ALPHABET.contains(&b)));
        assert!(Password::parse(first.clone()).is_ok());
        assert_ne!(first, generate_password());
    }

    #[test]
    fn bad_names_and_ids_are_refused_before_the_database() {
        assert!(
            matches!(username("a b"), Err(Failure::Refused(m)) if m.starts_with("invalid username \"a b\""))
        );
        assert!(matches!(room_id("nope"), Err(Failure::Refused(m)) if m.contains("not a valid")));
    }
}
