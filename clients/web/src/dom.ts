// A tiny helper to build DOM elements without a framework.

type Attr = string | number | boolean | null | undefined | ((ev: never) => unknown);
type Child = Node | string | null | undefined | false;

/**
 * Makes an element: `on*` attributes become listeners, `true` booleans
 * become empty attributes, `false`/null ones are left out. There is no
 * `style` attribute: the server's Content-Security-Policy (src/web.rs)
 * refuses inline styles, so looks belong in style.css (or `node.style`).
 */
export function h(tag: string, attrs: Record<string, Attr> = {}, ...children: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "style") throw new Error("inline style attributes break the Content-Security-Policy: use a class");
    if (typeof v === "function") {
      node.addEventListener(k.slice(2), v as EventListener);
    } else if (k === "hidden") {
      node.hidden = Boolean(v);
    } else {
      node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c);
  }
  return node;
}

export function clear(node: Element): void {
  node.replaceChildren();
}
