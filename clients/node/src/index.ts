export {
  ChatClient,
  cursorsAt,
  type ChatClientOptions,
  type CreateRoomOptions,
  type ListMembersOptions,
  type ListRoomsOptions,
  type ProfileChanges,
  type RemoveMemberOptions,
  type RoomChanges,
  type SearchUsersOptions,
  type Session,
} from "./client.js";
export { ChatStream, type ChatStreamOptions, type Cursors, type SendOptions } from "./chat-stream.js";
export { ResumingChatStream, type ResumingChatStreamOptions, type StreamState } from "./resuming-stream.js";
export { RoomView, previewText, REPLY_PREVIEW_BYTES } from "./room-view.js";
export { escapeControls } from "./terminal.js";
export * from "./gen/chat/v1/chat_pb.js";
