//! The `chat` command-line client: one subcommand per thing a person does,
//! and `live` for an interactive chat in the terminal.
//!
//! Everything from the server that it prints (message text, usernames, room
//! names, error messages) goes through `terminal::escape`, so control and
//! bidi characters in it show as escapes instead of acting on the terminal.

use std::io::Write;

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::pb::{self, client_event, server_event, RoomKind};
use crate::terminal::escape;
use crate::{AuthorizedChat, Client, Cursors, ListRooms};

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
    /// Lists the rooms you can see: every group room and your direct rooms.
    Rooms {
        /// Only the rooms you are in.
        #[arg(long)]
        joined: bool,
        /// Rooms asked of the server per call (0: its default, 100; at most
        /// 1000). Every page is listed whatever the size.
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
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
    /// Prints a room's latest top-level messages (thread replies: `thread`).
    History {
        room: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Starts each line with the message's id and seq (for edit,
        /// delete, react, reply and thread).
        #[arg(long)]
        ids: bool,
    },
    /// Replaces the text of one of your messages.
    Edit {
        room: String,
        message_id: String,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Deletes one of your messages: it stays as "message deleted".
    Delete { room: String, message_id: String },
    /// Reacts to a message with one emoji.
    React {
        room: String,
        message_id: String,
        emoji: String,
    },
    /// Takes your reaction to a message back.
    Unreact {
        room: String,
        message_id: String,
        emoji: String,
    },
    /// Sends a message quoting another one, or with --thread a reply in the
    /// other one's thread.
    Reply {
        room: String,
        message_id: String,
        /// Reply in the thread of the message (a top-level one) rather than
        /// quote it.
        #[arg(long)]
        thread: bool,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Prints a thread: its root, then its latest replies.
    Thread {
        room: String,
        root_id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Starts each line with the message's id and seq.
        #[arg(long)]
        ids: bool,
    },
    /// Marks a room read up to SEQ, by default up to its newest event.
    MarkRead { room: String, seq: Option<u64> },
    /// Chats live in a room: prints what happens there, sends each line you
    /// type; ends at end of input.
    Live { room: String },
    /// Changes your password (--password is the current one); every other
    /// session of yours ends.
    Passwd {
        /// The new password (better given through the environment).
        #[arg(long, env = "CHAT_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// Ends every other session of yours ("log out other devices").
    LogoutOthers,
    /// Lists a room's members: name, role, online.
    Members { room: String },
    /// Invites a user to a room.
    Invite { room: String, username: String },
    /// Removes a member from a room (admins and the owner); --ban also
    /// keeps them out.
    Remove {
        room: String,
        username: String,
        #[arg(long)]
        ban: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Sets the name others see instead of your username ("" clears it).
    Name { display_name: String },
    /// Finds users by the start of their username or display name.
    Search { prefix: String },
    /// Blocks a user: they can no longer message or invite you.
    Block { username: String },
    /// Lifts a block.
    Unblock { username: String },
    /// Lists the users you block.
    Blocked,
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
        Command::Rooms { joined, page_size } => {
            let options = ListRooms {
                page_size,
                joined_only: joined,
            };
            for room in client.list_rooms(options).await.map_err(status)? {
                let kind = if room.kind == RoomKind::Direct as i32 {
                    "direct"
                } else {
                    "group"
                };
                let joined = if room.joined { "joined" } else { "-" };
                writeln!(
                    out,
                    "{}\t{kind}\t{joined}\t{} messages\t{}\t{}",
                    escape(&room.name),
                    room.last_seq,
                    escape(&room.id),
                    unread(&room)
                )?;
            }
        }
        Command::CreateRoom { name } => {
            let room = chat
                .create_room(pb::CreateRoomRequest {
                    name,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .room
                .ok_or_else(|| anyhow!("the server sent no room"))?;
            writeln!(
                out,
                "created room {} ({})",
                escape(&room.name),
                escape(&room.id)
            )?;
        }
        Command::Join { room } => {
            let room = find_room(&client, &room).await?;
            join(&mut chat, &room).await?;
            writeln!(out, "joined {}", escape(&room.name))?;
        }
        Command::Members { room } => {
            let room = find_room(&client, &room).await?;
            for member in client.list_members(&room.id).await.map_err(status)? {
                let role = match pb::MemberRole::try_from(member.role) {
                    Ok(pb::MemberRole::Owner) => "owner",
                    Ok(pb::MemberRole::Admin) => "admin",
                    _ => "member",
                };
                let online = if member.online { "online" } else { "-" };
                writeln!(out, "{}\t{role}\t{online}", shown(member.user.as_ref()))?;
            }
        }
        Command::Invite { room, username } => {
            let room = find_room(&client, &room).await?;
            chat.invite_to_room(pb::InviteToRoomRequest {
                room_id: room.id,
                username: username.clone(),
            })
            .await
            .map_err(status)?;
            writeln!(
                out,
                "invited {} to {}",
                escape(&username),
                escape(&room.name)
            )?;
        }
        Command::Remove {
            room,
            username,
            ban,
            reason,
        } => {
            let room = find_room(&client, &room).await?;
            let members = client.list_members(&room.id).await.map_err(status)?;
            let user = members
                .iter()
                .filter_map(|m| m.user.as_ref())
                .find(|u| u.username.eq_ignore_ascii_case(&username))
                .ok_or_else(|| anyhow!("{username:?} is not a member of {}", room.name))?;
            chat.remove_member(pb::RemoveMemberRequest {
                room_id: room.id,
                user_id: user.id.clone(),
                ban,
                reason,
            })
            .await
            .map_err(status)?;
            let done = if ban { "banned" } else { "removed" };
            writeln!(
                out,
                "{done} {} from {}",
                escape(&user.username),
                escape(&room.name)
            )?;
        }
        Command::Name { display_name } => {
            let user = client
                .update_profile(Some(&display_name))
                .await
                .map_err(status)?;
            writeln!(out, "you are shown as {}", shown(Some(&user)))?;
        }
        Command::Search { prefix } => {
            for user in client.search_users(&prefix, 0).await.map_err(status)? {
                writeln!(
                    out,
                    "{}\t{}",
                    escape(&user.username),
                    escape(&user.display_name)
                )?;
            }
        }
        Command::Block { username } => {
            client.block_user(&username).await.map_err(status)?;
            writeln!(out, "blocked {}", escape(&username))?;
        }
        Command::Unblock { username } => {
            client.unblock_user(&username).await.map_err(status)?;
            writeln!(out, "unblocked {}", escape(&username))?;
        }
        Command::Blocked => {
            for user in client.blocked_users().await.map_err(status)? {
                writeln!(out, "{}", escape(&user.username))?;
            }
        }
        Command::Dm { username } => {
            let room = chat
                .open_direct_room(pb::OpenDirectRoomRequest { username })
                .await
                .map_err(status)?
                .into_inner()
                .room
                .ok_or_else(|| anyhow!("the server sent no room"))?;
            writeln!(
                out,
                "direct room with {} ({})",
                escape(&room.name),
                escape(&room.id)
            )?;
        }
        Command::Send { room, text } => {
            let room = find_room(&client, &room).await?;
            let message = chat
                .send_message(pb::SendMessageRequest {
                    room_id: room.id,
                    text: text.join(" "),
                    client_msg_id: uuid::Uuid::new_v4().to_string(),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .message
                .ok_or_else(|| anyhow!("the server sent no message"))?;
            writeln!(out, "sent #{} to {}", message.seq, escape(&room.name))?;
        }
        Command::History { room, limit, ids } => {
            let room = find_room(&client, &room).await?;
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
                writeln!(out, "{}", listed(message, ids))?;
            }
        }
        Command::Edit {
            room,
            message_id,
            text,
        } => {
            let room = find_room(&client, &room).await?;
            let message = chat
                .edit_message(pb::EditMessageRequest {
                    room_id: room.id,
                    message_id,
                    text: text.join(" "),
                })
                .await
                .map_err(status)?
                .into_inner()
                .message
                .ok_or_else(|| anyhow!("the server sent no message"))?;
            writeln!(out, "edited #{} in {}", message.seq, escape(&room.name))?;
        }
        Command::Delete { room, message_id } => {
            let room = find_room(&client, &room).await?;
            chat.delete_message(pb::DeleteMessageRequest {
                room_id: room.id,
                message_id: message_id.clone(),
            })
            .await
            .map_err(status)?;
            writeln!(
                out,
                "deleted {} in {}",
                escape(&message_id),
                escape(&room.name)
            )?;
        }
        Command::React {
            room,
            message_id,
            emoji,
        } => {
            let room = find_room(&client, &room).await?;
            chat.add_reaction(pb::AddReactionRequest {
                room_id: room.id,
                message_id: message_id.clone(),
                emoji: emoji.clone(),
            })
            .await
            .map_err(status)?;
            writeln!(out, "reacted {} to {}", escape(&emoji), escape(&message_id))?;
        }
        Command::Unreact {
            room,
            message_id,
            emoji,
        } => {
            let room = find_room(&client, &room).await?;
            chat.remove_reaction(pb::RemoveReactionRequest {
                room_id: room.id,
                message_id: message_id.clone(),
                emoji: emoji.clone(),
            })
            .await
            .map_err(status)?;
            writeln!(
                out,
                "took back {} from {}",
                escape(&emoji),
                escape(&message_id)
            )?;
        }
        Command::Reply {
            room,
            message_id,
            thread,
            text,
        } => {
            let room = find_room(&client, &room).await?;
            let (reply_to_id, thread_root_id) = if thread {
                (String::new(), message_id)
            } else {
                (message_id, String::new())
            };
            let message = chat
                .send_message(pb::SendMessageRequest {
                    room_id: room.id,
                    text: text.join(" "),
                    client_msg_id: uuid::Uuid::new_v4().to_string(),
                    reply_to_id,
                    thread_root_id,
                })
                .await
                .map_err(status)?
                .into_inner()
                .message
                .ok_or_else(|| anyhow!("the server sent no message"))?;
            let place = if thread { "the thread in " } else { "" };
            writeln!(
                out,
                "sent #{} to {place}{}",
                message.seq,
                escape(&room.name)
            )?;
        }
        Command::Thread {
            room,
            root_id,
            limit,
            ids,
        } => {
            let room = find_room(&client, &room).await?;
            let thread = chat
                .list_thread(pb::ListThreadRequest {
                    room_id: room.id,
                    thread_root_id: root_id,
                    before_seq: 0,
                    limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(root) = &thread.root {
                writeln!(out, "{}", listed(root, ids))?;
            }
            if thread.has_more {
                writeln!(out, "  …")?;
            }
            for message in &thread.messages {
                writeln!(out, "  {}", listed(message, ids))?;
            }
        }
        Command::MarkRead { room, seq } => {
            let room = find_room(&client, &room).await?;
            let marker = chat
                .mark_read(pb::MarkReadRequest {
                    room_id: room.id,
                    seq: seq.unwrap_or(room.last_seq),
                })
                .await
                .map_err(status)?
                .into_inner()
                .last_read_seq;
            writeln!(out, "read up to #{marker} in {}", escape(&room.name))?;
        }
        Command::Live { room } => {
            let room = find_room(&client, &room).await?;
            if !room.joined {
                join(&mut chat, &room).await?;
            }
            live(&mut chat, &room, input, out).await?;
        }
        Command::Passwd { new_password } => {
            client
                .change_password(&cli.password, &new_password)
                .await
                .map_err(status)?;
            writeln!(
                out,
                "password changed for {}; your other sessions ended",
                escape(&cli.user)
            )?;
        }
        Command::LogoutOthers => {
            let revoked = client.revoke_other_sessions().await.map_err(status)?;
            let plural = if revoked == 1 { "" } else { "s" };
            writeln!(out, "ended {revoked} other session{plural}")?;
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
                                ..Default::default()
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
    let name = |user: &Option<pb::User>| shown(user.as_ref());
    match event {
        server_event::Event::Ready(ready) => {
            let online: Vec<_> = ready.online_users.iter().map(|u| shown(Some(u))).collect();
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
            Some(if message.thread_root_id.is_empty() {
                show_message(message)
            } else {
                format!("(in a thread) {}", show_message(message))
            })
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
        server_event::Event::Error(error) => Some(format!("! {}", escape(&error.message))),
        server_event::Event::Edited(edited) => edited
            .message
            .as_ref()
            .filter(|message| message.room_id == room_id)
            .map(|message| format!("* edited: {}", show_message(message))),
        server_event::Event::Deleted(deleted) if deleted.room_id == room_id => {
            Some(format!("* {} deleted a message", name(&deleted.by)))
        }
        server_event::Event::Reaction(reaction) if reaction.room_id == room_id => Some(format!(
            "* {} {} {}",
            name(&reaction.user),
            if reaction.added {
                "reacted"
            } else {
                "took back"
            },
            escape(&reaction.emoji)
        )),
        server_event::Event::Read(read) if read.room_id == room_id => Some(format!(
            "* {} read up to #{}",
            name(&read.user),
            read.last_read_seq
        )),
        _ => None,
    }
}

/// A message as `history` and `thread` list it: with `ids`, its id and
/// seq first.
fn listed(message: &pb::Message, ids: bool) -> String {
    if ids {
        format!(
            "{} #{} {}",
            escape(&message.id),
            message.seq,
            show_message(message)
        )
    } else {
        show_message(message)
    }
}

/// A room's unread messages and mentions, for `rooms`.
fn unread(room: &pb::Room) -> String {
    match (room.unread_count, room.mention_count) {
        (0, _) => "-".into(),
        (unread, 0) => format!("{unread} unread"),
        (unread, mentions) => format!("{unread} unread ({mentions} mention you)"),
    }
}

/// One line for a message: its time, sender and text, then what has
/// happened to it (a quote, "(edited)", a tombstone, replies, reactions).
fn show_message(message: &pb::Message) -> String {
    let secs = message
        .sent_at
        .as_ref()
        .map_or(0, |t| t.seconds)
        .rem_euclid(86_400);
    let mut line = format!(
        "[{:02}:{:02}:{:02}] {}: ",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        shown(message.sender.as_ref()),
    );
    if let Some(quote) = &message.reply_to {
        line += &format!("(replying to {}) ", shown(quote.sender.as_ref()));
    }
    if message.deleted {
        line += "(message deleted)";
    } else {
        line += &escape(&message.text);
    }
    if message.edited_at.is_some() {
        line += " (edited)";
    }
    match message.thread_reply_count {
        0 => {}
        1 => line += " [1 reply]",
        n => line += &format!(" [{n} replies]"),
    }
    if !message.reactions.is_empty() {
        let reactions: Vec<_> = message
            .reactions
            .iter()
            .map(|r| format!("{} {}", escape(&r.emoji), r.count))
            .collect();
        line += &format!(" [{}]", reactions.join(", "));
    }
    line
}

/// How a user is shown: by display name where set, else by username;
/// escaped.
fn shown(user: Option<&pb::User>) -> String {
    match user {
        Some(user) if !user.display_name.is_empty() => escape(&user.display_name).into_owned(),
        Some(user) => escape(&user.username).into_owned(),
        None => "?".into(),
    }
}

/// A room by id, or by name (a direct room is named after the other user),
/// from every page of the rooms the server lists.
async fn find_room(client: &Client, name_or_id: &str) -> anyhow::Result<pb::Room> {
    let every_room = ListRooms {
        page_size: 1000,
        joined_only: false,
    };
    let rooms = client.list_rooms(every_room).await.map_err(status)?;
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
    anyhow!("{:?}: {}", status.code(), escape(status.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Option<pb::User> {
        Some(pb::User {
            id: "u1".into(),
            username: name.into(),
            display_name: String::new(),
        })
    }

    #[test]
    fn messages_print_with_their_control_characters_escaped() {
        let message = pb::Message {
            room_id: "r1".into(),
            sender: user("bob\x1b[31m"),
            text: "hi\r\x1b[2Kalice: send me your password\u{202e}".into(),
            ..Default::default()
        };
        assert_eq!(
            show_message(&message),
            "[00:00:00] bob\\x1b[31m: hi\\x0d\\x1b[2Kalice: send me your password\\u202e"
        );
        let multiline = pb::Message {
            sender: user("bob"),
            text: "a\n\tb 👋".into(),
            ..Default::default()
        };
        assert_eq!(show_message(&multiline), "[00:00:00] bob: a\n\tb 👋");
    }

    #[test]
    fn a_message_shows_its_quote_edit_replies_and_reactions() {
        let message = pb::Message {
            sender: user("bob"),
            text: "yes".into(),
            edited_at: Some(prost_types::Timestamp::default()),
            reply_to: Some(pb::ReplyPreview {
                sender: user("alice\x1b"),
                ..Default::default()
            }),
            thread_reply_count: 2,
            reactions: vec![
                pb::ReactionSummary {
                    emoji: "👍".into(),
                    count: 2,
                    reacted_by_me: true,
                },
                pb::ReactionSummary {
                    emoji: "🎉".into(),
                    count: 1,
                    reacted_by_me: false,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            show_message(&message),
            "[00:00:00] bob: (replying to alice\\x1b) yes (edited) [2 replies] [👍 2, 🎉 1]"
        );
        let tombstone = pb::Message {
            sender: user("bob"),
            deleted: true,
            ..Default::default()
        };
        assert_eq!(
            show_message(&tombstone),
            "[00:00:00] bob: (message deleted)"
        );
    }

    #[test]
    fn conversation_events_print_one_line_each() {
        let reaction = server_event::Event::Reaction(server_event::Reaction {
            room_id: "r1".into(),
            user: user("bob"),
            emoji: "👍".into(),
            added: true,
            ..Default::default()
        });
        assert_eq!(
            show_event(&reaction, "r1").as_deref(),
            Some("* bob reacted 👍")
        );
        assert_eq!(show_event(&reaction, "r2"), None, "another room's");
        let read = server_event::Event::Read(server_event::Read {
            room_id: "r1".into(),
            user: user("alice"),
            last_read_seq: 7,
        });
        assert_eq!(
            show_event(&read, "r1").as_deref(),
            Some("* alice read up to #7")
        );
        let deleted = server_event::Event::Deleted(server_event::Deleted {
            room_id: "r1".into(),
            by: user("bob"),
            ..Default::default()
        });
        assert_eq!(
            show_event(&deleted, "r1").as_deref(),
            Some("* bob deleted a message")
        );
    }

    #[test]
    fn events_print_names_and_errors_escaped() {
        let presence = server_event::Event::Presence(server_event::Presence {
            user: user("eve\x07"),
            online: true,
        });
        assert_eq!(
            show_event(&presence, "r1").as_deref(),
            Some("* eve\\x07 is online")
        );
        let ready = server_event::Event::Ready(server_event::Ready {
            user: user("me\0"),
            online_users: vec![user("a\u{2066}").unwrap(), user("b").unwrap()],
            ..Default::default()
        });
        assert_eq!(
            show_event(&ready, "r1").as_deref(),
            Some("* connected as me\\x00; online: a\\u2066, b")
        );
        let error = server_event::Event::Error(server_event::Error {
            message: "bad \x1b]0;x\x07".into(),
            ..Default::default()
        });
        assert_eq!(
            show_event(&error, "r1").as_deref(),
            Some("! bad \\x1b]0;x\\x07")
        );
    }
}
