// Small DOM helpers. Every piece of data reaches the page through
// `textContent` or an attribute set with `setAttribute`, never as HTML.

/** Creates `tag` with attributes (`class`, `text`, others as attributes) and children. */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function")
      node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Replaces the children of `parent` with `children`. */
export function replace(parent, children) {
  parent.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/** `m:ss` (or `h:mm:ss`) for a duration in milliseconds; "–" when unknown. */
export function clock(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return "–";
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** A microsecond figure for people: "850 µs", "12.3 ms", "1.20 s"; "–" when unknown. */
export function micros(us) {
  if (typeof us !== "number" || !Number.isFinite(us)) return "–";
  const a = Math.abs(us);
  if (a < 1000) return `${Math.round(us)} µs`;
  if (a < 1e6) return `${(us / 1000).toFixed(a < 1e4 ? 2 : 1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

/** Well-separated hues, handed out in peer-id order. */
const PALETTE = [42, 205, 300, 130, 10, 255, 170, 80];
let assigned = new Map();

/**
 * Gives each node of the swarm its own colour: peers sorted by id take the
 * palette in turn, so every page of the swarm colours a node alike.
 */
export function assignHues(ids) {
  const sorted = [...new Set(ids)].sort();
  assigned = new Map(sorted.map((id, i) => [id, PALETTE[i % PALETTE.length]]));
}

/** The hue (0–359) of a peer id: its assigned one, else one from a hash of the id. */
export function hue(id) {
  const given = assigned.get(id);
  if (given !== undefined) return given;
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}

/** The short form of a peer id shown beside names: its last 6 characters. */
export function shortId(id) {
  return typeof id === "string" ? `…${id.slice(-6)}` : "";
}
