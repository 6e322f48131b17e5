//! The `chat` command-line client: one subcommand per thing a person does,
//! and `live` for an interactive chat in the terminal.

use std::io::Write;

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::pb::{self, client_event, server_event, RoomKind};
use crate::{AuthorizedChat, Client, Cursors};

/// Chat from the terminal.
#[derive(Parser, Debug)]
#[command(name = "chat", version, about)]
pub struct Cli {
    /// The server, `http://host:port`.
    #[arg(long, env = "CHAT_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Your username.
    #[arg(long, short, env = "CHAT_USER")]
    pub user: String,
    /// Your password (better given through the environment).
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    pub password: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Creates the account --user with --password.
    Register,
    /// Lists the rooms you can see.
    Rooms,
    /// Creates a group room (you join it).
    CreateRoom { name: String },
    /// Joins a group room, by name or id.
    Join { room: String },
    /// Opens the direct room with another user.
    Dm { username: String },
    /// Sends one message to a room, by name or id.
    Send {
        room: String,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Prints a room's latest messages.
    History {
        room: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Chats live in a room: prints what happens there, sends each line you
    /// type; ends at end of input.
    Live { room: String },
}

/// Runs one command, reading typed lines from `input` and printing to `out`.
///
/// # Errors
/// Connection failures and the server's refusals, in words.
pub async fn run(
    cli: Cli,
    input: impl AsyncBufRead + Unpin,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let client = Client::connect(&cli.server)
        .await
        .with_context(|| format!("connecting to {}", cli.server))?;
    if let Command::Register = cli.command {
        let user = client
            .register(&cli.user, &cli.password)
            .await
            .map_err(status)?;
        writeln!(out, "registered {} ({})", user.username, user.id)?;
        return Ok(());
    }
    client
        .login(&cli.user, &cli.password)
        .await
        .map_err(status)?;
    let mut chat = client.chat().await.map_err(status)?;
    match cli.command {
        Command::Register => unreachable!("handled above"),
        Command::Rooms => {
            for room in list_rooms(&mut chat).await? {
                let kind = if room.kind == RoomKind::Direct as i32 {
                    "direct"
                } else {
                    "group"
                };
                let joined = if room.joined { "joined" } else { "-" };
                writeln!(
                    out,
                    "{}\t{kind}\t{joined}\t{} messages\t{}",
                    room.name, room.last_seq, room.id
                )?;
            }
        }
        Command::CreateRoom { name } => {
            let room = chat
                .create_room(pb::CreateRoomRequest { name })
                .await
                .map_err(status)?
                .into_inner()
                .room
                .ok_or_else(|| anyhow!("the server sent no room"))?;
            writeln!(out, "created room {} ({})", room.name, room.id)?;
        }
        Command::Join { room } => {
            let room = find_room(&mut chat, &room).await?;
            join(&mut chat, &room).await?;
            writeln!(out, "joined {}", room.name)?;
        }
        Command::Dm { username } => {
            let room = chat
                .open_direct_room(pb::OpenDirectRoomRequest { username })
                .await
                .map_err(status)?
                .into_inner()
                .room
                .ok_or_else(|| anyhow!("the server sent no room"))?;
            writeln!(out, "direct room with {} ({})", room.name, room.id)?;
        }
        Command::Send { room, text } => {
            let room = find_room(&mut chat, &room).await?;
            let message = chat
                .send_message(pb::SendMessageRequest {
                    room_id: room.id,
                    text: text.join(" "),
                    client_msg_id: uuid::Uuid::new_v4().to_string(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .message
                .ok_or_else(|| anyhow!("the server sent no message"))?;
            writeln!(out, "sent #{} to {}", message.seq, room.name)?;
        }
        Command::History { room, limit } => {
            let room = find_room(&mut chat, &room).await?;
            let history = chat
                .history(pb::HistoryRequest {
                    room_id: room.id,
                    before_seq: 0,
                    limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            for message in &history.messages {
                writeln!(out, "{}", show_message(message))?;
            }
        }
        Command::Live { room } => {
            let room = find_room(&mut chat, &room).await?;
            if !room.joined {
                join(&mut chat, &room).await?;
            }
            live(&mut chat, &room, input, out).await?;
        }
    }
    Ok(())
}

/// The interactive chat over one ChatStream.
async fn live(
    chat: &mut AuthorizedChat,
    room: &pb::Room,
    input: impl AsyncBufRead + Unpin,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let (events_tx, events_rx) = mpsc::channel(16);
    // Resume from the room's newest message: start the stream at once, with
    // nothing replayed.
    let mut cursors = Cursors::default();
    cursors.track(&room.id, room.last_seq);
    events_tx.send(cursors.resume_event()).await?;
    let mut events = chat
        .chat_stream(ReceiverStream::new(events_rx))
        .await
        .map_err(status)?
        .into_inner();
    let mut lines = input.lines();
    let mut typing_open = true;
    let mut pending = 0usize;
    loop {
        tokio::select! {
            line = lines.next_line(), if typing_open => match line? {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    pending += 1;
                    events_tx
                        .send(pb::ClientEvent {
                            event: Some(client_event::Event::Send(pb::SendMessageRequest {
                                room_id: room.id.clone(),
                                text: line,
                                client_msg_id: uuid::Uuid::new_v4().to_string(),
                            })),
                        })
                        .await?;
                }
                // End of input: leave once every line sent is acknowledged.
                None => typing_open = false,
            },
            event = events.message() => {
                let Some(event) = event.map_err(status)?.and_then(|e| e.event) else {
                    bail!("the server ended the stream");
                };
                if let server_event::Event::Sent(_) | server_event::Event::Error(_) = &event {
                    pending = pending.saturating_sub(1);
                }
                if let Some(line) = show_event(&event, &room.id) {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
            }
        }
        if !typing_open && pending == 0 {
            return Ok(());
        }
    }
}

/// One line for an event, or nothing for events not worth showing.
fn show_event(event: &server_event::Event, room_id: &str) -> Option<String> {
    let name = |user: &Option<pb::User>| user.as_ref().map_or("?".into(), |u| u.username.clone());
    match event {
        server_event::Event::Ready(ready) => {
            let online: Vec<_> = ready
                .online_users
                .iter()
                .map(|u| u.username.as_str())
                .collect();
            Some(format!(
                "* connected as {}; online: {}",
                name(&ready.user),
                if online.is_empty() {
                    "nobody else".into()
                } else {
                    online.join(", ")
                }
            ))
        }
        server_event::Event::Message(message) if message.room_id == room_id => {
            Some(show_message(message))
        }
        server_event::Event::Sent(sent) => sent.message.as_ref().map(show_message),
        server_event::Event::Presence(presence) => Some(format!(
            "* {} is {}",
            name(&presence.user),
            if presence.online { "online" } else { "offline" }
        )),
        server_event::Event::Typing(typing) if typing.room_id == room_id => {
            Some(format!("* {} is typing", name(&typing.user)))
        }
        server_event::Event::Error(error) => Some(format!("! {}", error.message)),
        _ => None,
    }
}

fn show_message(message: &pb::Message) -> String {
    let secs = message
        .sent_at
        .as_ref()
        .map_or(0, |t| t.seconds)
        .rem_euclid(86_400);
    format!(
        "[{:02}:{:02}:{:02}] {}: {}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        message.sender.as_ref().map_or("?", |u| u.username.as_str()),
        message.text
    )
}

/// Every room the server lists, page after page.
async fn list_rooms(chat: &mut AuthorizedChat) -> anyhow::Result<Vec<pb::Room>> {
    let mut rooms = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = chat
            .list_rooms(pb::ListRoomsRequest {
                page_size: 1000,
                page_token,
                joined_only: false,
            })
            .await
            .map_err(status)?
            .into_inner();
        rooms.extend(page.rooms);
        if page.next_page_token.is_empty() {
            return Ok(rooms);
        }
        page_token = page.next_page_token;
    }
}

/// A room by id, or by name (a direct room is named after the other user).
async fn find_room(chat: &mut AuthorizedChat, name_or_id: &str) -> anyhow::Result<pb::Room> {
    let rooms = list_rooms(chat).await?;
    rooms
        .iter()
        .find(|room| room.id == name_or_id)
        .or_else(|| rooms.iter().find(|room| room.name == name_or_id))
        .cloned()
        .ok_or_else(|| anyhow!("no room named {name_or_id:?}"))
}

async fn join(chat: &mut AuthorizedChat, room: &pb::Room) -> anyhow::Result<()> {
    chat.join_room(pb::JoinRoomRequest {
        room_id: room.id.clone(),
    })
    .await
    .map_err(status)?;
    Ok(())
}

/// A refusal as the person should read it: the server's own words.
fn status(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
}
