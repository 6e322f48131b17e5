// Room settings, in the side panel, for a group room's admins and owner:
// its name, topic and visibility (UpdateRoom, sending only what changed).
// The server's answer is said as it is: a name taken, a topic too long.
import { Code, ConnectError } from "@connectrpc/connect";
import { RoomVisibility, type Room } from "./gen/chat/v1/chat_pb";
import { chatClient, describe } from "./api";
import { h } from "./dom";

/** The server's limits, in characters (CreateRoomRequest). */
const NAME_MAX_CHARS = 64;
const TOPIC_MAX_CHARS = 512;

export interface RoomSettingsHooks {
  /** The room as this page holds it now. */
  room: () => Room | undefined;
  /** The server's answer: the room as it is now. */
  saved: (room: Room) => void;
}

export function roomSettingsForm(hooks: RoomSettingsHooks): HTMLElement {
  const room = hooks.room();
  const name = h("input", {
    id: "room-settings-name",
    name: "room-name",
    required: true,
    maxlength: NAME_MAX_CHARS,
    value: room?.name ?? "",
    "data-testid": "room-settings-name",
  }) as HTMLInputElement;
  const topic = h("textarea", {
    id: "room-settings-topic",
    name: "room-topic",
    rows: 3,
    maxlength: TOPIC_MAX_CHARS,
    "data-testid": "room-settings-topic",
  }) as HTMLTextAreaElement;
  topic.value = room?.topic ?? "";
  const radio = (value: RoomVisibility, label: string, hint: string) => {
    const id = `room-visibility-${value}`;
    return h(
      "div",
      { class: "radio" },
      h("input", {
        type: "radio",
        id,
        name: "room-visibility",
        value: String(value),
        checked: (room?.visibility ?? RoomVisibility.PUBLIC) === value || (value === RoomVisibility.PUBLIC && room?.visibility === RoomVisibility.UNSPECIFIED),
        "data-testid": `room-visibility-${value === RoomVisibility.PRIVATE ? "private" : "public"}`,
        "aria-describedby": `${id}-hint`,
      }),
      h("label", { for: id }, label),
      h("span", { class: "muted small", id: `${id}-hint` }, ` — ${hint}`),
    );
  };
  const status = h("p", { class: "form-status", role: "status", "data-testid": "room-settings-status" });
  const say = (text: string, bad = false) => {
    status.className = bad ? "form-status bad" : "form-status";
    status.textContent = text;
  };
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "room-settings-save" }, "Save") as HTMLButtonElement;
  const form = h(
    "form",
    {
      class: "room-settings account-form",
      "data-testid": "room-settings",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const now = hooks.room();
        if (!now) return;
        name.removeAttribute("aria-invalid");
        topic.removeAttribute("aria-invalid");
        const picked = Number((form.querySelector<HTMLInputElement>('input[name="room-visibility"]:checked'))?.value ?? RoomVisibility.PUBLIC) as RoomVisibility;
        const change: { roomId: string; name?: string; topic?: string; visibility?: RoomVisibility } = { roomId: now.id };
        if (name.value.trim() !== now.name) change.name = name.value.trim();
        if (topic.value.trim() !== now.topic) change.topic = topic.value.trim();
        const was = now.visibility === RoomVisibility.PRIVATE ? RoomVisibility.PRIVATE : RoomVisibility.PUBLIC;
        if (picked !== was) change.visibility = picked;
        if (change.name === undefined && change.topic === undefined && change.visibility === undefined) {
          say("Nothing changed.");
          return;
        }
        submit.disabled = true;
        say("Saving…");
        try {
          const res = await chatClient.updateRoom(change);
          if (res.room) hooks.saved(res.room);
          say("Saved.");
        } catch (e) {
          const err = ConnectError.from(e);
          // The field the server refused, marked and given the focus.
          const field =
            err.code === Code.AlreadyExists || (change.name !== undefined && /name/i.test(err.rawMessage))
              ? name
              : change.topic !== undefined && /topic/i.test(err.rawMessage)
                ? topic
                : undefined;
          field?.setAttribute("aria-invalid", "true");
          field?.focus();
          say(`Not saved: ${describe(err)}`, true);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("label", { for: "room-settings-name" }, "Name"),
    name,
    h("label", { for: "room-settings-topic" }, "Topic"),
    topic,
    h(
      "fieldset",
      { class: "visibility" },
      h("legend", {}, "Who can see and join it"),
      radio(RoomVisibility.PUBLIC, "Public", "listed to everyone; anyone may join"),
      radio(RoomVisibility.PRIVATE, "Private", "listed to its members; joined by invitation"),
    ),
    h("div", { class: "row" }, submit),
    status,
  );
  return form;
}
