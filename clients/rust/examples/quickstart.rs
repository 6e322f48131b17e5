//! The README's Rust example: log in, create a room, send, and print live
//! messages (it runs until interrupted).
//!
//! ```sh
//! cargo run -p chat-client --example quickstart   # needs a running server and user alice
//! ```

use chat_client::pb::{self, server_event};
use chat_client::{Client, Cursors};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::connect("127.0.0.1:50051").await?;
    client.login("alice", "correct horse battery").await?;
    let mut chat = client.chat().await?;
    let room = chat
        .create_room(pb::CreateRoomRequest {
            name: "general".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .room
        .unwrap();
    let mut events = client.subscribe(Cursors::default()).await?;
    chat.send_message(pb::SendMessageRequest {
        room_id: room.id.clone(),
        text: "hi".into(),
        client_msg_id: "m-1".into(),
        ..Default::default()
    })
    .await?;
    while let Ok(event) = events.next().await {
        if let server_event::Event::Message(m) = event {
            println!("{}: {}", m.sender.unwrap().username, m.text);
        }
    }
    Ok(())
}
