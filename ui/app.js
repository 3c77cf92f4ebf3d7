// The Firefly web UI: swarm, library (by artist and album, with covers),
// now playing with its transport and queue, and the fireflies.
//
// It polls the node it was served by (`/api/status` always; `/api/state`,
// `/api/library` and `/api/catalog` where the node serves them) and listens to `/api/events`
// for live state and flashes. Panels whose data the node does not serve are
// hidden. Names from the network are only ever rendered as text.

import { ApiError, connectEvents, del, getOptional, post } from "./api.js";
import { renderBrowse } from "./browse.js";
import { showCover } from "./covers.js";
import { assignHues, clock, el, hue, micros, replace, shortId } from "./dom.js";
import { Fireflies } from "./fireflies.js";
import { startLive } from "./live.js";
import { startZones } from "./zones.js";

const $ = (id) => document.getElementById(id);

/** Everything the page knows; rendered by `render()`. */
const model = {
  status: null, // GET /api/status
  state: null, // GET /api/state (null when not served)
  library: null, // GET /api/library: this node's tracks (null when not served)
  catalog: null, // GET /api/catalog: the swarm's tracks and holders (null when not served)
  serves: { state: undefined, library: undefined, catalog: undefined },
  online: false,
  locked: false, // the node answered 401: it wants a token
  events: false, // the event stream is open
  known: new Map(), // peer id → name, for join/leave messages
  log: [], // recent joins and leaves, newest first
  stateAt: 0, // performance.now() when `state` arrived
  downloads: new Map(), // track id → {chunks_have, chunks_total, …}, live from the event stream
};

const fireflies = new Fireflies($("lights"), $("plot"), $("legend"));

// ---- fetching ---------------------------------------------------------------

async function refresh() {
  try {
    const [status, state] = await Promise.all([
      getOptional("/api/status"),
      model.serves.state === false ? null : getOptional("/api/state"),
    ]);
    if (model.serves.state === undefined) {
      model.serves.state = state !== null;
      // The event stream belongs to the playback API: open it only beside that.
      if (model.serves.state) startEvents();
    }
    model.status = status;
    if (state) setState(state);
    model.locked = false;
    setOnline(true);
  } catch (err) {
    // 401: the node is up but wants its token (printed by `firefly up`).
    model.locked = err instanceof ApiError && err.status === 401;
    setOnline(false);
  }
  render();
}

async function refreshLibrary() {
  if (!model.online) return;
  try {
    const [library, catalog] = await Promise.all([
      model.serves.library === false ? null : getOptional("/api/library"),
      model.serves.catalog === false ? null : getOptional("/api/catalog"),
    ]);
    if (model.serves.library === undefined) model.serves.library = library !== null;
    if (model.serves.catalog === undefined) model.serves.catalog = catalog !== null;
    if (Array.isArray(library)) model.library = library;
    if (Array.isArray(catalog)) model.catalog = catalog;
    render();
  } catch {
    // The next status poll notices the node is gone.
  }
}

function setState(state) {
  model.state = state;
  model.stateAt = performance.now();
  if (typeof state.swarm_time_us === "number") fireflies.syncSwarm(state.swarm_time_us);
}

/** A newer playback report (from a command's answer or the event stream), as of now. */
function adoptPlayback(playback) {
  const swarm = fireflies.swarmNow();
  model.state = { ...model.state, playback };
  if (swarm !== null) model.state.swarm_time_us = Math.round(swarm);
  model.stateAt = performance.now();
}

function setOnline(online) {
  if (online === model.online) return;
  model.online = online;
  if (online) refreshLibrary();
}

// ---- the event stream -------------------------------------------------------

// The node's `/api/events` messages (docs/API.md):
//   {"type":"session", "playback": {...as in GET /api/state}}   the session changed
//   {"type":"flash", "node": peer id, "flash": {"track", "frame", "position", "swarm_us", "error_frames", ...}}
//     node `node`'s player emitted source frame `position` at swarm instant
//     `swarm_us`, `error_frames` off its timeline (this node's flashes live,
//     peers' from their heartbeats)
//   {"type":"downloads", "downloads": [{"track", "chunks_have", "chunks_total", ...}]}
//     the downloads under way now
// Unknown messages are ignored.
function onEvent(message) {
  if (!message || typeof message !== "object") return;
  if (message.type === "session" && message.playback && typeof message.playback === "object") {
    if (model.state) adoptPlayback(message.playback);
    render();
  } else if (message.type === "flash" && message.flash && typeof message.flash === "object") {
    const { track, position, swarm_us: swarm, error_frames: error } = message.flash;
    const node = typeof message.node === "string" ? message.node : model.state?.peer_id;
    if (typeof node === "string" && typeof position === "number" && typeof swarm === "number") {
      fireflies.flashFrames(node, track, position, swarm, error);
    }
  } else if (message.type === "downloads" && Array.isArray(message.downloads)) {
    model.downloads = new Map(
      message.downloads.filter((d) => typeof d?.track === "string").map((d) => [d.track, d]),
    );
    renderLibrary(new Map(nodes().map((n) => [n.id, n.name])));
  }
}

function startEvents() {
  connectEvents(onEvent, (status) => {
    model.events = status === "open";
    renderHeader(nodes());
  });
}

function note(what, name, id) {
  model.log.unshift({ at: new Date(), what, name, id });
  model.log.length = Math.min(model.log.length, 8);
}

// ---- what the page shows ------------------------------------------------------

/** This node and its peers, one shape whatever the node serves. */
function nodes() {
  const { status, state } = model;
  const me = state ?? status;
  if (!me) return [];
  const connected = new Set(status?.connected_peers ?? []);
  const selfNode = {
    id: me.peer_id,
    name: me.name,
    self: true,
    role: state?.role ?? null,
    connection: "this node",
    rtt: null,
    offset: 0,
    error: state?.sync_error_us ?? status?.clock?.sync_error_us ?? null,
    playback: state?.playback?.state ?? null,
    volume: typeof state?.volume === "number" ? state.volume : null,
  };
  const peers = state?.peers
    ? state.peers.map((p) => ({
        id: p.peer_id,
        name: p.name,
        role: p.role,
        connection: p.connection ?? (connected.has(p.peer_id) ? "connected" : "via swarm"),
        rtt: p.rtt_us ?? null,
        offset: p.clock_offset_us ?? null,
        error: p.sync_error_us ?? (typeof p.clock_offset_us === "number" ? p.clock_offset_us : null),
        playback: p.playback ?? null,
        volume: typeof p.volume === "number" ? p.volume : null,
      }))
    : (status?.members ?? []).map((m) => ({
        id: m.peer_id,
        name: m.name,
        role: null,
        connection: connected.has(m.peer_id) ? "connected" : "via swarm",
        rtt: null,
        offset: null,
        error: null,
        playback: null,
        volume: null,
      }));
  peers.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  return [selfNode, ...peers];
}

/**
 * The swarm catalog: every track the swarm holds (`/api/catalog`, else the
 * status report's catalog) with its holders, completed by this node's
 * library (album, duration) where it has the track.
 */
function tracks() {
  const all = new Map();
  const catalog = model.catalog ?? model.status?.catalog ?? [];
  for (const entry of catalog) {
    if (typeof entry?.track !== "string") continue;
    all.set(entry.track, { ...entry, holders: Array.isArray(entry.holders) ? entry.holders : [] });
  }
  for (const t of model.library ?? []) {
    if (typeof t?.track !== "string") continue;
    const known = all.get(t.track);
    all.set(t.track, { ...known, ...t, holders: known?.holders ?? [] });
  }
  return [...all.values()];
}

function trackById(id) {
  return tracks().find((t) => t.track === id) ?? null;
}

/** This node's playback position now, extrapolated from the last state. */
function positionMs() {
  const playback = model.state?.playback;
  if (!playback) return 0;
  const elapsed = playback.state === "playing" ? performance.now() - model.stateAt : 0;
  return (playback.position_ms ?? 0) + elapsed;
}

function render() {
  const list = nodes();
  const names = new Map(list.map((n) => [n.id, n.name]));
  assignHues(list.map((n) => n.id));
  trackMembership(list);
  renderHeader(list);
  renderSwarm(list);
  renderLibrary(names);
  renderNow();
  renderVolumes(list);
  fireflies.update(list);
}

/** Notes who joined or left since the last render (not who was there at first). */
function trackMembership(list) {
  if (list.length === 0) return;
  const first = model.known.size === 0;
  const seen = new Set();
  for (const n of list) {
    seen.add(n.id);
    if (!first && !model.known.has(n.id)) note("joined", n.name, n.id);
    model.known.set(n.id, n.name);
  }
  for (const [id, name] of model.known) {
    if (!seen.has(id)) {
      note("left", name, id);
      model.known.delete(id);
    }
  }
}

function renderHeader(list) {
  const me = list.find((n) => n.self);
  $("me-name").textContent = me ? me.name : "";
  const role = $("me-role");
  role.hidden = !me?.role;
  role.textContent = me?.role ?? "";
  role.dataset.role = me?.role ?? "";
  const link = $("link");
  const state = model.locked ? "locked" : !model.online ? "offline" : model.events ? "live" : "polling";
  link.dataset.state = state;
  link.textContent = {
    locked: "this node needs its token: open this page as …/#token=TOKEN",
    offline: "node unreachable, retrying…",
    live: "live",
    polling: "connected",
  }[state];
  document.title = me ? `Firefly · ${me.name}` : "Firefly";
}

function renderSwarm(list) {
  $("swarm-count").textContent = list.length ? `${list.length} node${list.length === 1 ? "" : "s"}` : "";
  replace(
    $("nodes"),
    list.map((n) =>
      el("li", { class: "node", "data-peer": n.id, style: `--hue:${hue(n.id)}` }, [
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("div", { class: "node-main" }, [
          el("div", { class: "node-name" }, [
            el("span", { class: "name", text: n.name, title: n.name }),
            n.role === "coordinator" ? el("span", { class: "badge", "data-role": "coordinator", text: "coordinator" }) : null,
            n.self ? el("span", { class: "badge", text: "you" }) : null,
          ]),
          el("div", { class: "peer-id", text: n.id }),
        ]),
        el("dl", { class: "figures" }, [
          figure("link", n.connection),
          figure("RTT", n.self ? "–" : micros(n.rtt)),
          figure("offset", n.self ? "0" : micros(n.offset)),
          figure("sync error", micros(n.error)),
          figure("playback error", micros(fireflies.playbackError(n.id))),
          n.playback ? figure("state", n.playback) : null,
        ]),
      ]),
    ),
  );
  replace(
    $("events"),
    model.log.length
      ? model.log.map((e) =>
          el("li", {}, [
            el("time", { text: e.at.toLocaleTimeString() }),
            ` ${e.what}: `,
            el("span", { class: "name", text: e.name }),
          ]),
        )
      : [el("li", { class: "sub", text: "No one has joined or left since this page opened." })],
  );
}

/** What each figure means (shown on hover, and in the glossary under the swarm). */
const MEANING = {
  link: "how this node reaches the peer: direct, relayed, or only through other peers",
  RTT: "round trip of a time exchange with the peer",
  offset: "the peer's clock minus this node's, both read on the swarm timeline",
  "sync error": "how far this node's estimate of the swarm timeline may be off",
  "playback error": "how far the node's sound is from where the timeline says it should be",
};

function figure(label, value) {
  return el("div", { title: MEANING[label] }, [
    el("dt", { text: label }),
    el("dd", { text: value ?? "–" }),
  ]);
}

function renderLibrary(names) {
  const all = tracks();
  const q = query();
  const shown = q
    ? all.filter((t) =>
        [t.title, t.artist, t.album].some((f) => typeof f === "string" && f.toLowerCase().includes(q)),
      )
    : all;
  shown.sort((a, b) => String(a.title).localeCompare(String(b.title)));
  $("library-count").textContent = all.length ? `${all.length} track${all.length === 1 ? "" : "s"}` : "";
  $("library-empty").hidden = all.length > 0 || !model.status;
  $("library-none").hidden = !(all.length > 0 && shown.length === 0);
  $("filter").hidden = all.length === 0;
  const canPlay = model.serves.state === true;
  const current = model.state?.playback?.track;
  renderBrowseView(shown, canPlay, current ?? null);
  replace(
    $("tracks"),
    shown.map((t) => {
      const holders = t.holders.map((h) => names.get(h) ?? shortId(h));
      const progress = downloadProgress(t);
      return el("li", { class: "track", "data-track": t.track, "aria-current": t.track === current ? "true" : null }, [
        el("div", { class: "track-main" }, [
          el("span", { class: "title", text: t.title || "(untitled)", title: t.title }),
          el("span", {
            class: "sub",
            text: [t.artist, t.album].filter((x) => typeof x === "string" && x).join(" · ") || "unknown artist",
          }),
          el("span", { class: "holders", text: holders.length ? `on ${holders.join(", ")}` : "" }),
          progress !== null && progress < 1
            ? el("div", { class: "download" }, [
                el("progress", { max: "1", value: String(progress), "aria-label": "downloaded" }),
                el("span", { class: "sub", text: `downloading ${Math.floor(progress * 100)} %` }),
              ])
            : null,
        ]),
        el("span", { class: "time", text: clock(t.duration_ms) }),
        canPlay
          ? el("div", { class: "actions" }, [
              el("button", { type: "button", class: "play", text: "Play", onclick: () => command("/api/play", { track: t.track }) }),
              el("button", { type: "button", class: "queue-add", text: "Queue", onclick: () => command("/api/queue", { tracks: [t.track] }) }),
            ])
          : null,
      ]);
    }),
  );
}

/** What the browse view last showed, so it is rebuilt only when that changes. */
let browsed = "";

function renderBrowseView(shown, canPlay, current) {
  const key = JSON.stringify([canPlay, current, shown.map((t) => [t.track, t.title, t.artist, t.album, t.number, t.duration_ms, t.cover])]);
  if (key === browsed) return;
  browsed = key;
  const artists = renderBrowse($("artists"), shown, {
    canPlay,
    current,
    actions: {
      playArtist: (artist) => command("/api/play", { artist }),
      playAlbum: (album, artist) => command("/api/play", artist === null ? { album } : { album, artist }),
      playTrack: (track) => command("/api/play", { track }),
      queue: (tracks) => command("/api/queue", { tracks }),
    },
  });
  const albums = artists.reduce((n, a) => n + a.albums.filter((al) => al.name !== null).length, 0);
  $("browse-count").textContent = artists.length
    ? `${artists.length} artist${artists.length === 1 ? "" : "s"}, ${albums} album${albums === 1 ? "" : "s"}`
    : "";
  $("browse").hidden = shown.length === 0 && !query();
}

function query() {
  return $("filter").value.trim().toLowerCase();
}

/**
 * How much of a track this node has while it downloads it (0–1), from the
 * live event stream, else from `/api/library`; null when no download is under way.
 */
function downloadProgress(t) {
  const d = model.downloads.get(t.track) ?? t.download;
  if (!d || typeof d.chunks_have !== "number" || typeof d.chunks_total !== "number") return null;
  if (d.chunks_total <= 0) return 0;
  return Math.max(0, Math.min(1, d.chunks_have / d.chunks_total));
}

/** Volume sliders the person is moving now: the node's reported value waits. */
const adjusting = new Set();
/**
 * Volumes just set (peer id → {volume, until}): shown until the node's own
 * report (a peer's comes with its next heartbeats) has caught up.
 */
const justSet = new Map();

async function setVolume(id, volume) {
  try {
    const answer = await post("/api/volume", { node: id, volume });
    if (typeof answer?.volume === "number") {
      justSet.set(id, { volume: answer.volume, until: performance.now() + 3000 });
    }
  } catch (err) {
    notice(err instanceof Error ? err.message : "the volume could not be set");
  } finally {
    adjusting.delete(id);
    render();
  }
}

/**
 * One volume slider per node, starting at and following the volume each node
 * reports (peers' through their heartbeats). Sliders are updated in place so
 * a drag is never interrupted by a re-render.
 */
function renderVolumes(list) {
  const box = $("volumes");
  const have = new Map([...box.children].map((li) => [li.dataset.peer, li]));
  const rows = list.map((n) => {
    let li = have.get(n.id);
    if (!li) {
      const input = el("input", {
        type: "range",
        min: "0",
        max: "150",
        step: "1",
        value: "100",
        "aria-label": `Volume of ${n.name}`,
      });
      input.addEventListener("input", () => {
        adjusting.add(n.id);
        li.querySelector(".level").textContent = `${input.value} %`;
      });
      input.addEventListener("change", () => setVolume(n.id, Number(input.value) / 100));
      li = el("li", { class: "volume", "data-peer": n.id, style: `--hue:${hue(n.id)}` }, [
        el("span", { class: "name" }),
        input,
        el("span", { class: "level" }),
      ]);
    }
    const input = li.querySelector("input");
    const name = li.querySelector(".name");
    name.textContent = n.self ? `${n.name} (this node)` : n.name;
    name.title = n.name;
    const set = justSet.get(n.id);
    if (set && (performance.now() > set.until || set.volume === n.volume)) justSet.delete(n.id);
    const volume = justSet.has(n.id) ? set.volume : n.volume;
    input.disabled = volume === null;
    // What the node reports (for tests and tools), not what is being dragged.
    li.dataset.volume = n.volume === null ? "" : String(n.volume);
    if (!adjusting.has(n.id)) {
      const percent = volume === null ? 100 : Math.round(volume * 100);
      if (volume !== null && Number(input.value) !== percent) input.value = String(percent);
      li.querySelector(".level").textContent = volume === null ? "no output" : `${percent} %`;
    }
    return li;
  });
  replace(box, rows);
}

function renderNow() {
  const section = $("now");
  section.hidden = !model.state?.playback;
  const playback = model.state?.playback;
  if (!playback) return;
  const track = playback.track ? trackById(playback.track) : null;
  $("now-title").textContent = playback.track ? (track?.title ?? "Unknown track") : "Nothing playing";
  $("now-sub").textContent = track
    ? [track.artist, track.album].filter((x) => typeof x === "string" && x).join(" · ")
    : playback.track
      ? "not in this node’s library yet"
      : "Pick a track in the library.";
  section.dataset.state = playback.state;
  showCover($("now-art"), playback.track, track?.cover === true);
  const queue = Array.isArray(playback.queue) ? playback.queue : [];
  const toggle = $("toggle");
  toggle.disabled = !playback.track && queue.length === 0;
  toggle.textContent = playback.state === "playing" ? "Pause" : playback.state === "paused" ? "Resume" : "Play";
  toggle.dataset.action = playback.state === "playing" ? "pause" : playback.state === "paused" ? "resume" : "play";
  $("next").disabled = queue.length === 0 && !playback.track;
  $("prev").disabled = !playback.track && queue.length === 0;
  $("stop").disabled = playback.state === "stopped" || !playback.track;
  const shuffle = $("shuffle");
  const shuffled = playback.shuffle === true;
  shuffle.setAttribute("aria-pressed", String(shuffled));
  shuffle.textContent = shuffled ? "Shuffle: on" : "Shuffle: off";
  shuffle.hidden = typeof playback.shuffle !== "boolean";
  const repeat = $("repeat");
  const mode = ["off", "one", "all"].includes(playback.repeat) ? playback.repeat : "off";
  repeat.dataset.mode = mode;
  repeat.textContent = `Repeat: ${mode}`;
  repeat.setAttribute("aria-label", `Repeat: ${mode}`);
  repeat.hidden = typeof playback.repeat !== "string";
  const duration = typeof playback.duration_ms === "number" ? playback.duration_ms : (track?.duration_ms ?? null);
  $("now-dur").textContent = clock(duration);
  const seek = $("seek");
  seek.disabled = !playback.track || !duration;
  seek.dataset.duration = duration ? String(duration) : "";
  if (!seeking) {
    const pos = positionMs();
    $("now-pos").textContent = playback.track ? clock(duration ? Math.min(pos, duration) : pos) : "–";
    seek.value = duration ? String(Math.round((Math.min(pos, duration) / duration) * 1000)) : "0";
  }
  renderQueue(queue);
}

/** What the queue panel last showed, so its buttons are not replaced under a click. */
let queued = "";

/** The queue with each entry's title and its move and remove buttons. */
function renderQueue(queue) {
  $("queue-empty").hidden = queue.length > 0;
  $("queue-clear").hidden = queue.length === 0;
  const titles = queue.map((id) => trackById(id)?.title ?? shortId(id));
  const key = JSON.stringify([queue, titles]);
  if (key === queued) return;
  queued = key;
  replace(
    $("queue"),
    queue.map((id, i) =>
      el("li", { class: "queued", "data-track": id, "data-index": String(i) }, [
        el("span", { class: "title", text: titles[i], title: titles[i] }),
        el("span", { class: "actions" }, [
          el("button", {
            type: "button",
            class: "small up",
            text: "↑",
            "aria-label": `Move ${titles[i]} up`,
            disabled: i === 0,
            onclick: () => command("/api/queue/move", { from: i, to: i - 1 }),
          }),
          el("button", {
            type: "button",
            class: "small down",
            text: "↓",
            "aria-label": `Move ${titles[i]} down`,
            disabled: i === queue.length - 1,
            onclick: () => command("/api/queue/move", { from: i, to: i + 1 }),
          }),
          el("button", {
            type: "button",
            class: "small remove",
            text: "✕",
            "aria-label": `Remove ${titles[i]} from the queue`,
            onclick: () => command(`/api/queue/${i}`, undefined, "DELETE"),
          }),
        ]),
      ]),
    ),
  );
}

// ---- commands -----------------------------------------------------------------

let noticeTimer = 0;
function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (box.hidden = true), 6000);
}

async function command(path, body, method = "POST") {
  try {
    const playback = method === "DELETE" ? await del(path) : await post(path, body);
    if (playback && model.state && typeof playback.state === "string") adoptPlayback(playback);
    render();
    refresh();
  } catch (err) {
    notice(err instanceof Error ? err.message : "the command failed");
  }
}

/** Nothing played yet but tracks are queued: the first one plays and leaves the queue. */
async function playQueueHead(track) {
  await command("/api/play", { track });
  if (model.state?.playback?.track === track) command("/api/queue/0", undefined, "DELETE");
}

let seeking = false;
function wireControls() {
  $("filter").addEventListener("input", () => render());
  $("toggle").addEventListener("click", () => {
    const playback = model.state?.playback;
    if (playback?.state === "playing") command("/api/pause");
    else if (playback?.state === "paused") command("/api/resume");
    else if (playback?.track) command("/api/play", { track: playback.track });
    else if (playback?.queue?.length) playQueueHead(playback.queue[0]);
  });
  $("next").addEventListener("click", () => command("/api/next"));
  $("prev").addEventListener("click", () => command("/api/prev"));
  $("stop").addEventListener("click", () => command("/api/stop"));
  $("shuffle").addEventListener("click", () =>
    command("/api/shuffle", { on: model.state?.playback?.shuffle !== true }),
  );
  $("repeat").addEventListener("click", () => {
    const order = ["off", "all", "one"];
    const mode = model.state?.playback?.repeat;
    command("/api/repeat", { mode: order[(order.indexOf(mode) + 1) % order.length] });
  });
  $("queue-clear").addEventListener("click", () => command("/api/queue", undefined, "DELETE"));
  const seek = $("seek");
  seek.addEventListener("input", () => {
    seeking = true;
    const duration = Number(seek.dataset.duration) || 0;
    $("now-pos").textContent = clock((Number(seek.value) / 1000) * duration);
  });
  seek.addEventListener("change", () => {
    seeking = false;
    const duration = Number(seek.dataset.duration) || 0;
    command("/api/seek", { position_ms: Math.round((Number(seek.value) / 1000) * duration) });
  });
}

// ---- start ----------------------------------------------------------------------

wireControls();
startZones(
  $("zones"),
  (id) => trackById(id)?.title || shortId(id),
  notice,
);
await refresh();
await refreshLibrary();
startLive(refresh, notice);
setInterval(refresh, 1000);
setInterval(refreshLibrary, 5000);
setInterval(() => renderNow(), 250);
