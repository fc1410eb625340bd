//! The etcd driver of **breaker**: a fleet shares breakers through a consensus store.
//!
//! - A compare-and-swap is one etcd transaction guarded by the key's revision (or by its
//!   absence); its expiry is an etcd lease, so the store itself removes idle records.
//! - The open period and half-open probe leases are timers kept by etcd: the write that
//!   starts one also puts a key attached to an etcd lease of its duration (see `timers`),
//!   so the cluster's leader, not any agent's clock, decides when it ends. TTLs are whole
//!   seconds, rounded up; etcd checks them every 500 ms; a leader change restarts them.
//! - Versions are etcd revisions: they only grow, store-wide, and are never reused.
//! - Changes are pushed to every agent through one watch on the key prefix, re-established
//!   after a disconnect from the last revision seen, so no change is missed; a watch event
//!   carries the record, so pushes cost no round trip.
//! - Several endpoints (a cluster), user and password; secrets never appear in `Debug`
//!   output or errors. Every call has a deadline, so an unreachable cluster or one without
//!   quorum hands over to the breaker's back-end failure policy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use breaker_driver_etcd::{Breaker, EtcdDriver, Policy};
//!
//! let driver = EtcdDriver::connect(&["http://127.0.0.1:2379"], Duration::from_secs(2)).await?;
//! let breaker = Breaker::builder("ledger", driver).policy(Policy::default()).build()?;
//! # Ok(()) }
//! ```

mod timers;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use breaker_core::{
    self, BackendError, BackendFailure, Breaker, BreakerBuilder, BuildError, Clock, Error, Event,
    ManualClock, Outcome, Permit, Policy, PolicyError, Rejected, State, SystemClock,
};
use breaker_core::{
    ChangeSink, Driver, DriverError, DriverErrorKind, Name, Swap, Timer, Versioned, Watch,
    redact_url,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::OnceCell;

use breaker_runtime::on_runtime;

/// How an [`EtcdDriver`] connects.
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Namespace of this driver's keys: `PREFIX/NAME`. Default `breaker`.
    pub prefix: String,
    /// Deadline for making a connection.
    pub connect_timeout: Duration,
    /// User and password, if the cluster has authentication on.
    pub credentials: Option<(String, String)>,
    /// For `https://` endpoints: the certificate authority (PEM) that signed the members'
    /// certificates, instead of the system's trust store.
    pub tls_root_cert: Option<Vec<u8>>,
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: "breaker".into(),
            connect_timeout: Duration::from_secs(2),
            credentials: None,
            tls_root_cert: None,
        }
    }
}

impl EtcdOptions {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates as `user` with `password`.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Trusts the certificate authority `pem` for `https://` endpoints.
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Sets the deadline for making a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// A driver over an etcd cluster. Clones share the connection.
#[derive(Clone)]
pub struct EtcdDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    endpoints: Vec<String>,
    options: EtcdOptions,
    /// `PREFIX/`.
    pub(crate) dir: String,
    client: OnceCell<Client>,
    /// Leases by their TTL in seconds, reused while they have at least half their TTL left,
    /// so that a write costs one round trip and not two.
    leases: Mutex<HashMap<i64, (i64, Instant)>>,
    pub(crate) watches: Arc<breaker_runtime::watchers::Watchers>,
}

impl fmt::Debug for EtcdDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDriver")
            .field("endpoints", &self.inner.endpoints)
            .field("options", &self.inner.options)
            .finish()
    }
}

fn config(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::Config, message)
}

/// A driver error for an etcd error met while doing `what`.
pub(crate) fn error(endpoints: &[String], what: &str, e: etcd_client::Error) -> DriverError {
    use etcd_client::Error as E;
    // gRPC status codes, which are the same in every gRPC implementation.
    const INVALID_ARGUMENT: i32 = 3;
    const DEADLINE_EXCEEDED: i32 = 4;
    const PERMISSION_DENIED: i32 = 7;
    const UNAVAILABLE: i32 = 14;
    const UNAUTHENTICATED: i32 = 16;
    let kind = match &e {
        E::GRpcStatus(s) => match i32::from(s.code()) {
            // etcd answers a wrong user or password with an invalid argument.
            UNAUTHENTICATED | PERMISSION_DENIED | INVALID_ARGUMENT => DriverErrorKind::Config,
            DEADLINE_EXCEEDED => DriverErrorKind::Timeout,
            UNAVAILABLE => DriverErrorKind::Unavailable,
            _ => DriverErrorKind::Other,
        },
        E::TransportError(_) | E::IoError(_) => DriverErrorKind::Unavailable,
        E::InvalidArgs(_) | E::InvalidUri(_) => DriverErrorKind::Config,
        _ => DriverErrorKind::Other,
    };
    // A gRPC status prints as a debug dump of its fields; what the server said is enough.
    let said = match &e {
        E::GRpcStatus(status) => format!("{} ({:?})", status.message(), status.code()),
        other => other.to_string(),
    };
    DriverError::new(
        kind,
        redact_url(&format!("etcd {}: {what}: {said}", endpoints.join(","))),
    )
}

/// `[http://|https://]HOST:PORT`, with a host and a numeric port.
/// An endpoint without its user information, and the user and password it held.
fn split_credentials(endpoint: &str) -> (String, Option<(String, String)>) {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), endpoint),
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let credentials = userinfo
                .split_once(':')
                .map(|(user, password)| (user.to_owned(), password.to_owned()));
            (format!("{scheme}{host}"), credentials)
        }
        None => (endpoint.to_owned(), None),
    }
}

fn valid_endpoint(endpoint: &str) -> bool {
    let rest = match endpoint.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(_) => return false,
        None => endpoint,
    };
    match rest.trim_end_matches('/').rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// An error that an election in progress explains: trying again soon may succeed.
fn transient(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    text.contains("leader changed") || text.contains("no leader")
}

impl EtcdDriver {
    /// A driver for the cluster at `endpoints` (`http://host:2379`, ...). Nothing is sent
    /// until the first operation; see [`EtcdDriver::connect`] to check the cluster at once.
    ///
    /// An endpoint may carry the user and password (`http://user:password@host:2379`): they
    /// are taken out of it into the options' credentials (unless those are set already), so
    /// that no address the driver keeps, shows or reports holds a secret.
    pub fn open(endpoints: &[&str], mut options: EtcdOptions) -> Result<Self, DriverError> {
        if endpoints.is_empty() {
            return Err(config("etcd: no endpoint given".into()));
        }
        let mut plain = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let (endpoint, credentials) = split_credentials(e);
            if !valid_endpoint(&endpoint) {
                return Err(config(format!(
                    "etcd: malformed endpoint {:?}: expected http://HOST:PORT or https://HOST:PORT",
                    redact_url(e)
                )));
            }
            if options.credentials.is_none() {
                options.credentials = credentials;
            }
            plain.push(endpoint);
        }
        breaker_core::check_prefix("etcd", &options.prefix)?;
        Ok(EtcdDriver {
            inner: Arc::new(Inner {
                endpoints: plain,
                dir: timers::dir_of(&options.prefix),
                options,
                client: OnceCell::new(),
                leases: Mutex::new(HashMap::new()),
                watches: Arc::default(),
            }),
        })
    }

    /// [`EtcdDriver::open`] with the default options, then a first request within `timeout`:
    /// the client connects lazily, so only a request tells a wrong or dead endpoint.
    pub async fn connect(endpoints: &[&str], timeout: Duration) -> Result<Self, DriverError> {
        Self::connect_with(endpoints, EtcdOptions::default(), timeout).await
    }

    /// [`EtcdDriver::connect`] with options.
    pub async fn connect_with(
        endpoints: &[&str],
        options: EtcdOptions,
        timeout: Duration,
    ) -> Result<Self, DriverError> {
        let driver = Self::open(endpoints, options)?;
        let probe = Name::new("connect-probe").expect("a valid name");
        driver.load(&probe, timeout).await?;
        Ok(driver)
    }
}

impl Inner {
    pub(crate) async fn client(&self) -> Result<Client, DriverError> {
        self.client
            .get_or_try_init(|| async {
                let mut options = ConnectOptions::new()
                    .with_connect_timeout(self.options.connect_timeout)
                    .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
                if let Some((user, password)) = &self.options.credentials {
                    options = options.with_user(user.clone(), password.clone());
                }
                if let Some(pem) = &self.options.tls_root_cert {
                    let ca = etcd_client::Certificate::from_pem(pem);
                    options = options.with_tls(etcd_client::TlsOptions::new().ca_certificate(ca));
                }
                Client::connect(&self.endpoints, Some(options))
                    .await
                    .map_err(|e| error(&self.endpoints, "connect", e))
            })
            .await
            .cloned()
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.dir)
    }

    /// Runs `op` until it gets past members that cannot be reached (the client spreads
    /// requests over every endpoint, so another attempt goes to another member) and past a
    /// leader election. A write retried after an election may have been applied the first
    /// time; `swap_now` recognises its own write in the conflict that follows.
    pub(crate) async fn failover<T, Fut>(
        &self,
        what: &str,
        mut op: impl FnMut(Client) -> Fut,
    ) -> Result<T, DriverError>
    where
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = self.client().await?;
        let mut attempts = self.endpoints.len() * 2 + 20;
        loop {
            match op(client.clone()).await {
                Err(e) if attempts > 1 && e.to_string().contains("tcp connect error") => {
                    attempts -= 1;
                }
                // An election in progress: the cluster has quorum and answers again shortly.
                // (The operation's deadline bounds the waiting.)
                Err(e) if attempts > 1 && transient(&e) => {
                    attempts -= 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => return other.map_err(|e| error(&self.endpoints, what, e)),
            }
        }
    }

    /// The two reads that make up a breaker's stored state: its record and its timers.
    fn reads(key: &str) -> [TxnOp; 2] {
        [
            TxnOp::get(key, None),
            TxnOp::get(
                timers::dir_of(key),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        ]
    }

    /// The record and running timers that the reads of [`Inner::reads`] returned.
    fn stored(&self, responses: Vec<TxnOpResponse>) -> Option<Versioned> {
        let mut gets = responses.into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
        let record = gets.next()?;
        let kv = record.kvs().first()?;
        let running = gets
            .next()
            .map(|found| {
                found
                    .kvs()
                    .iter()
                    .filter_map(|kv| match timers::Key::of(&self.dir, kv, true)? {
                        timers::Key::Timer(_, timer) => Some(timer),
                        timers::Key::Record(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Versioned::new(kv.mod_revision() as u64, kv.value().to_vec()).with_timers(running))
    }

    /// The record of `name` with its running timers, read in one transaction.
    pub(crate) async fn load_now(&self, name: &str) -> Result<Option<Versioned>, DriverError> {
        let key = self.key(name);
        let resp = self
            .failover("load", |mut c| {
                let txn = Txn::new().and_then(Self::reads(&key));
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(self.stored(resp.op_responses()))
    }

    /// A lease of its own for each timer, of the timer's duration.
    async fn timer_puts(
        &self,
        key: &str,
        timers: &[(Timer, Duration)],
    ) -> Result<Vec<TxnOp>, DriverError> {
        let dir = timers::dir_of(key);
        let mut puts = Vec::with_capacity(timers.len());
        for (timer, duration) in timers {
            let secs = timers::ttl_seconds(*duration);
            let granted = self
                .failover("lease grant", |mut c| async move {
                    c.lease_grant(secs, None).await
                })
                .await?;
            puts.push(TxnOp::put(
                timers::key(&dir, timer),
                Vec::new(),
                Some(PutOptions::new().with_lease(granted.id())),
            ));
        }
        Ok(puts)
    }

    /// A lease of `ttl` (rounded up to whole seconds), reused while it has at least half of
    /// it left.
    async fn lease(&self, ttl: Duration) -> Result<i64, DriverError> {
        let secs = timers::ttl_seconds(ttl);
        let now = Instant::now();
        if let Some(&(id, until)) = self.leases.lock().unwrap().get(&secs)
            && until.saturating_duration_since(now) >= Duration::from_secs(secs as u64) / 2
        {
            return Ok(id);
        }
        let granted = self
            .failover("lease grant", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let until = now + Duration::from_secs(granted.ttl().max(1) as u64);
        self.leases
            .lock()
            .unwrap()
            .insert(secs, (granted.id(), until));
        Ok(granted.id())
    }

    async fn swap_now(
        &self,
        name: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: &[(Timer, Duration)],
    ) -> Result<Swap, DriverError> {
        let key = self.key(name);
        // The timers' own leases first: the write and the timers then land together or not
        // at all. A lease granted for a write that loses its race lapses unused.
        let timer_puts = self.timer_puts(&key, timers).await?;
        let guard = match expected {
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Some(v) => Compare::mod_revision(key.clone(), CompareOp::Equal, v as i64),
        };
        let mut put = match ttl {
            Some(ttl) => Some(PutOptions::new().with_lease(self.lease(ttl).await?)),
            None => None,
        };
        let mut attempt = 0;
        let tries = std::sync::atomic::AtomicU32::new(0);
        let resp = loop {
            let mut writes = vec![TxnOp::put(key.clone(), value.clone(), put.clone())];
            writes.extend(timer_puts.iter().cloned());
            let txn = Txn::new()
                .when([guard.clone()])
                .and_then(writes)
                .or_else(Self::reads(&key));
            match self
                .failover("compare-and-swap", |mut c| {
                    tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await
            {
                Ok(resp) => break resp,
                // A cached lease that the cluster let lapse (it was down for longer than the
                // lease): grant afresh, once.
                Err(e)
                    if attempt == 0
                        && ttl.is_some()
                        && e.to_string().contains("lease not found") =>
                {
                    attempt += 1;
                    self.leases.lock().unwrap().clear();
                    let ttl = ttl.expect("checked above");
                    put = Some(PutOptions::new().with_lease(self.lease(ttl).await?));
                }
                Err(e) => return Err(e),
            }
        };
        if resp.succeeded() {
            let version = resp.header().map(|h| h.revision()).unwrap_or_default();
            return Ok(Swap::Swapped {
                version: version as u64,
            });
        }
        let current = self.stored(resp.op_responses());
        // After a retry, a stored value that is exactly ours means the earlier attempt, cut
        // off by an election, did land (a breaker's record names its writer and generation,
        // so no other agent writes the same bytes).
        if tries.load(std::sync::atomic::Ordering::Relaxed) > 1
            && let Some(cur) = &current
            && cur.value == value
        {
            return Ok(Swap::Swapped {
                version: cur.version,
            });
        }
        Ok(Swap::Conflict { current })
    }
}

impl Driver for EtcdDriver {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn load(&self, name: &Name, timeout: Duration) -> Result<Option<Versioned>, DriverError> {
        let inner = self.inner.clone();
        let name = *name;
        on_runtime("etcd load", timeout, async move {
            inner.load_now(name.as_str()).await
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.compare_and_swap_with_timers(name, expected, value, ttl, Vec::new(), timeout)
            .await
    }

    /// The open period and probe leases end when the cluster's leader lets their etcd
    /// leases run out, not by any agent's clock.
    fn keeps_timers(&self) -> bool {
        true
    }

    async fn compare_and_swap_with_timers(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: Vec<(Timer, Duration)>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        let inner = self.inner.clone();
        let name = *name;
        on_runtime("etcd compare-and-swap", timeout, async move {
            inner
                .swap_now(name.as_str(), expected, value, ttl, &timers)
                .await
        })
        .await
    }

    async fn list(&self, timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        let inner = self.inner.clone();
        on_runtime("etcd list", timeout, async move {
            let dir = inner.dir.clone();
            let resp = inner
                .failover("list", |mut c| {
                    let dir = dir.clone();
                    async move { c.get(dir, Some(GetOptions::new().with_prefix())).await }
                })
                .await?;
            // Records and timers come in key order: a record, then its timers.
            let mut out: Vec<(Name, Versioned)> = Vec::new();
            for kv in resp.kvs() {
                let Some(key) = timers::Key::of(&inner.dir, kv, true) else {
                    continue;
                };
                match key {
                    timers::Key::Record(name) => out.push((
                        name,
                        Versioned::new(kv.mod_revision() as u64, kv.value().to_vec()),
                    )),
                    timers::Key::Timer(name, timer) => {
                        if let Some((_, v)) = out.iter_mut().rev().find(|(n, _)| *n == name) {
                            v.timers.push(timer);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> Result<Option<Watch>, DriverError> {
        let watch = watch::start(self.inner.clone(), *name, sink);
        breaker_runtime::watchers::wait_alive(&watch, "etcd watch", timeout).await?;
        Ok(Some(watch))
    }
}
