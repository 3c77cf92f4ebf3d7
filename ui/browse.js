// Browsing the swarm catalog by artist, then album, then track, with the
// actions each level offers (play an artist or an album, queue an album or
// a track). Names come from the files' tags: text only, never markup.

import { clock, el } from "./dom.js";
import { showCover } from "./covers.js";

const UNKNOWN_ARTIST = "Unknown artist";
const UNKNOWN_ALBUM = "Other tracks";

/**
 * The catalog grouped: artists by name, each with its albums by name (the
 * tracks without an album last), each with its tracks by track number then
 * title.
 */
export function group(tracks) {
  const artists = new Map();
  for (const t of tracks) {
    const artist = typeof t.artist === "string" && t.artist ? t.artist : null;
    const album = typeof t.album === "string" && t.album ? t.album : null;
    const artistKey = artist ?? "";
    if (!artists.has(artistKey)) artists.set(artistKey, { name: artist, albums: new Map() });
    const albums = artists.get(artistKey).albums;
    const albumKey = album ?? "";
    if (!albums.has(albumKey)) albums.set(albumKey, { name: album, tracks: [] });
    albums.get(albumKey).tracks.push(t);
  }
  const byName = (a, b) =>
    a.name === null ? 1 : b.name === null ? -1 : String(a.name).localeCompare(String(b.name));
  return [...artists.values()].sort(byName).map((artist) => ({
    name: artist.name,
    albums: [...artist.albums.values()].sort(byName).map((album) => ({
      name: album.name,
      tracks: album.tracks.sort(
        (a, b) =>
          (a.number ?? Infinity) - (b.number ?? Infinity) ||
          String(a.title).localeCompare(String(b.title)),
      ),
    })),
  }));
}

/**
 * Renders the grouped catalog into `box`. `actions` has `playArtist(name)`,
 * `playAlbum(album, artist)`, `playTrack(id)` and `queue(ids)`; `canPlay`
 * says whether this node takes playback commands; `current` is the track
 * playing.
 */
export function renderBrowse(box, tracks, { actions, canPlay, current }) {
  const artists = group(tracks);
  box.replaceChildren(
    ...artists.map((artist) =>
      el("section", { class: "artist", "data-artist": artist.name ?? "" }, [
        el("div", { class: "artist-head" }, [
          el("h3", { class: "artist-name", text: artist.name ?? UNKNOWN_ARTIST }),
          canPlay && artist.name !== null
            ? el("button", {
                type: "button",
                class: "small play-artist",
                text: "Play artist",
                onclick: () => actions.playArtist(artist.name),
              })
            : null,
        ]),
        ...artist.albums.map((album) => renderAlbum(artist, album, { actions, canPlay, current })),
      ]),
    ),
  );
  return artists;
}

function renderAlbum(artist, album, { actions, canPlay, current }) {
  const ids = album.tracks.map((t) => t.track);
  const pictured = album.tracks.find((t) => t.cover === true);
  const art = el("div", { class: "cover placeholder", "aria-hidden": "true" });
  showCover(art, pictured?.track, Boolean(pictured));
  return el("div", { class: "album", "data-album": album.name ?? "" }, [
    el("div", { class: "album-head" }, [
      art,
      el("div", { class: "album-main" }, [
        el("span", { class: "album-name", text: album.name ?? UNKNOWN_ALBUM }),
        el("span", {
          class: "sub",
          text: `${album.tracks.length} track${album.tracks.length === 1 ? "" : "s"}`,
        }),
      ]),
      canPlay
        ? el("div", { class: "actions" }, [
            album.name !== null
              ? el("button", {
                  type: "button",
                  class: "small play-album",
                  text: "Play album",
                  onclick: () => actions.playAlbum(album.name, artist.name),
                })
              : null,
            el("button", {
              type: "button",
              class: "small queue-album",
              text: "Queue all",
              onclick: () => actions.queue(ids),
            }),
          ])
        : null,
    ]),
    el(
      "ol",
      { class: "album-tracks" },
      album.tracks.map((t) =>
        el("li", { "data-track": t.track, "aria-current": t.track === current ? "true" : null }, [
          el("span", { class: "title", text: t.title || "(untitled)" }),
          el("span", { class: "time", text: clock(t.duration_ms) }),
          canPlay
            ? el("span", { class: "actions" }, [
                el("button", {
                  type: "button",
                  class: "small play",
                  text: "Play",
                  onclick: () => actions.playTrack(t.track),
                }),
                el("button", {
                  type: "button",
                  class: "small queue-add",
                  text: "Queue",
                  onclick: () => actions.queue([t.track]),
                }),
              ])
            : null,
        ]),
      ),
    ),
  ]);
}
