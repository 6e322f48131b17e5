// Sections of the account page besides sessions: the reader's display name
// (UpdateProfile) and the users they block (ListBlockedUsers, with Unblock).
import { Code, ConnectError } from "@connectrpc/connect";
import type { User } from "./gen/chat/v1/chat_pb";
import { chatClient, describe } from "./api";
import { h, clear } from "./dom";
import { displayName, markBlocked, setBlocked } from "./people";

/** The server's limit on a display name, in characters. */
const DISPLAY_NAME_MAX_CHARS = 64;

/** A status line under a form: what happened, in words, read out by screen readers. */
export function formStatus(testId: string): { node: HTMLElement; say: (text: string, bad?: boolean) => void } {
  const node = h("p", { class: "form-status", role: "status", "data-testid": testId });
  return {
    node,
    say: (text, bad = false) => {
      node.className = bad ? "form-status bad" : "form-status";
      node.textContent = text;
    },
  };
}

/**
 * "Display name": shown instead of the username wherever the reader
 * appears. `me` is the reader as this page knows them; `changed` hears the
 * server's answer (its `profile` event tells the reader's other pages).
 */
export function profileSection(me: User | undefined, changed: (u: User) => void): HTMLElement {
  const input = h("input", {
    id: "display-name",
    name: "display-name",
    maxlength: DISPLAY_NAME_MAX_CHARS,
    value: me?.displayName ?? "",
    "aria-describedby": "display-name-hint",
    "data-testid": "display-name",
  }) as HTMLInputElement;
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "display-name-save" }, "Save") as HTMLButtonElement;
  const status = formStatus("display-name-status");
  return h(
    "form",
    {
      class: "account-section account-form",
      "data-testid": "profile-form",
      "aria-labelledby": "profile-heading",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        input.removeAttribute("aria-invalid");
        submit.disabled = true;
        status.say("Saving…");
        try {
          const res = await chatClient.updateProfile({ displayName: input.value.trim() });
          if (res.user) {
            changed(res.user);
            input.value = res.user.displayName;
            status.say(res.user.displayName ? `Others see you as ${res.user.displayName}.` : "Others see your username.");
          }
        } catch (e) {
          input.setAttribute("aria-invalid", "true");
          input.focus();
          status.say(`Not saved: ${describe(e)}`, true);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h3", { id: "profile-heading" }, "Profile"),
    h("label", { for: "display-name" }, "Display name"),
    input,
    h(
      "p",
      { id: "display-name-hint", class: "muted small" },
      `Up to ${DISPLAY_NAME_MAX_CHARS} characters, shown instead of your username @${me?.username ?? ""}. Empty shows the username.`,
    ),
    h("div", { class: "row" }, submit),
    status.node,
  );
}

/** "Blocked users": whom the reader blocks, each with Unblock. `changed` hears a block lifted. */
export function blockedSection(changed: () => void): HTMLElement {
  const list = h("ul", { class: "blocked-list", "data-testid": "blocked-users", "aria-labelledby": "blocked-heading" });
  const status = formStatus("blocked-status");
  const render = (users: User[]) => {
    clear(list);
    if (!users.length) list.append(h("li", { class: "muted" }, "You block nobody."));
    for (const u of users) {
      const name = displayName(u);
      list.append(
        h(
          "li",
          { "data-testid": "blocked-user", "data-username": u.username },
          h("span", { title: `@${u.username}`, dir: "auto" }, name),
          name !== u.username ? h("span", { class: "muted small" }, ` @${u.username}`) : null,
          h(
            "button",
            {
              type: "button",
              class: "small-button",
              "data-testid": "unblock",
              "aria-label": `Unblock ${name}`,
              onclick: async () => {
                try {
                  await chatClient.unblockUser({ username: u.username });
                  markBlocked(u.username, false);
                  changed();
                  status.say(`${name} is unblocked.`);
                  await load();
                } catch (e) {
                  status.say(`Could not unblock ${name}: ${describe(e)}`, true);
                }
              },
            },
            "Unblock",
          ),
        ),
      );
    }
  };
  const load = async () => {
    try {
      const res = await chatClient.listBlockedUsers({});
      setBlocked(res.users);
      render(res.users);
    } catch (e) {
      // A server without blocking: nothing to list, nor to offer.
      if (ConnectError.from(e).code === Code.Unimplemented) section.hidden = true;
      else status.say(`Could not list the users you block: ${describe(e)}`, true);
    }
  };
  const section = h(
    "section",
    { class: "account-section", "aria-labelledby": "blocked-heading", "data-testid": "blocked-section" },
    h("h3", { id: "blocked-heading" }, "Blocked users"),
    h("p", { class: "muted" }, "They cannot message you directly or invite you, and their messages in shared rooms are collapsed."),
    list,
    status.node,
  );
  void load();
  return section;
}
