//! A tiny Chrome DevTools Protocol client for the browser tests: headless
//! Chromium with `--remote-debugging-port=0`, one WebSocket to the browser,
//! flat sessions per page, `Runtime.evaluate` and real mouse clicks.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A headless Chromium driven over CDP; killed on drop.
pub(crate) struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
    /// Console lines Chromium logged (`:CONSOLE`), collected by a thread.
    console: mpsc::Receiver<String>,
}

/// One page (target) of the browser.
pub(crate) struct Page {
    session: String,
}

impl Browser {
    /// Starts `binary` headless at `width`×`height` and connects to it.
    pub(crate) fn start(binary: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (url_tx, url_rx) = mpsc::channel();
        let (console_tx, console) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = url_tx.send(url.trim().to_string());
                }
                if line.contains(":CONSOLE") {
                    let _ = console_tx.send(line);
                }
            }
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address within 30 s");
        let (socket, _) = tungstenite::connect(url.as_str()).unwrap();
        Browser {
            child,
            socket,
            next_id: 1,
            _profile: profile,
            console,
        }
    }

    /// Sends one command (in `session`, if any) and waits for its answer.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).unwrap();
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method} failed: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page.
    pub(crate) fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        Page {
            session: attached["sessionId"].as_str().unwrap().to_string(),
        }
    }

    /// Evaluates `expression` in `page`: its value (by value, JSON), or the
    /// exception it threw.
    fn try_eval(&mut self, page: &Page, expression: &str) -> Result<Value, Value> {
        let result = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` in `page`; its value (by value, JSON).
    pub(crate) fn eval(&mut self, page: &Page, expression: &str) -> Value {
        self.try_eval(page, expression)
            .unwrap_or_else(|exception| panic!("{expression} threw: {exception}"))
    }

    /// Polls `expression` until it is truthy or `limit` passes; its last
    /// value. While the page is still loading the expression may throw; that
    /// counts as not yet.
    pub(crate) fn wait(&mut self, page: &Page, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.try_eval(page, expression).unwrap_or(Value::Null);
            let truthy = !matches!(value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A real left click (press and release) at the centre of the element
    /// `selector` finds, after scrolling it into view.
    pub(crate) fn click(&mut self, page: &Page, selector: &str) {
        let expression = format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             const x = r.x + r.width / 2, y = r.y + r.height / 2; \
             const top = document.elementFromPoint(x, y); \
             return top && (top === e || e.contains(top)) ? [x, y] : null; }})()"
        );
        // The page re-renders its lists as state arrives, so the element may
        // be replaced between lookups, or moved by a card above it that grew:
        // look again until it is there, nothing else is on top of it, and it
        // stood at the same place on two lookups 100 ms apart (a press sent
        // while a card appears above lands on whatever moved under it).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut before: Option<(f64, f64)> = None;
        let (x, y) = loop {
            let at = self.eval(page, &expression);
            let now = at[0].as_f64().zip(at[1].as_f64());
            if let Some(here) = now
                && before == Some(here)
            {
                break here;
            }
            before = now;
            assert!(
                Instant::now() < deadline,
                "no element matches {selector} to click"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                Some(&page.session),
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Every console line logged so far.
    pub(crate) fn console(&self) -> Vec<String> {
        self.console.try_iter().collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
