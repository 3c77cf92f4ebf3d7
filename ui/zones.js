// The zones view: nodes grouped by zone, each zone with its now playing and
// its group volume; a button per other zone moves a node there, and its
// channels are picked the same way (stereo, left, right, mono); a form moves
// a node into a new zone of the name typed. It polls `/api/zones` on its own
// and sends the zone requests of `docs/API.md`. Names from the network are
// only ever rendered as text. The list is drawn again only when what it shows
// changes (not on every position of the music), so buttons stay put under
// the pointer.

import { ApiError, getOptional, post } from "./api.js";
import { el, replace, shortId } from "./dom.js";

const POLL_MS = 1500;
const CHANNELS = ["stereo", "left", "right", "mono"];

/**
 * Starts the view in `section` (hidden while the node serves no zones).
 * `titleOf(trackId)` names a track; `notice(text)` shows an error.
 */
export function startZones(section, titleOf, notice) {
  const list = section.querySelector("#zone-list");
  const form = section.querySelector("#zone-new");
  const newName = section.querySelector("#zone-new-name");
  const newNode = section.querySelector("#zone-new-node");
  let busy = false; // a request under way: no re-render under the pointer
  let last = null;
  let held = false; // the pointer is down in the view (a slider being dragged)
  section.addEventListener("pointerdown", () => {
    held = true;
  });
  window.addEventListener("pointerup", () => {
    held = false;
  });

  /** Sends one zone request; whether it was taken. */
  async function act(path, body) {
    busy = true;
    try {
      await post(path, body);
      return true;
    } catch (err) {
      notice(err instanceof ApiError ? err.message : "the zone request failed");
      return false;
    } finally {
      busy = false;
      await refresh();
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = newName.value.trim();
    if (!name || !newNode.value) {
      notice("name the new zone and pick a node for it");
      return;
    }
    if (await act("/api/zones", { name, nodes: [newNode.value] })) newName.value = "";
  });

  /** The node picker of the new-zone form: every node, the pick kept. */
  function renderPicker(zones) {
    const picked = newNode.value;
    const nodes = zones.flatMap((z) => (Array.isArray(z.members) ? z.members : []));
    replace(
      newNode,
      nodes.map((m) =>
        el("option", { value: String(m.peer_id), text: `${m.name}${m.me ? " (this node)" : ""}` }),
      ),
    );
    if (nodes.some((m) => String(m.peer_id) === picked)) newNode.value = picked;
  }

  function render(answer) {
    const zones = Array.isArray(answer?.zones) ? answer.zones : [];
    renderPicker(zones);
    const choices = zones.map((z) => ({ id: String(z.id), name: String(z.name ?? z.id) }));
    replace(
      list,
      zones.map((zone) => {
        const id = String(zone.id);
        const playback = zone.playback;
        const playing =
          playback && typeof playback.track === "string" && playback.state !== "stopped"
            ? `${playback.state}: ${titleOf(playback.track)}`
            : "stopped";
        const volume = el("input", {
          type: "range",
          min: "0",
          max: "2",
          step: "0.05",
          value: String(typeof zone.volume === "number" ? zone.volume : 1),
          "aria-label": `Volume of ${zone.name}`,
          class: "zone-volume",
          onchange: (e) => act("/api/zones/volume", { zone: id, volume: Number(e.target.value) }),
        });
        const members = (Array.isArray(zone.members) ? zone.members : []).map((m) => {
          const peer = String(m.peer_id);
          // One button per other zone: a real click moves the node there.
          const moves = choices
            .filter((c) => c.id !== id)
            .map((c) =>
              el("button", {
                type: "button",
                class: "small move-to",
                "data-zone": c.id,
                text: `→ ${c.name}`,
                "aria-label": `Move ${m.name} to ${c.name}`,
                onclick: () => act("/api/zones/move", { node: peer, zone: c.id }),
              }),
            );
          const channels = CHANNELS.map((c) =>
            el("button", {
              type: "button",
              class: "small toggle channel",
              "data-channel": c,
              "aria-pressed": c === m.channel ? "true" : "false",
              text: c,
              onclick: () => act("/api/channel", { node: peer, channel: c }),
            }),
          );
          const coordinator = zone.coordinator === peer ? " (coordinator)" : "";
          return el("li", { class: "zone-member", "data-peer": peer }, [
            el("span", { class: "name", text: `${m.name}${m.me ? " (this node)" : ""}${coordinator}` }),
            el("span", { class: "sub", text: ` ${shortId(peer)} ` }),
            ...moves,
            ...channels,
          ]);
        });
        return el("li", { class: "zone", "data-zone": id }, [
          el("h3", { class: "zone-name", text: String(zone.name ?? id) }),
          el("p", { class: "sub zone-now", text: playing }),
          el("label", { class: "sub" }, ["Group volume ", volume]),
          el("ul", { class: "zone-members" }, members),
        ]);
      }),
    );
  }

  async function refresh() {
    let answer;
    try {
      answer = await getOptional("/api/zones");
    } catch {
      return;
    }
    section.hidden = answer === null;
    if (answer === null || busy) return;
    const text = JSON.stringify(shown(answer));
    if (text === last) return;
    // Not while a slider is held under the pointer.
    if (held) return;
    last = text;
    render(answer);
  }

  /** What the view shows of an answer: the music's position left out. */
  function shown(answer) {
    const zones = Array.isArray(answer?.zones) ? answer.zones : [];
    return zones.map((z) => ({
      ...z,
      playback: z.playback ? { state: z.playback.state, track: z.playback.track } : null,
    }));
  }

  refresh();
  setInterval(refresh, POLL_MS);
  return refresh;
}
