// "Invite by username" in the member panel: a text box that offers the
// users whose username or display name starts with what is typed
// (SearchUsers, asked once typing pauses), then InviteToRoom. The ARIA 1.2
// combobox pattern, as the composer's @ list (mentions.ts): the box is the
// combobox, the list a listbox whose active option the box names, the
// arrow keys move in it, Enter picks, Escape closes.
import type { User } from "./gen/chat/v1/chat_pb";
import { chatClient, describe } from "./api";
import { h } from "./dom";
import { displayName } from "./people";

/** How long typing must pause before the server is asked: one SearchUsers per pause. */
const SEARCH_DEBOUNCE_MS = 250;
/** The server's prefix limits, in characters (SearchUsersRequest.prefix). */
const PREFIX_MAX_CHARS = 32;
/** The most users offered: the most SearchUsers answers with. */
const MAX_SUGGESTIONS = 20;

export interface InviteHooks {
  /** Ids of the room's members: they are not offered. */
  members: () => ReadonlySet<string>;
}

let fields = 0;

/** The invite form of room `roomId`. */
export function inviteForm(roomId: string, hooks: InviteHooks): HTMLElement {
  const n = ++fields;
  const listId = `invite-suggestions-${n}`;
  const inputId = `invite-username-${n}`;
  const input = h("input", {
    id: inputId,
    name: "invite-username",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    maxlength: PREFIX_MAX_CHARS,
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-controls": listId,
    "aria-expanded": "false",
    "data-testid": "invite-username",
  }) as HTMLInputElement;
  const list = h("ul", {
    id: listId,
    class: "mention-list invite-suggestions",
    role: "listbox",
    "aria-label": "Users to invite",
    "data-testid": "invite-suggestions",
    hidden: true,
  });
  const status = h("p", { class: "form-status", role: "status", "data-testid": "invite-status" });
  const say = (text: string, bad = false) => {
    status.className = bad ? "form-status bad" : "form-status";
    status.textContent = text;
  };
  const submit = h("button", { type: "submit", "data-testid": "invite-submit" }, "Invite") as HTMLButtonElement;

  let options: User[] = [];
  let active = -1;
  let timer: number | undefined;
  /** Each search's number: an answer to an older one than the newest is dropped. */
  let asked = 0;

  const close = () => {
    options = [];
    active = -1;
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  };
  const render = () => {
    if (!options.length) return close();
    list.replaceChildren(
      ...options.map((u, i) =>
        h(
          "li",
          {
            id: `${listId}-${i}`,
            class: "mention-option",
            role: "option",
            "aria-selected": i === active ? "true" : "false",
            "data-testid": "invite-suggestion",
            "data-username": u.username,
            // Keeps the focus in the box: the click picks.
            onmousedown: (ev: Event) => ev.preventDefault(),
            onclick: () => pick(u),
          },
          displayName(u),
          u.displayName ? h("span", { class: "muted-inline" }, ` @${u.username}`) : null,
        ),
      ),
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (active >= 0) {
      input.setAttribute("aria-activedescendant", `${listId}-${active}`);
      list.children[active]?.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  };
  const pick = (u: User) => {
    input.value = u.username;
    close();
    input.focus();
  };
  const search = async () => {
    const prefix = input.value.trim();
    const mine = ++asked;
    if (!prefix || [...prefix].length > PREFIX_MAX_CHARS) return close();
    try {
      const res = await chatClient.searchUsers({ prefix, limit: MAX_SUGGESTIONS });
      if (mine !== asked || document.activeElement !== input) return;
      const members = hooks.members();
      options = res.users.filter((u) => !members.has(u.id)).slice(0, MAX_SUGGESTIONS);
      // Typed out in full, and the only fit: nothing left to pick.
      if (options.length === 1 && options[0].username.toLowerCase() === prefix.toLowerCase()) return close();
      active = -1;
      render();
    } catch (e) {
      if (mine === asked) say(`Could not look for users: ${describe(e)}`, true);
    }
  };

  input.addEventListener("input", () => {
    say("");
    input.removeAttribute("aria-invalid");
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void search(), SEARCH_DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.isComposing) return;
    const open = !list.hidden && options.length > 0;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!open) return;
      ev.preventDefault();
      const step = ev.key === "ArrowDown" ? 1 : -1;
      active = active < 0 ? (step > 0 ? 0 : options.length - 1) : (active + step + options.length) % options.length;
      render();
    } else if (ev.key === "Enter" && open && active >= 0) {
      ev.preventDefault();
      pick(options[active]);
    } else if (ev.key === "Escape" && open) {
      // Closes the list, not the panel around it.
      ev.preventDefault();
      ev.stopPropagation();
      close();
    }
  });
  input.addEventListener("blur", () => close());

  const form = h(
    "form",
    {
      class: "invite-form",
      "data-testid": "invite-form",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const username = input.value.trim();
        if (!username) return;
        close();
        window.clearTimeout(timer);
        asked++;
        submit.disabled = true;
        say(`Inviting ${username}…`);
        try {
          await chatClient.inviteToRoom({ roomId, username });
          input.value = "";
          say(`Invited ${username}.`);
        } catch (e) {
          input.setAttribute("aria-invalid", "true");
          say(`Could not invite ${username}: ${describe(e)}`, true);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("label", { for: inputId }, "Invite by username"),
    h("div", { class: "invite-row" }, h("div", { class: "invite-box" }, input, list), submit),
    status,
  );
  return form;
}
