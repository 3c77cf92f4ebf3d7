// The node's HTTP API and event stream, as the UI uses them.
//
// Everything here tolerates a node that does not serve an endpoint yet (the
// panel that needs it is hidden) and a node that restarts (requests fail,
// the event stream reconnects with backoff). No other host is ever contacted.

const TOKEN_KEY = "firefly-token";

/** The bearer token, from `#token=…` in the address or this tab's storage. */
function token() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    const value = decodeURIComponent(match[1]);
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // Storage may be disabled; the hash still carries the token.
    }
    return value;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** An API failure with the node's `{message}` when it sent one. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const auth = token();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 8000);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "the node does not answer");
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data && typeof data.message === "string" ? data.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** `GET path`, or `null` when the node does not serve it (404/405). */
export async function getOptional(path) {
  try {
    return await request("GET", path);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

/** `POST path` with a JSON body; resolves to the node's answer. */
export function post(path, body = {}) {
  return request("POST", path, body);
}

/** `DELETE path`; resolves to the node's answer. */
export function del(path) {
  return request("DELETE", path);
}

/**
 * `GET path` as a Blob (a picture), sent with the token like every request
 * (an `<img>` could not send it); `null` on 404.
 */
export async function getBlob(path) {
  const headers = {};
  const auth = token();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  const response = await fetch(path, { headers });
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(response.status, `HTTP ${response.status}`);
  return response.blob();
}

/**
 * A WebSocket to `/api/events` that reconnects with exponential backoff
 * (0.5 s doubling to 15 s) while the page is open. `onMessage` gets each
 * parsed JSON message; `onStatus` gets "open" or "closed".
 */
export function connectEvents(onMessage, onStatus) {
  let delay = 500;
  let socket = null;
  let stopped = false;
  const open = () => {
    if (stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const auth = token();
    const query = auth ? `?token=${encodeURIComponent(auth)}` : "";
    socket = new WebSocket(`${scheme}//${location.host}/api/events${query}`);
    socket.addEventListener("open", () => {
      delay = 500;
      onStatus("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    });
    socket.addEventListener("close", () => {
      onStatus("closed");
      if (stopped) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    });
    // An error is always followed by close, which schedules the retry.
    socket.addEventListener("error", () => {});
  };
  open();
  return () => {
    stopped = true;
    if (socket) socket.close();
  };
}
