//! The flaky test server as a process, and a client for its control endpoints.

use std::path::Path;
use std::time::Duration;

use crate::procs::Proc;

/// A running flaky server on 127.0.0.1.
pub struct FlakyServer {
    proc: Proc,
    base: String,
    http: ureq::Agent,
}

/// The server's own counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// `GET /call` requests that reached the server since the last reset.
    pub requests: u64,
    /// Those answered with a failure.
    pub failures: u64,
}

impl FlakyServer {
    /// Starts the server binary at `program` on a free port with `args`.
    pub fn start(program: &Path, args: &[&str]) -> FlakyServer {
        let mut all = vec!["--port".to_owned(), "0".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let proc = Proc::spawn("flaky-server", program, &all);
        let line = proc
            .wait_for(Duration::from_secs(10), |l| l.starts_with("listening "))
            .expect("the flaky server starts");
        let addr = line.trim_start_matches("listening ").trim().to_owned();
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        FlakyServer {
            proc,
            base: format!("http://{addr}"),
            http,
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn post(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "POST {url}");
    }

    /// Starts counting afresh.
    pub fn reset(&self) {
        self.post("/reset");
    }

    /// Fails every call (`true`) or answers through the pattern again.
    pub fn set_failing(&self, failing: bool) {
        self.post(if failing {
            "/mode/failing"
        } else {
            "/mode/normal"
        });
    }

    /// The counts since the last reset.
    pub fn stats(&self) -> Stats {
        let url = format!("{}/stats", self.base);
        let body = self
            .http
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&body).expect("stats are JSON");
        Stats {
            requests: json["requests"].as_u64().expect("a request count"),
            failures: json["failures"].as_u64().expect("a failure count"),
        }
    }
}
