//! `breaker dashboard` for real: the dashboard process on a SQLite file with a running
//! agent, headless Chromium (Debian package `chromium`, which `cargo xtask test` installs)
//! driven through the DevTools protocol, a trip made from another process (the CLI), and
//! the page's DOM read back: it shows the trip within a second, with the state written out.
//! On SQLite and on Redis. A screenshot is kept in the target directory
//! (`dashboard-trip-sqlite.png`, `-redis.png`) as a CI artefact.
//! Control actions without the token are refused.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breaker_testing::servers::free_port;
use serde_json::{Value, json};

/// A child process this test started, stopped by its own process id when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn breaker_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_breaker"))
        .args(args)
        .output()
        .expect("the CLI runs")
}

/// Starts `breaker dashboard` and waits until it answers.
fn dashboard(backend: &str, token: Option<&str>) -> (Started, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_breaker"));
    cmd.args(["--backend", backend, "dashboard", "--listen", &listen]);
    if let Some(token) = token {
        cmd.args(["--control-token", token]);
    }
    let child = Started(
        cmd.stderr(Stdio::null())
            .spawn()
            .expect("the dashboard runs"),
    );
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{base}/api/config")).call().is_err() {
        assert!(Instant::now() < deadline, "the dashboard never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, base)
}

/// Headless Chromium on `url`, and a DevTools connection to its page.
struct Browser {
    _process: Started,
    socket: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1200,800",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                url,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium runs (Debian package `chromium`)");
        let stderr = child.stderr.take().unwrap();
        let process = Started(child);
        // DevTools says where it listens; the rest of its chatter is drained.
        let mut lines = BufReader::new(stderr).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("DevTools listening on"));
        assert!(listening, "chromium's DevTools never listened");
        std::thread::spawn(move || for _ in lines {});
        let deadline = Instant::now() + Duration::from_secs(20);
        let page = loop {
            let text = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            let list: Value = serde_json::from_str(&text).unwrap();
            let page = list
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["type"] == "page");
            if let Some(page) = page.filter(|p| p["url"].as_str().unwrap().starts_with(url)) {
                break page["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no page for {url}: {list}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(page).expect("DevTools connects");
        let socket = unwrap_plain(socket);
        Browser {
            _process: process,
            socket,
            next_id: 1,
        }
    }

    /// Calls a DevTools method and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }
}

/// The plain TCP stream under a client socket (no TLS: DevTools listens on loopback).
fn unwrap_plain(
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) -> tungstenite::WebSocket<std::net::TcpStream> {
    let config = *socket.get_config();
    match socket.into_inner() {
        tungstenite::stream::MaybeTlsStream::Plain(stream) => {
            tungstenite::WebSocket::from_raw_socket(
                stream,
                tungstenite::protocol::Role::Client,
                Some(config),
            )
        }
        _ => unreachable!("DevTools speaks plain WebSocket on loopback"),
    }
}

/// Waits until `expression` evaluates to `want` in the page; returns how long it took.
fn until(browser: &mut Browser, expression: &str, want: &Value, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = browser.eval(expression);
        if &got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the page never showed {want} for `{expression}` (last: {got})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_dashboard_shows_a_trip_on_sqlite_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    let agent =
        shared_breaker::sqlite::breaker(&path, "payments", shared_breaker::Policy::default())
            .unwrap();
    shows_a_trip(&format!("sqlite://{}", path.display()), &agent, "sqlite");
}

#[test]
fn the_dashboard_shows_a_trip_on_redis_within_a_second() {
    let redis = breaker_testing::servers::RedisServer::start();
    let driver = shared_breaker::redis::RedisDriver::open(&redis.url()).unwrap();
    let agent = shared_breaker::Breaker::builder("payments", driver)
        .build()
        .unwrap();
    shows_a_trip(&redis.url(), &agent, "redis");
}

/// The page on `backend`, where `agent` (a breaker called `payments`) runs, shows a trip
/// made by another process within a second; the screenshot is `dashboard-trip-LABEL.png`.
fn shows_a_trip(backend: &str, agent: &shared_breaker::Breaker, label: &str) {
    agent.call_blocking(|| Ok::<(), ()>(())).unwrap();
    agent.flush_blocking().unwrap();
    let (_dashboard, base) = dashboard(backend, None);
    let mut browser = Browser::open(&format!("{base}/"));
    let state = "document.querySelector('tr[data-breaker=\"payments\"]')?.dataset.state ?? null";
    until(
        &mut browser,
        state,
        &json!("closed"),
        Duration::from_secs(20),
    );
    let live = "document.getElementById('status').textContent";
    until(
        &mut browser,
        live,
        &json!("live; read-only"),
        Duration::from_secs(20),
    );
    assert_eq!(
        browser.eval("document.getElementById('control').hidden"),
        json!(true),
        "read-only: no control"
    );

    // A trip from another process: the CLI.
    let tripped = breaker_cli(&["--backend", backend, "trip", "payments"]);
    assert!(tripped.status.success());
    let took = until(
        &mut browser,
        state,
        &json!("forced_open"),
        Duration::from_secs(5),
    );
    assert!(took < Duration::from_secs(1), "shown after {took:?}");
    // Written out, not only coloured, and on the timeline.
    let shown = "document.querySelector('tr[data-breaker=\"payments\"] .state').textContent";
    assert_eq!(browser.eval(shown), json!("forced_open"));
    let timeline = "[...document.querySelectorAll('#timeline li')].map(li => li.dataset.to)";
    assert!(
        browser
            .eval(timeline)
            .as_array()
            .unwrap()
            .contains(&json!("forced_open")),
        "the timeline shows the trip"
    );
    let shot = browser.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::write(target.join(format!("dashboard-trip-{label}.png")), png).unwrap();

    // Read-only: an action is refused, and changes nothing.
    let refused = ureq::post(&format!("{base}/api/breakers/payments/reset")).send_empty();
    assert!(
        matches!(refused, Err(ureq::Error::StatusCode(403))),
        "{refused:?}"
    );
}

#[test]
fn control_actions_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    let backend = format!("sqlite://{}", path.display());
    let agent = shared_breaker::sqlite::breaker(&path, "orders", shared_breaker::Policy::default())
        .unwrap();
    agent.call_blocking(|| Ok::<(), ()>(())).unwrap();
    agent.flush_blocking().unwrap();
    let (_dashboard, base) = dashboard(&backend, Some("let-me-in"));
    let url = format!("{base}/api/breakers/orders/trip");
    for header in [None, Some("Bearer wrong"), Some("let-me-in")] {
        let mut request = ureq::post(&url);
        if let Some(h) = header {
            request = request.header("Authorization", h);
        }
        let refused = request.send_empty();
        assert!(
            matches!(refused, Err(ureq::Error::StatusCode(403))),
            "{header:?}: {refused:?}"
        );
    }
    let mut done = ureq::post(&url)
        .header("Authorization", "Bearer let-me-in")
        .send_empty()
        .expect("with the token");
    let row: Value = serde_json::from_str(&done.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(row["state"], "forced_open");
    assert_eq!(
        agent.refresh_blocking().unwrap(),
        shared_breaker::State::ForcedOpen
    );
}
