// The "Live" panel: every live source in the swarm (a pipe, an internet
// radio, a program's output) with its level meter, a Play button that has
// every node play it in step, and what this node plays live (or why the
// last live stream stopped). Polls `GET /api/sources` every second; hidden
// when the node does not serve it. Names from the network are only ever
// rendered as text.

import { ApiError, getOptional, post } from "./api.js";
import { el, replace } from "./dom.js";

const $ = (id) => document.getElementById(id);

/** Starts the panel; `onChange` is called after a command (to refresh the rest). */
export function startLive(onChange, notice) {
  const section = $("live");
  let busy = false;

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const report = await getOptional("/api/sources");
      section.hidden = report === null;
      if (report !== null) render(report);
    } catch {
      // The node is away; the header says so.
    } finally {
      busy = false;
    }
  }

  function render(report) {
    const sources = Array.isArray(report.sources) ? report.sources : [];
    const live = report.live || {};
    const playing = live.playing || null;
    $("live-count").textContent = sources.length ? `${sources.length}` : "";
    $("live-empty").hidden = sources.length > 0;
    replace(
      $("sources"),
      sources.map((s) => {
        const on = playing && playing.origin === s.node && playing.name === s.name;
        const level = Math.max(0, Math.min(1, Number(s.level) || 0));
        const state = s.ended
          ? `ended: ${s.problem || "no reason given"}`
          : s.flowing
            ? "audio flowing"
            : "silent";
        return el("li", { class: on ? "source on" : "source", "data-name": s.name }, [
          el("span", { class: "source-name", text: s.name }),
          el("span", { class: "source-node", text: `on ${s.node_name || s.node.slice(0, 12)}` }),
          el("span", { class: "source-kind", text: `${s.kind} · ${s.format}` }),
          el("meter", {
            class: "level",
            min: "0",
            max: "1",
            low: "0.5",
            high: "0.9",
            optimum: "0.3",
            value: level.toFixed(3),
            "aria-label": `level of ${s.name}`,
          }),
          el("span", { class: "source-state", text: state }),
          el("button", {
            type: "button",
            class: "play-live",
            text: on ? "Playing" : "Play",
            disabled: on || s.ended ? true : undefined,
            "aria-label": `play ${s.name} on every node`,
            onclick: () => play(s),
          }),
        ]);
      }),
    );
    const status = $("live-status");
    if (playing) status.textContent = `Playing live: ${playing.name}`;
    else if (live.ended) status.textContent = `Last live stream stopped: ${live.ended}`;
    else status.textContent = "";
  }

  async function play(source) {
    try {
      await post("/api/sources/play", { name: source.name, node: source.node });
      onChange();
      refresh();
    } catch (err) {
      notice(err instanceof ApiError ? err.message : String(err));
    }
  }

  refresh();
  setInterval(refresh, 1000);
}
