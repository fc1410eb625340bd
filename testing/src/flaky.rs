//! The flaky HTTP test server's service, usable in a thread (examples) or as the
//! `flaky-server` binary (tests): `GET /call` answers through the intermittent failer,
//! `GET /stats` gives its counts as JSON, `POST /reset` starts them again, and
//! `POST /mode/normal` or `POST /mode/failing` switch every call to fail or not. It listens
//! on 127.0.0.1 only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::IntermittentFailer;
use tiny_http::{Header, Method, Response, Server};

/// A bound flaky server, not yet serving.
pub struct FlakyService {
    server: Server,
    addr: SocketAddr,
    failer: IntermittentFailer,
    failing: AtomicBool,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl FlakyService {
    /// Binds 127.0.0.1:`port` (0 picks a free port).
    pub fn bind(
        port: u16,
        failer: IntermittentFailer,
        failing: bool,
    ) -> Result<FlakyService, Box<dyn std::error::Error + Send + Sync>> {
        let server = Server::http(("127.0.0.1", port))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or("an IP listener has an IP address")?;
        Ok(FlakyService {
            server,
            addr,
            failer,
            failing: AtomicBool::new(failing),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests until the process ends.
    pub fn serve(self) {
        let json = Header::from_bytes("Content-Type", "application/json").expect("a valid header");
        for request in self.server.incoming_requests() {
            let response = match (request.method(), request.url()) {
                (Method::Get, "/call") => {
                    self.requests.fetch_add(1, Ordering::SeqCst);
                    let ok = !self.failing.load(Ordering::SeqCst) && self.failer.call().is_ok();
                    if ok {
                        Response::from_string("ok").with_status_code(200)
                    } else {
                        self.failures.fetch_add(1, Ordering::SeqCst);
                        Response::from_string("injected failure").with_status_code(503)
                    }
                }
                (Method::Get, "/stats") => {
                    let failing = self.failing.load(Ordering::SeqCst);
                    let body = serde_json::json!({
                        "requests": self.requests.load(Ordering::SeqCst),
                        "failures": self.failures.load(Ordering::SeqCst),
                        "mode": if failing { "failing" } else { "normal" },
                    });
                    Response::from_string(body.to_string()).with_header(json.clone())
                }
                (Method::Post, "/reset") => {
                    self.requests.store(0, Ordering::SeqCst);
                    self.failures.store(0, Ordering::SeqCst);
                    self.failer.reset();
                    Response::from_string("reset")
                }
                (Method::Post, "/mode/normal") => {
                    self.failing.store(false, Ordering::SeqCst);
                    Response::from_string("normal")
                }
                (Method::Post, "/mode/failing") => {
                    self.failing.store(true, Ordering::SeqCst);
                    Response::from_string("failing")
                }
                _ => Response::from_string("not found").with_status_code(404),
            };
            let _ = request.respond(response);
        }
    }

    /// Serves on a thread of its own; returns the address.
    pub fn spawn(self) -> SocketAddr {
        let addr = self.addr;
        std::thread::spawn(move || self.serve());
        addr
    }
}
