//! The Redis driver of **breaker**: a fleet of processes shares breakers through one Redis
//! server or a Redis Cluster.
//!
//! - Each compare-and-swap is one atomic round trip (a Lua script) that checks the version,
//!   writes the record with its expiry, and publishes the change; no lock is ever held while
//!   a protected call runs.
//! - Breakers follow Redis server time (`TIME`), never one agent's wall clock.
//! - Changes are pushed to every agent over pub/sub (a channel per key prefix); while the
//!   push channel is down, breakers poll within their `max_staleness`.
//! - All keys of one breaker share a hash tag, so the driver works on Redis Cluster too.
//! - Every call has a deadline; the connection reconnects by itself. User, password (ACL),
//!   database index and TLS (`rediss://`) come from the URL, and the password never appears
//!   in `Debug` output or errors.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use breaker_driver_redis::{Breaker, Policy, RedisDriver};
//!
//! let driver = RedisDriver::open("redis://127.0.0.1:6379/0")?;
//! let breaker = Breaker::builder("payments", driver).policy(Policy::default()).build()?;
//! let paid: Result<u32, breaker_driver_redis::Error<&str>> = breaker.call(|| async { Ok(7) }).await;
//! # Ok(()) }
//! ```

mod conn;
mod script;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use breaker_core::{
    self, BackendError, BackendFailure, Breaker, BreakerBuilder, BuildError, Clock, Error, Event,
    ManualClock, Outcome, Permit, Policy, PolicyError, Rejected, State, SystemClock,
};
use breaker_core::{
    ChangeSink, Driver, DriverError, DriverErrorKind, MAX_RECORD_BYTES, Name, Swap, Timestamp,
    Versioned, Watch,
};
use redis::Value;

use breaker_runtime::on_runtime;
use conn::{Lazy, Target, error, redact};

/// How a [`RedisDriver`] connects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Namespace of this driver's keys: `{PREFIX/NAME}:r`. Default `breaker`.
    pub prefix: String,
    /// Deadline for making a connection. Each operation's deadline comes from the breaker.
    pub connect_timeout: Duration,
    /// For `rediss://` URLs: the certificate authority (PEM) that signed the server's
    /// certificate, instead of the system's trust store.
    pub tls_root_cert: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "breaker".into(),
            connect_timeout: Duration::from_secs(2),
            tls_root_cert: None,
        }
    }
}

impl RedisOptions {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Trusts the certificate authority `pem` for `rediss://` servers.
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

/// A driver over one Redis server or a Redis Cluster. Clones share the connection.
#[derive(Clone)]
pub struct RedisDriver {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL (of the first node) with its password redacted.
    url: String,
    /// The URLs of every node as given, to reach each node of a cluster.
    nodes: Vec<String>,
    prefix: String,
    channel: String,
    tls_root_cert: Option<Vec<u8>>,
    conn: Lazy,
    load: redis::Script,
    swap: redis::Script,
    append: redis::Script,
    compact: redis::Script,
    watches: Arc<breaker_runtime::watchers::Watchers>,
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDriver")
            .field("url", &self.inner.url)
            .field("nodes", &self.inner.nodes.len())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

fn config(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::Config, message)
}

impl RedisDriver {
    /// A driver for the server at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS). Nothing is sent until the first operation; see
    /// [`RedisDriver::connect`] to check the server at once.
    pub fn open(url: &str) -> Result<Self, DriverError> {
        Self::open_with(&[url], RedisOptions::default())
    }

    /// A driver for a Redis Cluster, given one or more of its nodes.
    pub fn open_cluster(urls: &[&str]) -> Result<Self, DriverError> {
        Self::open_with(urls, RedisOptions::default())
    }

    /// A driver with options: one URL for a server, several for a cluster.
    pub fn open_with(urls: &[&str], options: RedisOptions) -> Result<Self, DriverError> {
        let first = urls
            .first()
            .ok_or_else(|| config("redis: no URL given".into()))?;
        let url = redact(first);
        breaker_core::check_prefix("redis", &options.prefix)?;
        let parse = |u: &str| {
            let client = match &options.tls_root_cert {
                Some(pem) => redis::Client::build_with_tls(
                    u,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                ),
                None => redis::Client::open(u),
            };
            client.map_err(|e| {
                config(format!(
                    "redis {}: invalid URL or TLS settings: {e}",
                    redact(u)
                ))
            })
        };
        let target = if urls.len() == 1 {
            Target::Single(parse(first)?)
        } else {
            for u in urls {
                parse(u)?;
            }
            let mut builder = redis::cluster::ClusterClient::builder(urls.iter().copied())
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.connect_timeout);
            if let Some(pem) = &options.tls_root_cert {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                });
            }
            let client = builder
                .build()
                .map_err(|e| config(format!("redis cluster {url}: {e}")))?;
            Target::Cluster(client)
        };
        let channel = format!("breaker-changes:{}", options.prefix);
        Ok(RedisDriver {
            inner: Arc::new(Inner {
                url,
                nodes: urls.iter().map(|u| (*u).to_owned()).collect(),
                channel,
                tls_root_cert: options.tls_root_cert.clone(),
                prefix: options.prefix,
                conn: Lazy::new(target, options.connect_timeout),
                load: redis::Script::new(&script::load()),
                swap: redis::Script::new(&script::swap()),
                append: redis::Script::new(&script::append()),
                compact: redis::Script::new(&script::compact()),
                watches: Arc::default(),
            }),
        })
    }

    /// [`RedisDriver::open`], then a `PING` within `timeout`: an unreachable server or a
    /// wrong password is an error now rather than at the first call.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, DriverError> {
        let driver = Self::open(url)?;
        driver.ping(timeout).await?;
        Ok(driver)
    }

    /// Sends `PING`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), DriverError> {
        let inner = self.inner.clone();
        on_runtime("redis ping", timeout, async move {
            let mut conn = inner.conn.get(&inner.url).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| error(&inner.url, "ping", e))
        })
        .await
    }

    /// The record key of `name` under `prefix`, `{PREFIX/NAME}:r`, and the key where builds
    /// before 0.2 counted its versions, `{PREFIX/NAME}:seq` (see the script module). Neither
    /// a prefix nor a name may hold `/` (both are validated as [`Name`]s), so the mapping is
    /// injective: `a` + `b:c` and `a:b` + `c` are different keys.
    fn key(prefix: &str, name: &str) -> (String, String) {
        let tag = format!("{{{prefix}/{name}}}");
        (format!("{tag}:r"), format!("{tag}:seq"))
    }

    /// The breaker name a record key under `prefix` belongs to: the inverse of
    /// [`RedisDriver::key`], `None` for a key that is not a record key of this prefix.
    fn name_of(prefix: &str, key: &str) -> Option<Name> {
        let inside = key
            .strip_prefix('{')?
            .strip_prefix(prefix)?
            .strip_prefix('/')?
            .strip_suffix("}:r")?;
        Name::new(inside).ok()
    }
}

fn bulk(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => bulk(other).and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()),
    }
}

fn unexpected(url: &str, what: &str, v: &Value) -> DriverError {
    DriverError::new(
        DriverErrorKind::Other,
        format!("redis {url}: {what}: unexpected reply {v:?}"),
    )
}

/// `{}` or `{version, data, log}`, as `what` answered.
fn versioned(url: &str, what: &str, v: &Value) -> Result<Option<Versioned>, DriverError> {
    match v {
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Array(items) => stored(items)
            .map(Some)
            .ok_or_else(|| unexpected(url, what, v)),
        Value::Nil => Ok(None),
        other => Err(unexpected(url, what, other)),
    }
}

/// A write's reply: `{1, new_version}`, or on conflict `{0}` (absent) or
/// `{0, version, data, log}`.
fn swapped(url: &str, what: &str, reply: &Value) -> Result<Swap, DriverError> {
    let bad = || unexpected(url, what, reply);
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    match items.first().and_then(number) {
        Some(1) => Ok(Swap::Swapped {
            version: items.get(1).and_then(number).ok_or_else(bad)?,
        }),
        Some(0) if items.len() == 1 => Ok(Swap::Conflict { current: None }),
        Some(0) => Ok(Swap::Conflict {
            current: Some(stored(&items[1..]).ok_or_else(bad)?),
        }),
        _ => Err(bad()),
    }
}

/// `version, data, log` as the scripts return a record and its log.
fn stored(items: &[Value]) -> Option<Versioned> {
    let [version, value, log] = items else {
        return None;
    };
    Some(Versioned::new(number(version)?, bulk(value)?).with_log(split_log(&bulk(log)?)))
}

/// The deltas of a stored log: each behind one byte of its length. Bytes that do not frame
/// whole deltas (a log no agent wrote) end it as one more delta, which no breaker decodes,
/// so it is reported and dropped rather than misread.
pub(crate) fn split_log(mut log: &[u8]) -> Vec<Vec<u8>> {
    let mut deltas = Vec::new();
    while let Some((&len, rest)) = log.split_first() {
        let len = usize::from(len);
        if len == 0 || len > rest.len() {
            deltas.push(log.to_vec());
            break;
        }
        deltas.push(rest[..len].to_vec());
        log = &rest[len..];
    }
    deltas
}

/// A time to live as the scripts take it: milliseconds, at least one ('' for none).
fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map_or(String::new(), |d| d.as_millis().max(1).to_string())
}

impl Inner {
    /// Runs `script` on the keys of `name` (the record and the older builds' counter),
    /// with the arguments `args` adds, as the operation `what`.
    async fn invoke(
        &self,
        script: &redis::Script,
        what: &str,
        name: &Name,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Value, DriverError> {
        let mut conn = self.conn.get(&self.url).await?;
        let (record, seq) = RedisDriver::key(&self.prefix, name.as_str());
        let mut call = script.key(&record);
        call.key(&seq);
        args(&mut call);
        call.invoke_async(&mut conn)
            .await
            .map_err(|e| error(&self.url, what, e))
    }

    async fn load_now(&self, name: &Name) -> Result<Option<Versioned>, DriverError> {
        let reply = self
            .invoke(&self.load, "load", name, |call| {
                call.arg(MAX_RECORD_BYTES);
            })
            .await?;
        versioned(&self.url, "load", &reply)
    }
}

impl Driver for RedisDriver {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, name: &Name, timeout: Duration) -> Result<Option<Versioned>, DriverError> {
        let inner = self.inner.clone();
        let name = *name;
        on_runtime(
            "redis load",
            timeout,
            async move { inner.load_now(&name).await },
        )
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
        let inner = self.inner.clone();
        let name = *name;
        on_runtime("redis compare-and-swap", timeout, async move {
            let reply = inner
                .invoke(&inner.swap, "compare-and-swap", &name, |call| {
                    call.arg(expected.map_or(String::new(), |v| v.to_string()))
                        .arg(value)
                        .arg(ttl_arg(ttl))
                        .arg(&inner.channel)
                        .arg(name.as_str())
                        .arg(MAX_RECORD_BYTES);
                })
                .await?;
            swapped(&inner.url, "compare-and-swap", &reply)
        })
        .await
    }

    async fn compact(
        &self,
        name: &Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        let inner = self.inner.clone();
        let name = *name;
        on_runtime("redis compact", timeout, async move {
            let reply = inner
                .invoke(&inner.compact, "compact", &name, |call| {
                    call.arg(expected)
                        .arg(through)
                        .arg(value)
                        .arg(ttl_arg(ttl))
                        .arg(&inner.channel)
                        .arg(name.as_str())
                        .arg(MAX_RECORD_BYTES);
                })
                .await?;
            swapped(&inner.url, "compact", &reply)
        })
        .await
    }

    fn appends(&self) -> bool {
        true
    }

    async fn append(
        &self,
        name: &Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        timeout: Duration,
    ) -> Result<Option<Versioned>, DriverError> {
        let inner = self.inner.clone();
        let name = *name;
        on_runtime("redis append", timeout, async move {
            let reply = inner
                .invoke(&inner.append, "append", &name, |call| {
                    call.arg(delta)
                        .arg(ttl_arg(ttl))
                        .arg(&inner.channel)
                        .arg(name.as_str())
                        .arg(MAX_RECORD_BYTES)
                        .arg(if notify { "1" } else { "" });
                })
                .await?;
            versioned(&inner.url, "append", &reply)
        })
        .await
    }

    async fn list(&self, timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        let inner = self.inner.clone();
        on_runtime("redis list", timeout, async move {
            let pattern = format!("{{{}/*}}:r", inner.prefix);
            let mut names = std::collections::BTreeSet::new();
            // A cluster's keys live on its several nodes: scan each.
            for node in &inner.nodes {
                let client =
                    redis::Client::open(node.as_str()).map_err(|e| error(&inner.url, "list", e))?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| error(&inner.url, "list", e))?;
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(200)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| error(&inner.url, "list", e))?;
                    names.extend(
                        keys.iter()
                            .filter_map(|k| RedisDriver::name_of(&inner.prefix, k)),
                    );
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            let mut out = Vec::new();
            for name in names {
                if let Some(v) = inner.load_now(&name).await? {
                    out.push((name, v));
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
        let client = self
            .inner
            .conn
            .pubsub_client(&self.inner.nodes[0], self.inner.tls_root_cert.as_deref())?;
        let watch = watch::start(self.inner.clone(), client, *name, sink);
        breaker_runtime::watchers::wait_alive(&watch, "redis watch", timeout).await?;
        Ok(Some(watch))
    }

    /// One alignment with Redis's clock for all the breakers over this driver's connection.
    fn clock_key(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.inner) as usize)
    }

    async fn now(&self, timeout: Duration) -> Result<Option<Timestamp>, DriverError> {
        let inner = self.inner.clone();
        on_runtime("redis clock", timeout, async move {
            let mut conn = inner.conn.get(&inner.url).await?;
            let (secs, micros): (u64, u64) = redis::cmd("TIME")
                .query_async(&mut conn)
                .await
                .map_err(|e| error(&inner.url, "clock", e))?;
            Ok(Some(Timestamp::from_millis(secs * 1_000 + micros / 1_000)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Names and prefixes as `Name` accepts them, `:` included, the separator of old.
    fn part() -> impl Strategy<Value = String> {
        "[a-z0-9_-][a-z0-9_.:-]{0,12}"
    }

    proptest! {
        /// Deltas framed as the append script frames them split back into themselves, and
        /// bytes of any kind split without a panic, losing none.
        #[test]
        fn logs_split_into_their_deltas(
            deltas in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..=96), 0..40),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut framed = Vec::new();
            for d in &deltas {
                framed.push(u8::try_from(d.len()).unwrap());
                framed.extend_from_slice(d);
            }
            prop_assert_eq!(split_log(&framed), deltas);
            let split = split_log(&junk);
            prop_assert!(split.iter().map(Vec::len).sum::<usize>() <= junk.len());
        }

        /// (prefix, name) → key is injective, and `name_of` inverts it for its own prefix
        /// only: no breaker can read or list another's keys.
        #[test]
        fn keys_are_injective(p1 in part(), n1 in part(), p2 in part(), n2 in part()) {
            let (k1, _) = RedisDriver::key(&p1, &n1);
            let (k2, _) = RedisDriver::key(&p2, &n2);
            prop_assert_eq!(k1 == k2, (p1.as_str(), n1.as_str()) == (p2.as_str(), n2.as_str()));
            prop_assert_eq!(RedisDriver::name_of(&p1, &k1).map(|n| n.as_str()), Some(n1.as_str()));
            if p1 != p2 {
                prop_assert_eq!(RedisDriver::name_of(&p2, &k1), None);
            }
        }
    }
}
