//! Real servers for driver tests: `redis-server` (alone or as a 3-master cluster) on free
//! ports of 127.0.0.1, each with a temporary directory and no persistence. A server is
//! stopped by its own process id when dropped, and its log is printed when the test fails.
//! A missing server binary fails the test with a message saying what to install; it never
//! skips.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; servers that lose a race are retried).
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "breaker-{label}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn require(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = Path::new(dir).join(binary);
        if path.exists() {
            return path;
        }
    }
    panic!("`{binary}` is not installed: install the Debian package `{package}` (see .ci/run)");
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it, made with
/// `openssl` in a new temporary directory: `ca.crt`, `server.crt`, `server.key`.
pub fn make_certificates(label: &str) -> PathBuf {
    let certs = temp_dir(label);
    let openssl = require("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(&certs)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=breaker test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(certs.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("an extension file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    certs
}

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    dir: PathBuf,
    /// Where a TLS server's certificates are, removed with the server.
    certs: Option<PathBuf>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port, waiting until it answers.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`--requirepass x`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                tls_port: None,
                dir: temp_dir("redis"),
                certs: None,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn launch(&mut self) -> Result<(), String> {
        let binary = require("redis-server", "redis-server");
        let log = self.dir.join("redis.log");
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        wait_listening(self.port, self.child.as_mut().expect("started"), &log)
    }

    /// Starts a server that speaks TLS only, with a certificate for 127.0.0.1 signed by a
    /// certificate authority made for it (with `openssl`); returns the authority's PEM.
    pub fn start_tls() -> (RedisServer, Vec<u8>) {
        let certs = make_certificates("redis-tls");
        let path = |f: &str| certs.join(f).display().to_string();
        let tls_port = free_port().to_string();
        let server = RedisServer::start_with(&[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]);
        let ca = std::fs::read(certs.join("ca.crt")).expect("the CA certificate");
        let mut server = server;
        server.tls_port = tls_port.parse().ok();
        server.certs = Some(certs);
        (server, ca)
    }

    /// `rediss://127.0.0.1:TLS_PORT`, for a server from [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("a TLS server")
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (by its process id), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

/// Waits until `port` accepts connections, or the process ends, or 10 s pass.
fn wait_listening(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("port {port} not listening after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server on port {} log ---\n{}",
                self.port,
                self.log()
            );
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(certs) = &self.certs {
            let _ = std::fs::remove_dir_all(certs);
        }
    }
}

/// A Redis Cluster of three masters (no replicas) on 127.0.0.1.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`.
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // Each node keeps its cluster configuration (`nodes.conf`) in its own directory.
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ]));
        }
        let cli = require("redis-cli", "redis-tools");
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let cli = require("redis-cli", "redis-tools");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let out = Command::new(&cli)
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// One member of an etcd cluster started by a test.
struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics`, also when clients speak TLS.
    metrics_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or more members on 127.0.0.1, data on tmpfs where there is one.
/// Members are stopped by their process ids when dropped; their logs are printed when the
/// test fails.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    token: String,
    /// Certificates, when clients must speak TLS.
    tls: Option<PathBuf>,
}

fn etcd_data_dir(label: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "breaker-etcd-{label}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("a data directory");
    dir
}

impl EtcdCluster {
    /// One member.
    pub fn single() -> EtcdCluster {
        Self::start(1)
    }

    /// `n` members, waiting until every member reports itself healthy (a leader exists).
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_inner(n, None)
    }

    /// One member whose clients must speak TLS, with a certificate signed by an authority
    /// made for it; returns the authority's PEM.
    pub fn single_tls() -> (EtcdCluster, Vec<u8>) {
        let certs = make_certificates("etcd-tls");
        let ca = std::fs::read(certs.join("ca.crt")).expect("the CA certificate");
        (Self::start_inner(1, Some(certs)), ca)
    }

    fn start_inner(n: usize, tls: Option<PathBuf>) -> EtcdCluster {
        Self::start_attempt(n, tls, 1)
    }

    fn start_attempt(n: usize, tls: Option<PathBuf>, attempt: u32) -> EtcdCluster {
        let token = format!("breaker-test-{}-{}", std::process::id(), free_port());
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                dir: etcd_data_dir(&format!("m{i}")),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            token,
            tls: tls.clone(),
        };
        for i in 0..n {
            cluster.launch(i, "new");
        }
        match cluster.try_wait_healthy(Duration::from_secs(30)) {
            Ok(()) => cluster,
            // A member that exited lost a race for its ports: start afresh on new ones.
            Err(e) if e.contains("exited") && attempt < 3 => {
                drop(cluster);
                Self::start_attempt(n, tls, attempt + 1)
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn launch(&mut self, i: usize, state: &str) {
        let binary = require("etcd", "etcd-server");
        let initial = self.initial_cluster();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let tls_args: Vec<String> = match &self.tls {
            Some(certs) => vec![
                "--cert-file".into(),
                certs.join("server.crt").display().to_string(),
                "--key-file".into(),
                certs.join("server.key").display().to_string(),
            ],
            None => Vec::new(),
        };
        let m = &mut self.members[i];
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(m.dir.join("etcd.log")).expect("a log file");
        let child = Command::new(binary)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-token",
                &self.token,
            ])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--listen-metrics-urls", &metrics])
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("etcd runs");
        m.child = Some(child);
    }

    /// `GET path` on a member's client port (etcd serves `/health` and `/metrics` there; a
    /// one-line request is all it takes).
    fn http_get(port: u16, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    }

    fn healthy(port: u16) -> bool {
        Self::http_get(port, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    /// Unary gRPC requests member `i` has started to serve, from its own `/metrics`: the
    /// round trips clients made to it (watch streams are not counted).
    pub fn unary_requests(&self, i: usize) -> u64 {
        let body = Self::http_get(self.members[i].metrics_port, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| {
                l.starts_with("grpc_server_started_total{") && l.contains("grpc_type=\"unary\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn wait_healthy(&self) {
        if let Err(e) = self.try_wait_healthy(Duration::from_secs(30)) {
            panic!("{e}");
        }
    }

    /// Waits until every running member is healthy; fails at once when a member exits.
    fn try_wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter() {
            while !Self::healthy(m.metrics_port) {
                let Some(child) = &m.child else { break };
                // `try_wait` needs `&mut`; a member that is gone no longer has its process id.
                if !Path::new(&format!("/proc/{}", child.id())).exists()
                    || std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                        .is_ok_and(|stat| stat.contains(") Z "))
                {
                    let log = std::fs::read_to_string(m.dir.join("etcd.log")).unwrap_or_default();
                    return Err(format!("etcd member {} exited: {log}", m.name));
                }
                if Instant::now() >= deadline {
                    return Err(format!("etcd member {} never became healthy", m.name));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The client endpoints of the members (`http://127.0.0.1:PORT`, or `https://`).
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Kills member `i` by its process id.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again with its data, after [`EtcdCluster::kill`].
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "restart after kill");
        self.launch(i, "existing");
    }

    /// Waits until every running member is healthy again.
    pub fn wait_ready(&self) {
        self.wait_healthy();
    }

    /// The process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.members[i].dir.join("etcd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "--- etcd member {} log (last lines) ---",
                    self.members[i].name
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            self.kill(i);
            let _ = std::fs::remove_dir_all(&self.members[i].dir);
        }
        if let Some(certs) = &self.tls {
            let _ = std::fs::remove_dir_all(certs);
        }
    }
}
