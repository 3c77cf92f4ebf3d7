// The fireflies: one light per node, flashing on each beat of that node's own
// playback, and a plot of each node's sync error over the last minute.
//
// A node's beat comes from its flashes ("at swarm instant S I emitted
// position P"): its position now is P + (swarm now − S), and its light is
// brightest as that position crosses each multiple of `BEAT_US`. Nodes in
// step therefore pulse as one; a node that drifts visibly pulses out of
// phase. Every light uses only its own node's flashes: this node's arrive
// live, each peer's come from that peer's heartbeats (forwarded by this node
// with the peer's id), so between heartbeats a peer's beat is extrapolated
// from its own latest flash. A node with no recent flashes is dark.

import { el, hue, micros, replace } from "./dom.js";

/** The beat the lights pulse on: 120 per minute of track time. */
const BEAT_US = 500_000;
/** Sample rates a measured frame rate snaps to. */
const STANDARD_RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000];
/** How long a flash stays valid for extrapolation. */
const STALE_MS = 4000;
/** The plot's window. */
const WINDOW_MS = 60_000;

export class Fireflies {
  constructor(lights, canvas, legend) {
    this.lights = lights;
    this.canvas = canvas;
    this.legend = legend;
    this.anchors = new Map(); // peer id → {position µs, swarm µs, perf ms, flash}
    this.lastFlash = new Map(); // peer id → the previous flash, for the sample rate
    this.rates = new Map(); // peer id → measured sample rate
    this.errors = new Map(); // peer id → {us, perf}: its playback's latest error vs its timeline
    this.series = new Map(); // peer id → [{t, v}]
    this.nodes = [];
    this.swarmBase = null; // {swarm, perf}
    this.lastSample = 0;
    const frame = () => {
      this.animate();
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  /** The node's swarm time read at about this moment. */
  syncSwarm(swarmUs) {
    this.swarmBase = { swarm: swarmUs, perf: performance.now() };
  }

  swarmNow() {
    if (!this.swarmBase) return null;
    return this.swarmBase.swarm + (performance.now() - this.swarmBase.perf) * 1000;
  }

  /**
   * A flash from `peer`'s player: source frame `position` of its track number
   * `track` sounded at swarm instant `swarmUs`. Flashes carry frames, not
   * time, so the sample rate is measured from two flashes of one track and
   * snapped to the nearest standard rate.
   */
  flashFrames(peer, track, position, swarmUs, errorFrames) {
    const last = this.lastFlash.get(peer);
    this.lastFlash.set(peer, { track, position, swarm: swarmUs });
    if (last && last.track === track && swarmUs - last.swarm > 2000) {
      const measured = ((position - last.position) * 1e6) / (swarmUs - last.swarm);
      const rate = STANDARD_RATES.find((r) => Math.abs(measured - r) / r < 0.02);
      if (rate) this.rates.set(peer, rate);
    }
    const rate = this.rates.get(peer);
    if (!rate) return;
    if (typeof errorFrames === "number" && Number.isFinite(errorFrames)) {
      this.errors.set(peer, { us: (errorFrames * 1e6) / rate, perf: performance.now() });
    }
    // Peers' flashes come in bursts (one heartbeat's worth): keep the newest.
    const known = this.anchors.get(peer);
    if (known && known.track === track && known.swarm >= swarmUs) return;
    this.anchors.set(peer, {
      track,
      position: (position * 1e6) / rate,
      swarm: swarmUs,
      perf: performance.now(),
    });
  }

  /**
   * How far `peer`'s playback is from where its timeline says it should be
   * (µs, positive: ahead), from its latest flash; null when it plays nothing.
   */
  playbackError(peer) {
    const e = this.errors.get(peer);
    return e && performance.now() - e.perf < STALE_MS ? e.us : null;
  }

  /** New node list: rebuild the lights, sample the sync errors. */
  update(nodes) {
    this.nodes = nodes;
    this.sample(nodes);
    this.render(nodes);
  }

  sample(nodes) {
    const now = performance.now();
    if (now - this.lastSample < 900) return;
    this.lastSample = now;
    for (const n of nodes) {
      // A playing node's own playback error (none between its flashes, so a
      // line never mixes the two kinds); a node not playing, its clock's error.
      const v = n.playback === "playing" ? this.playbackError(n.id) : n.error;
      if (typeof v !== "number") continue;
      const points = this.series.get(n.id) ?? [];
      points.push({ t: now, v: Math.abs(v) });
      while (points.length && now - points[0].t > WINDOW_MS) points.shift();
      this.series.set(n.id, points);
    }
    const alive = new Set(nodes.map((n) => n.id));
    for (const id of this.series.keys()) if (!alive.has(id)) this.series.delete(id);
  }

  render(nodes) {
    const have = new Map([...this.lights.children].map((c) => [c.dataset.peer, c]));
    const wanted = nodes.map((n) => {
      let light = have.get(n.id);
      if (!light) {
        light = el("div", { class: "firefly", "data-peer": n.id, style: `--hue:${hue(n.id)}` }, [
          el("span", { class: "glow", "aria-hidden": "true" }),
          el("span", { class: "label" }),
        ]);
      }
      light.style.setProperty("--hue", String(hue(n.id)));
      light.querySelector(".label").textContent = n.name;
      light.title = n.name;
      light.dataset.playing = n.playback === "playing" ? "yes" : "no";
      // Whether this light follows recent flashes from the node's own player.
      const anchor = this.anchors.get(n.id);
      light.dataset.flashes = anchor && performance.now() - anchor.perf < STALE_MS ? "yes" : "no";
      return light;
    });
    replace(this.lights, wanted);
    replace(
      this.legend,
      nodes
        .filter((n) => this.series.has(n.id))
        .map((n) =>
          el("li", { style: `--hue:${hue(n.id)}` }, [
            el("span", { class: "swatch", "aria-hidden": "true" }),
            el("span", { class: "name", text: n.name }),
            this.playbackError(n.id) !== null
              ? ` ${micros(this.playbackError(n.id))} (playback)`
              : ` ${micros(n.error)}${n.self ? " (clock)" : " (offset vs this node)"}`,
          ]),
        ),
    );
    this.plot();
  }

  /**
   * Where `node`'s playback is now (µs into its track), from its own latest
   * flash, or null when it has flashed nothing recently.
   */
  positionOf(node, swarm, now) {
    const anchor = this.anchors.get(node.id);
    if (anchor && now - anchor.perf < STALE_MS) return anchor.position + (swarm - anchor.swarm);
    return null;
  }

  /** Sets each light's brightness from its node's beat phase. */
  animate() {
    const swarm = this.swarmNow();
    const now = performance.now();
    for (const light of this.lights.children) {
      const node = this.nodes.find((n) => n.id === light.dataset.peer);
      let level = 0;
      if (node && swarm !== null && node.playback === "playing") {
        const position = this.positionOf(node, swarm, now);
        if (position !== null) {
          const phase = ((position % BEAT_US) + BEAT_US) % BEAT_US;
          level = Math.exp(-phase / 90_000);
        }
      }
      light.style.setProperty("--level", level.toFixed(3));
    }
  }

  /** Draws the sync-error plot (absolute values, shared linear axis). */
  plot() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 160;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    if (!g) return;
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const ink = style.getPropertyValue("--muted").trim() || "#888";
    const now = performance.now();
    let max = 100;
    for (const points of this.series.values()) for (const p of points) max = Math.max(max, p.v);
    max = niceCeiling(max);
    const left = 56;
    const bottom = height - 18;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = ink;
    g.strokeStyle = ink;
    g.globalAlpha = 0.35;
    g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = 6 + ((bottom - 6) * i) / 2;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(width - 4, y);
      g.stroke();
    }
    g.globalAlpha = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    g.fillText(micros(max), left - 6, 6);
    g.fillText(micros(max / 2), left - 6, 6 + (bottom - 6) / 2);
    g.fillText("0", left - 6, bottom);
    g.textAlign = "left";
    g.textBaseline = "alphabetic";
    g.fillText("−60 s", left, height - 3);
    g.textAlign = "right";
    g.fillText("now", width - 4, height - 3);
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const [id, points] of this.series) {
      g.strokeStyle = `hsl(${hue(id)} 75% 50%)`;
      g.beginPath();
      points.forEach((p, i) => {
        const x = left + ((width - 4 - left) * (WINDOW_MS - (now - p.t))) / WINDOW_MS;
        const y = bottom - ((bottom - 6) * Math.min(p.v, max)) / max;
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    }
  }
}

/** 1, 2 or 5 times a power of ten, at least `v`. */
function niceCeiling(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (step * power >= v) return step * power;
  return 10 * power;
}
