// Cover pictures: fetched once per track with the API's token (an <img>
// cannot send it) and shown from blob: URLs. A track held only by peers
// gets its cover through this node's API too (the node fetches it from a
// holder); tracks without one keep a placeholder.

import { getBlob } from "./api.js";
import { el } from "./dom.js";

/** Most pictures kept; past it the cache starts over. */
const MAX_CACHED = 500;
/** track id → Promise of a blob: URL, or null when there is none. */
const cache = new Map();

function urlOf(track) {
  let url = cache.get(track);
  if (!url) {
    if (cache.size >= MAX_CACHED) {
      for (const old of cache.values()) old.then((u) => u && URL.revokeObjectURL(u));
      cache.clear();
    }
    url = getBlob(`/api/cover/${encodeURIComponent(track)}`)
      .then((blob) => (blob ? URL.createObjectURL(blob) : null))
      .catch(() => null);
    cache.set(track, url);
  }
  return url;
}

/**
 * Shows the cover of `track` in `box` (an element with class `cover`) when
 * `has` says the track has one; otherwise, or until it arrives, the
 * placeholder.
 */
export function showCover(box, track, has) {
  const want = has && typeof track === "string" ? track : "";
  if (box.dataset.cover === want) return;
  box.dataset.cover = want;
  box.classList.add("placeholder");
  box.replaceChildren();
  if (!want) return;
  urlOf(want).then((url) => {
    if (!url || box.dataset.cover !== want) return;
    box.classList.remove("placeholder");
    box.replaceChildren(el("img", { src: url, alt: "", "data-track": want }));
  });
}
