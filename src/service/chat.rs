//! `chat.v1.ChatService`: rooms, messages, presence and live streams.

use tonic::{Request, Response, Status, Streaming};

use crate::auth::layer::principal;
use crate::auth::Principal;
use crate::domain::{Emoji, RoomId, RoomTopic, Timestamp};
use crate::error::{Error, Result};
use crate::hub::OutboundStream;
use crate::metrics::Limit;
use crate::pb;
use crate::service::members;
use crate::service::requests;
use crate::service::stream;
use crate::state::AppState;
use crate::store::{ChangeKind, MessageChange, NewRoom, RoomPage};

pub struct ChatApi {
    state: AppState,
}

impl ChatApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn require_member(&self, principal: &Principal, room_id: RoomId) -> Result<()> {
        self.state
            .store
            .membership(room_id, principal.user.id)
            .await?
            .require_member(room_id)?;
        Ok(())
    }

    async fn open_direct_room(
        &self,
        principal: &Principal,
        request: pb::OpenDirectRoomRequest,
    ) -> Result<pb::OpenDirectRoomResponse> {
        let username = requests::open_direct_room(&request)?;
        let other = self
            .state
            .store
            .user_by_name(&username)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("user {:?} does not exist", username.as_str()))
            })?;
        if other.id == principal.user.id {
            return Err(Error::invalid("cannot open a direct room with yourself"));
        }
        self.state
            .room_join
            .check(principal.user.id, &self.state.metrics)?;
        self.state.reads.flush_user(principal.user.id).await;
        let room = self
            .state
            .store
            .open_direct_room(&principal.user, &other, Timestamp::now())
            .await?;
        for member in [principal.user.id, other.id] {
            self.state
                .router
                .joined(member, room.id, room.last_seq)
                .await;
        }
        Ok(pb::OpenDirectRoomResponse {
            room: Some(pb::Room::from(&room)),
        })
    }

    /// Adds or removes the caller's reaction, in its room's order with the
    /// sends; it counts against the send rate.
    async fn react(
        &self,
        principal: &Principal,
        reaction: requests::Reaction,
        kind: fn(Emoji) -> ChangeKind,
    ) -> Result<()> {
        self.state.send_limiter.check(principal.user.id)?;
        self.state
            .writer
            .change(MessageChange {
                room_id: reaction.room_id,
                message_id: reaction.message_id,
                actor: principal.user.clone(),
                at: Timestamp::now(),
                kind: kind(reaction.emoji),
            })
            .await?;
        Ok(())
    }

    /// Counts a refusal by the cap on rooms per user.
    fn count_room_cap(&self, error: &chat_store::Error) {
        if let chat_store::Error::LimitReached(_) = error {
            self.state.metrics.rejected(Limit::RoomsPerUser);
        }
    }

    /// The online users who share a room with the caller (the caller too,
    /// when online), on any node.
    async fn online_peers(&self, principal: &Principal) -> Result<Vec<pb::User>> {
        let rooms: Vec<RoomId> = self
            .state
            .store
            .room_positions_of(principal.user.id)
            .await?
            .into_iter()
            .map(|(room_id, _)| room_id)
            .collect();
        let users = self.state.hub.online_users(principal.user.id, &rooms);
        Ok(users.iter().map(pb::User::from).collect())
    }

    async fn history(
        &self,
        principal: &Principal,
        request: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse> {
        let page = requests::history(&request)?;
        self.require_member(principal, page.room_id).await?;
        let (messages, has_more) = self
            .state
            .store
            .history(page.room_id, principal.user.id, page.before_seq, page.limit)
            .await?;
        Ok(pb::HistoryResponse {
            messages: messages.iter().map(pb::Message::from).collect(),
            has_more,
        })
    }
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    async fn create_room(
        &self,
        mut request: Request<pb::CreateRoomRequest>,
    ) -> Result<Response<pb::CreateRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        let r = request.get_ref();
        let name = requests::create_room(r)?;
        let topic = RoomTopic::parse(&r.topic).map_err(Error::from)?;
        let visibility = members::visibility(r.visibility)?;
        self.state
            .room_create
            .check(principal.user.id, &self.state.metrics)?;
        let room = self
            .state
            .store
            .create_room(NewRoom {
                id: RoomId::new(),
                name,
                topic,
                visibility,
                creator: principal.user.clone(),
                max_rooms: self.state.config.limits.max_rooms_per_user,
                now: Timestamp::now(),
            })
            .await
            .inspect_err(|error| self.count_room_cap(error))
            .map_err(Error::from)?;
        self.state
            .router
            .joined(principal.user.id, room.id, room.last_seq)
            .await;
        Ok(Response::new(pb::CreateRoomResponse {
            room: Some(pb::Room::from(&room)),
        }))
    }

    async fn join_room(
        &self,
        mut request: Request<pb::JoinRoomRequest>,
    ) -> Result<Response<pb::JoinRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        let room_id = requests::join_room(request.get_ref())?;
        self.state
            .room_join
            .check(principal.user.id, &self.state.metrics)?;
        self.state.reads.flush_user(principal.user.id).await;
        let room = members::join(&self.state, &principal, room_id)
            .await
            .inspect_err(|error| {
                if let Error::ResourceExhausted(_) = error {
                    self.state.metrics.rejected(Limit::RoomsPerUser);
                }
            })?;
        Ok(Response::new(pb::JoinRoomResponse { room: Some(room) }))
    }

    async fn leave_room(
        &self,
        mut request: Request<pb::LeaveRoomRequest>,
    ) -> Result<Response<pb::LeaveRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        let room_id = requests::leave_room(request.get_ref())?;
        members::leave(&self.state, &principal, room_id).await?;
        Ok(Response::new(pb::LeaveRoomResponse {}))
    }

    async fn update_room(
        &self,
        mut request: Request<pb::UpdateRoomRequest>,
    ) -> Result<Response<pb::UpdateRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            members::update_room(&self.state, &principal, request.get_ref()).await?,
        ))
    }

    async fn invite_to_room(
        &self,
        mut request: Request<pb::InviteToRoomRequest>,
    ) -> Result<Response<pb::InviteToRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        members::invite(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::InviteToRoomResponse {}))
    }

    async fn list_members(
        &self,
        mut request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            members::list_members(&self.state, &principal, request.get_ref()).await?,
        ))
    }

    async fn set_member_role(
        &self,
        mut request: Request<pb::SetMemberRoleRequest>,
    ) -> Result<Response<pb::SetMemberRoleResponse>, Status> {
        let principal = principal(&mut request)?;
        members::set_role(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::SetMemberRoleResponse {}))
    }

    async fn remove_member(
        &self,
        mut request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let principal = principal(&mut request)?;
        members::remove(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn update_profile(
        &self,
        mut request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            members::update_profile(&self.state, &principal, request.get_ref()).await?,
        ))
    }

    async fn search_users(
        &self,
        mut request: Request<pb::SearchUsersRequest>,
    ) -> Result<Response<pb::SearchUsersResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            members::search_users(&self.state, &principal, request.get_ref()).await?,
        ))
    }

    async fn block_user(
        &self,
        mut request: Request<pb::BlockUserRequest>,
    ) -> Result<Response<pb::BlockUserResponse>, Status> {
        let principal = principal(&mut request)?;
        members::block(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::BlockUserResponse {}))
    }

    async fn unblock_user(
        &self,
        mut request: Request<pb::UnblockUserRequest>,
    ) -> Result<Response<pb::UnblockUserResponse>, Status> {
        let principal = principal(&mut request)?;
        members::unblock(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::UnblockUserResponse {}))
    }

    async fn list_blocked_users(
        &self,
        mut request: Request<pb::ListBlockedUsersRequest>,
    ) -> Result<Response<pb::ListBlockedUsersResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            members::blocked_users(&self.state, &principal).await?,
        ))
    }

    async fn unban_member(
        &self,
        mut request: Request<pb::UnbanMemberRequest>,
    ) -> Result<Response<pb::UnbanMemberResponse>, Status> {
        let principal = principal(&mut request)?;
        members::unban(&self.state, &principal, request.get_ref()).await?;
        Ok(Response::new(pb::UnbanMemberResponse {}))
    }

    async fn list_rooms(
        &self,
        mut request: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let principal = principal(&mut request)?;
        let page = requests::list_rooms(request.get_ref())?;
        // The caller's read state as it just marked it.
        self.state.reads.flush_user(principal.user.id).await;
        // One more than asked: whether it comes says whether a page follows.
        let mut rooms = self
            .state
            .store
            .list_rooms(
                principal.user.id,
                RoomPage {
                    limit: page.limit + 1,
                    ..page
                },
            )
            .await
            .map_err(Error::from)?;
        let next_page_token = if rooms.len() > page.limit as usize {
            rooms.truncate(page.limit as usize);
            rooms
                .last()
                .map(|last| requests::room_page_token(last.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRoomsResponse {
            rooms: rooms.iter().map(pb::Room::from).collect(),
            next_page_token,
        }))
    }

    async fn open_direct_room(
        &self,
        mut request: Request<pb::OpenDirectRoomRequest>,
    ) -> Result<Response<pb::OpenDirectRoomResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            self.open_direct_room(&principal, request.into_inner())
                .await?,
        ))
    }

    async fn send_message(
        &self,
        mut request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let principal = principal(&mut request)?;
        let send = requests::send_message(request.into_inner())?;
        self.state.send_limiter.check(principal.user.id)?;
        let message = stream::new_message(&principal, send);
        let appended = self.state.writer.append(message).await?;
        Ok(Response::new(pb::SendMessageResponse {
            message: Some(pb::Message::from(&appended.message)),
        }))
    }

    async fn send_typing(
        &self,
        mut request: Request<pb::SendTypingRequest>,
    ) -> Result<Response<pb::SendTypingResponse>, Status> {
        let principal = principal(&mut request)?;
        let room_id = requests::send_typing(request.get_ref())?;
        stream::typing_in(&self.state, &principal, room_id).await?;
        Ok(Response::new(pb::SendTypingResponse {}))
    }

    type ChatStreamStream = OutboundStream;

    async fn chat_stream(
        &self,
        mut request: Request<Streaming<pb::ClientEvent>>,
    ) -> Result<Response<Self::ChatStreamStream>, Status> {
        let principal = principal(&mut request)?;
        // Live messages wait until the first client event says whether the
        // stream resumes.
        let opened = stream::open(&self.state, &principal, true).await?;
        tokio::spawn(stream::serve_client_events(
            self.state.clone(),
            principal,
            opened.id,
            opened.catch_up,
            request.into_inner(),
        ));
        Ok(Response::new(opened.outbound))
    }

    type SubscribeStream = OutboundStream;

    async fn subscribe(
        &self,
        mut request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = principal(&mut request)?;
        let cursors = requests::cursors(&request.get_ref().cursors)?;
        let (cursors, refused) = stream::check_cursors(&self.state, &principal, cursors).await?;
        let opened = stream::open(&self.state, &principal, !cursors.is_empty()).await?;
        stream::refused_cursors(&self.state, opened.id, &refused);
        if !cursors.is_empty() {
            stream::spawn_catch_up(self.state.clone(), opened.id, cursors, opened.catch_up);
        }
        Ok(Response::new(opened.outbound))
    }

    async fn history(
        &self,
        mut request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let principal = principal(&mut request)?;
        Ok(Response::new(
            self.history(&principal, request.into_inner()).await?,
        ))
    }

    async fn edit_message(
        &self,
        mut request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::EditMessageResponse>, Status> {
        let principal = principal(&mut request)?;
        let edit = requests::edit_message(request.into_inner())?;
        self.state.send_limiter.check(principal.user.id)?;
        let message = self
            .state
            .writer
            .change(MessageChange {
                room_id: edit.room_id,
                message_id: edit.message_id,
                actor: principal.user.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Edit(edit.text),
            })
            .await?;
        Ok(Response::new(pb::EditMessageResponse {
            message: Some(pb::Message::from(&message)),
        }))
    }

    async fn delete_message(
        &self,
        mut request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        let principal = principal(&mut request)?;
        let (room_id, message_id) = requests::delete_message(request.get_ref())?;
        self.state.send_limiter.check(principal.user.id)?;
        self.state
            .writer
            .change(MessageChange {
                room_id,
                message_id,
                actor: principal.user.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Delete,
            })
            .await?;
        Ok(Response::new(pb::DeleteMessageResponse {}))
    }

    async fn add_reaction(
        &self,
        mut request: Request<pb::AddReactionRequest>,
    ) -> Result<Response<pb::AddReactionResponse>, Status> {
        let principal = principal(&mut request)?;
        let r = request.get_ref();
        let reaction = requests::reaction(&r.room_id, &r.message_id, &r.emoji)?;
        self.react(&principal, reaction, ChangeKind::React).await?;
        Ok(Response::new(pb::AddReactionResponse {}))
    }

    async fn remove_reaction(
        &self,
        mut request: Request<pb::RemoveReactionRequest>,
    ) -> Result<Response<pb::RemoveReactionResponse>, Status> {
        let principal = principal(&mut request)?;
        let r = request.get_ref();
        let reaction = requests::reaction(&r.room_id, &r.message_id, &r.emoji)?;
        self.react(&principal, reaction, ChangeKind::Unreact)
            .await?;
        Ok(Response::new(pb::RemoveReactionResponse {}))
    }

    async fn mark_read(
        &self,
        mut request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let principal = principal(&mut request)?;
        let (room_id, seq) = requests::mark_read(request.get_ref())?;
        // Not against the send rate: its own cheap path (`reads`).
        let last_read_seq = self.state.reads.mark(&principal.user, room_id, seq).await?;
        Ok(Response::new(pb::MarkReadResponse { last_read_seq }))
    }

    async fn list_thread(
        &self,
        mut request: Request<pb::ListThreadRequest>,
    ) -> Result<Response<pb::ListThreadResponse>, Status> {
        let principal = principal(&mut request)?;
        let page = requests::list_thread(request.get_ref())?;
        self.require_member(&principal, page.room_id).await?;
        let thread = self
            .state
            .store
            .thread(
                page.room_id,
                page.root_id,
                principal.user.id,
                page.before_seq,
                page.limit,
            )
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListThreadResponse {
            root: Some(pb::Message::from(&thread.root)),
            messages: thread.replies.iter().map(pb::Message::from).collect(),
            has_more: thread.has_more,
        }))
    }

    async fn list_online_users(
        &self,
        mut request: Request<pb::ListOnlineUsersRequest>,
    ) -> Result<Response<pb::ListOnlineUsersResponse>, Status> {
        let principal = principal(&mut request)?;
        let users = match requests::list_online_users(request.get_ref())? {
            Some(room_id) => {
                self.require_member(&principal, room_id).await?;
                let users = self.state.hub.online_users(principal.user.id, &[room_id]);
                users.iter().map(pb::User::from).collect()
            }
            None => self.online_peers(&principal).await?,
        };
        Ok(Response::new(pb::ListOnlineUsersResponse { users }))
    }
}
