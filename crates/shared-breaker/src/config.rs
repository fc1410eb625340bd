//! Policies and back-ends from configuration: a policy from TOML or environment variables,
//! with durations written the way people write them (`"30s"`, `"250ms"`), unknown keys and
//! impossible values refused with an error naming the key; and a back-end chosen by URL.
//!
//! ```
//! let policy = shared_breaker::config::policy_from_toml(r#"
//!     failures = 3
//!     window = "30s"
//!     open_for = "1m"
//!     on_backend_failure = "fail_closed"
//! "#)?;
//! assert_eq!(policy.open_for, std::time::Duration::from_secs(60));
//! # Ok::<(), shared_breaker::config::ConfigError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{BackendFailure, DriverError, DynDriver, Policy, PolicyError, RecordEncoding};
use serde::Deserialize;

/// A policy as written in configuration. Every key is optional; what is left out keeps the
/// default of [`Policy::default`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Failures within the window that trip the breaker.
    pub failures: Option<u32>,
    /// The sliding window.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Consecutive failures that trip the breaker.
    pub consecutive_failures: Option<u32>,
    /// Failure rate in (0, 1] that trips the breaker, once the window holds `min_calls`.
    pub failure_rate: Option<f64>,
    /// Calls the window must hold before a rate is judged (default 20).
    pub min_calls: Option<u32>,
    /// Calls slower than this are slow.
    #[serde(default, with = "humantime_serde")]
    pub slow_call: Option<Duration>,
    /// Whether slow calls count as failures (default false).
    pub slow_counts_as_failure: Option<bool>,
    /// Slow-call rate in (0, 1] that trips the breaker.
    pub slow_call_rate: Option<f64>,
    /// How long the breaker stays open.
    #[serde(default, with = "humantime_serde")]
    pub open_for: Option<Duration>,
    /// Backoff factor of the open period across consecutive openings.
    pub backoff_multiplier: Option<f64>,
    /// The longest open period under backoff.
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    /// The largest extra open time.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
    /// Probes per half-open period, fleet-wide.
    pub half_open_permits: Option<u32>,
    /// Probe successes that close the breaker.
    pub success_threshold: Option<u32>,
    /// Lease of a probe permit.
    #[serde(default, with = "humantime_serde")]
    pub probe_lease: Option<Duration>,
    /// Expiry of an idle breaker's record.
    #[serde(default, with = "humantime_serde")]
    pub record_ttl: Option<Duration>,
    /// How often batched successes are written.
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    /// Bound on staleness without push.
    #[serde(default, with = "humantime_serde")]
    pub max_staleness: Option<Duration>,
    /// Deadline of every back-end operation.
    #[serde(default, with = "humantime_serde")]
    pub backend_timeout: Option<Duration>,
    /// First wait before retrying an unreachable back-end.
    #[serde(default, with = "humantime_serde")]
    pub reconnect_initial: Option<Duration>,
    /// Longest wait between retries of an unreachable back-end.
    #[serde(default, with = "humantime_serde")]
    pub reconnect_max: Option<Duration>,
    /// `fail_open`, `fail_closed` or `local_fallback`.
    pub on_backend_failure: Option<BackendFailureConfig>,
    /// Strict mode.
    pub strict: Option<bool>,
    /// A quorum: the distinct agents whose failures a fleet-wide trip needs within the
    /// window ([`Policy::min_agents`]; 1, the default, is none).
    pub min_agents: Option<u32>,
    /// How this agent writes the record: `json` (the default) or `compact`
    /// ([`Policy::record_encoding`]).
    pub record_encoding: Option<RecordEncodingConfig>,
    /// Count outcomes by appending them to the record's log where the driver keeps one
    /// ([`Policy::append_outcomes`]).
    pub append_outcomes: Option<bool>,
}

/// [`BackendFailure`] as written in configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackendFailureConfig {
    /// [`BackendFailure::FailOpen`].
    FailOpen,
    /// [`BackendFailure::FailClosed`].
    FailClosed,
    /// [`BackendFailure::LocalFallback`].
    LocalFallback,
}

/// [`RecordEncoding`] as written in configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordEncodingConfig {
    /// [`RecordEncoding::Json`].
    Json,
    /// [`RecordEncoding::Compact`].
    Compact,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid, or names an unknown key or a value of the wrong kind.
    #[error("invalid breaker configuration: {0}")]
    Syntax(String),
    /// A key has an impossible value.
    #[error("invalid breaker configuration: key `{key}`: {reason}")]
    Value {
        /// The key, as written in configuration.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The back-end URL is not one this build can open.
    #[error("invalid back-end URL {url:?}: {reason}")]
    Url {
        /// The URL as given, its password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The back-end could not be set up.
    #[error(transparent)]
    Backend(#[from] DriverError),
    /// The breaker could not be built (its name, say).
    #[error(transparent)]
    Build(#[from] breaker_core::BuildError),
}

/// A whole breaker as written in configuration: its name, its back-end by URL, and its
/// policy (a `[policy]` table in TOML).
///
/// ```
/// let payments = shared_breaker::config::breaker_from_toml(r#"
///     name = "payments-config-doc"
///     backend = "memory://"
///     [policy]
///     failures = 3
///     open_for = "30s"
/// "#)?;
/// assert_eq!(payments.policy().open_for, std::time::Duration::from_secs(30));
/// # Ok::<(), shared_breaker::config::ConfigError>(())
/// ```
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The breaker's name.
    pub name: String,
    /// The back-end's URL (see [`open_backend`]).
    pub backend: String,
    /// The policy.
    #[serde(default)]
    pub policy: PolicyConfig,
}

impl std::fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("name", &self.name)
            .field("backend", &redact(&self.backend))
            .field("policy", &self.policy)
            .finish()
    }
}

impl BreakerConfig {
    /// Opens the back-end (or reuses the driver this process has open for the same URL) and
    /// builds the breaker.
    pub fn build(self) -> Result<breaker_core::Breaker, ConfigError> {
        let policy = self.policy.into_policy()?;
        let driver = shared_backend(&self.backend)?;
        Ok(breaker_core::Breaker::builder_dyn(&self.name, driver)
            .policy(policy)
            .build()?)
    }
}

/// A breaker from TOML text (the keys of [`BreakerConfig`]).
pub fn breaker_from_toml(text: &str) -> Result<breaker_core::Breaker, ConfigError> {
    parse_toml::<BreakerConfig>(text)?.build()
}

/// The configuration key that a policy builder field comes from.
fn key_of(field: &'static str) -> &'static str {
    match field {
        "failures_in_window.failures" => "failures",
        "consecutive_failures.failures" => "consecutive_failures",
        "failure_rate.rate" => "failure_rate",
        "slow_call_rate.rate" => "slow_call_rate",
        "failure_rate.min_calls" | "slow_call_rate.min_calls" => "min_calls",
        "slow_call" | "slow_call.threshold" => "slow_call",
        "backoff.multiplier" => "backoff_multiplier",
        "backoff.max" => "backoff_max",
        other => other,
    }
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> Self {
        ConfigError::Value {
            key: key_of(e.field),
            reason: e.reason,
        }
    }
}

impl PolicyConfig {
    /// The policy this configuration describes, validated.
    pub fn into_policy(self) -> Result<Policy, ConfigError> {
        let mut b = Policy::builder();
        let defaults = Policy::default();
        let min_calls = self.min_calls.unwrap_or(20);
        if let Some(w) = self.window {
            b = b.window(w);
        }
        if let Some(n) = self.failures {
            b = b.trip(breaker_core::TripRule::FailuresInWindow { failures: n });
        }
        if let Some(n) = self.consecutive_failures {
            b = b.consecutive_failures(n);
        }
        if let Some(rate) = self.failure_rate {
            b = b.failure_rate(rate, min_calls);
        }
        if let Some(t) = self.slow_call {
            b = b.slow_calls(t, self.slow_counts_as_failure.unwrap_or(false));
        }
        if let Some(rate) = self.slow_call_rate {
            b = b.slow_call_rate(rate, min_calls);
        }
        if let Some(d) = self.open_for {
            b = b.open_for(d);
        }
        if self.backoff_multiplier.is_some() || self.backoff_max.is_some() {
            let open_for = self.open_for.unwrap_or(defaults.open_for);
            b = b.backoff(
                self.backoff_multiplier.unwrap_or(2.0),
                self.backoff_max.unwrap_or(open_for.saturating_mul(32)),
            );
        }
        if let Some(d) = self.jitter {
            b = b.jitter(d);
        }
        if let Some(n) = self.half_open_permits {
            b = b.half_open_permits(n);
        }
        if let Some(n) = self.success_threshold {
            b = b.success_threshold(n);
        }
        if let Some(d) = self.probe_lease {
            b = b.probe_lease(d);
        }
        if let Some(d) = self.record_ttl {
            b = b.record_ttl(d);
        }
        if let Some(d) = self.flush_interval {
            b = b.flush_interval(d);
        }
        if let Some(d) = self.max_staleness {
            b = b.max_staleness(d);
        }
        if let Some(d) = self.backend_timeout {
            b = b.backend_timeout(d);
        }
        if self.reconnect_initial.is_some() || self.reconnect_max.is_some() {
            b = b.reconnect(
                self.reconnect_initial.unwrap_or(defaults.reconnect_initial),
                self.reconnect_max.unwrap_or(defaults.reconnect_max),
            );
        }
        if let Some(f) = self.on_backend_failure {
            b = b.on_backend_failure(match f {
                BackendFailureConfig::FailOpen => BackendFailure::FailOpen,
                BackendFailureConfig::FailClosed => BackendFailure::FailClosed,
                BackendFailureConfig::LocalFallback => BackendFailure::LocalFallback,
            });
        }
        if let Some(strict) = self.strict {
            b = b.strict(strict);
        }
        if let Some(agents) = self.min_agents {
            b = b.min_agents(agents);
        }
        if let Some(encoding) = self.record_encoding {
            b = b.record_encoding(match encoding {
                RecordEncodingConfig::Json => RecordEncoding::Json,
                RecordEncodingConfig::Compact => RecordEncoding::Compact,
            });
        }
        if let Some(append) = self.append_outcomes {
            b = b.append_outcomes(append);
        }
        Ok(b.build()?)
    }
}

/// A policy from TOML text (the keys of [`PolicyConfig`]).
pub fn policy_from_toml(text: &str) -> Result<Policy, ConfigError> {
    parse_toml::<PolicyConfig>(text)?.into_policy()
}

/// Parses TOML, naming the key whose value was refused.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // The key is on the line the error points at.
        let key = e.span().and_then(|span| {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            Some(line.split_once('=')?.0.trim().to_owned())
        });
        match key {
            Some(key) if !key.is_empty() => {
                ConfigError::Syntax(format!("key `{key}`: {}", e.message()))
            }
            _ => ConfigError::Syntax(e.message().to_owned()),
        }
    })
}

/// A policy from environment variables `PREFIX` + key in upper case (`BREAKER_OPEN_FOR=30s`,
/// `BREAKER_FAILURES=5`). A variable with the prefix that is not a key is refused, naming it;
/// `PREFIX` + `BACKEND` is the back-end's URL (see [`breaker_from_env`]) and is left alone.
pub fn policy_from_env(prefix: &str) -> Result<Policy, ConfigError> {
    policy_from_vars(prefix, std::env::vars())
}

/// A whole breaker from environment variables: the policy as [`policy_from_env`] reads it
/// and the back-end from `PREFIX` + `BACKEND` (`BREAKER_BACKEND=redis://10.0.0.5:6379`, the
/// variable the `breaker` CLI reads too).
pub fn breaker_from_env(prefix: &str, name: &str) -> Result<breaker_core::Breaker, ConfigError> {
    let var = format!("{prefix}{BACKEND_KEY}");
    let url = std::env::var(&var).map_err(|_| {
        ConfigError::Syntax(format!(
            "environment variable `{var}` (the back-end URL) is not set"
        ))
    })?;
    breaker(&url, name, policy_from_env(prefix)?)
}

/// The key, after the prefix, of the variable holding the back-end URL.
const BACKEND_KEY: &str = "BACKEND";

/// [`policy_from_env`] over given variables.
pub fn policy_from_vars(
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Policy, ConfigError> {
    let mut table = toml::Table::new();
    for (name, value) in vars {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        if key == BACKEND_KEY {
            continue;
        }
        let key = key.to_ascii_lowercase();
        // A number or a boolean as TOML reads it; anything else ("30s") as text.
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_str())
            .unwrap_or(toml::Value::String(value.clone()));
        // Each variable alone first, so that an error names the variable it is about.
        let alone = toml::Table::from_iter([(key.clone(), parsed.clone())]);
        if let Err(e) = toml::Value::Table(alone).try_into::<PolicyConfig>() {
            let hint = if parsed.is_integer() && key_is_duration(&key) {
                format!(" (a duration needs a unit: {value}s, {value}ms)")
            } else {
                String::new()
            };
            return Err(ConfigError::Syntax(format!(
                "environment variable `{name}`={value:?}: {}{hint}",
                e.message()
            )));
        }
        table.insert(key, parsed);
    }
    let config: PolicyConfig =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                ConfigError::Syntax(format!("{} (environment variables {prefix}*)", e.message()))
            })?;
    config.into_policy().map_err(|e| match e {
        ConfigError::Value { key, reason } => ConfigError::Syntax(format!(
            "environment variable `{prefix}{}`: {reason}",
            key.to_ascii_uppercase()
        )),
        other => other,
    })
}

/// Whether a policy key holds a duration.
fn key_is_duration(key: &str) -> bool {
    matches!(
        key,
        "window"
            | "slow_call"
            | "open_for"
            | "backoff_max"
            | "jitter"
            | "probe_lease"
            | "record_ttl"
            | "flush_interval"
            | "max_staleness"
            | "backend_timeout"
            | "reconnect_initial"
            | "reconnect_max"
    )
}

/// Opens the back-end that `url` names:
///
/// | URL | back-end | cargo feature |
/// |---|---|---|
/// | `memory://` | this process's memory (the process-wide store) | `memory` |
/// | `sqlite://PATH` | the SQLite file at `PATH` (`sqlite:///abs/path`) | `sqlite` |
/// | `redis://[user:pass@]host:port[/db]`, `rediss://...` | Redis | `redis` |
/// | `redis-cluster://host:port,host:port` | Redis Cluster | `redis` |
/// | `etcd://[user:pass@]host:port,host:port` | etcd (`etcds://` for TLS) | `etcd` |
///
/// Driver options go in the query, and an option the back-end does not take is refused,
/// naming it: `prefix` (every back-end but memory: the namespace of its keys or rows) and, for
/// SQLite, `poll_interval` (`sqlite:///var/lib/app/b.db?prefix=checkout&poll_interval=10ms`).
pub fn open_backend(url: &str) -> Result<Arc<dyn DynDriver>, ConfigError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| ConfigError::Url {
        url: redact(url),
        reason: "expected SCHEME://...".into(),
    })?;
    let (rest, options) = UrlOptions::split(url, rest)?;
    match scheme {
        "memory" => options.done(url, &[]).and_then(|_| open::memory(url)),
        "sqlite" => options
            .done(url, &["prefix", "poll_interval"])
            .and_then(|o| open::sqlite(url, rest, o)),
        "redis" | "rediss" => {
            let base = format!("{scheme}://{rest}");
            options
                .done(url, &["prefix"])
                .and_then(|o| open::redis(url, &[&base], o))
        }
        "redis-cluster" => {
            let nodes: Vec<String> = rest.split(',').map(|n| format!("redis://{n}")).collect();
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            options
                .done(url, &["prefix"])
                .and_then(|o| open::redis(url, &nodes, o))
        }
        "etcd" | "etcds" => {
            let http = if scheme == "etcds" { "https" } else { "http" };
            let members: Vec<String> = rest.split(',').map(|m| format!("{http}://{m}")).collect();
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            options
                .done(url, &["prefix"])
                .and_then(|o| open::etcd(url, &members, o))
        }
        other => Err(ConfigError::Url {
            url: redact(url),
            reason: format!(
                "unknown scheme `{other}`: use memory://, sqlite://, redis://, rediss://, \
                 redis-cluster://, etcd:// or etcds://"
            ),
        }),
    }
}

/// A breaker called `name` with `policy`, on the back-end that `url` names (see
/// [`open_backend`]): the one-call form of configuration without a TOML file. Breakers of
/// one URL in this process share one driver.
///
/// ```
/// let policy = shared_breaker::Policy::default();
/// let search = shared_breaker::config::breaker("memory://", "search-url-doc", policy)?;
/// assert_eq!(search.name().as_str(), "search-url-doc");
/// # Ok::<(), shared_breaker::config::ConfigError>(())
/// ```
pub fn breaker(
    url: &str,
    name: &str,
    policy: Policy,
) -> Result<breaker_core::Breaker, ConfigError> {
    let driver = shared_backend(url)?;
    Ok(breaker_core::Breaker::builder_dyn(name, driver)
        .policy(policy)
        .build()?)
}

/// The driver this process already has open for `url`, or a new one ([`open_backend`]),
/// kept for the next breaker of that URL.
fn shared_backend(url: &str) -> Result<Arc<dyn DynDriver>, ConfigError> {
    crate::reuse::get_or_open(format!("url:{url}"), || open_backend(url))
}

/// The driver options given in a back-end URL's query.
#[derive(Debug, Default)]
struct UrlOptions {
    prefix: Option<String>,
    poll_interval: Option<Duration>,
    /// Every key given, to refuse those the back-end does not take.
    keys: Vec<String>,
}

impl UrlOptions {
    /// Splits `rest` (the URL after `SCHEME://`) into its address and its options.
    fn split<'a>(url: &str, rest: &'a str) -> Result<(&'a str, UrlOptions), ConfigError> {
        let Some((address, query)) = rest.split_once('?') else {
            return Ok((rest, UrlOptions::default()));
        };
        let mut options = UrlOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let bad = |reason: String| ConfigError::Url {
                url: redact(url),
                reason,
            };
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("option `{pair}` has no value (write KEY=VALUE)")))?;
            match key {
                "prefix" => options.prefix = Some(value.to_owned()),
                "poll_interval" => {
                    let d = humantime::parse_duration(value).map_err(|e| {
                        bad(format!("option `poll_interval`: {e} (write it like 25ms)"))
                    })?;
                    options.poll_interval = Some(d);
                }
                _ => {}
            }
            options.keys.push(key.to_owned());
        }
        Ok((address, options))
    }

    /// These options, unless one is not among `accepted` for this back-end.
    fn done(self, url: &str, accepted: &[&str]) -> Result<UrlOptions, ConfigError> {
        match self.keys.iter().find(|k| !accepted.contains(&k.as_str())) {
            None => Ok(self),
            Some(key) => Err(ConfigError::Url {
                url: redact(url),
                reason: if accepted.is_empty() {
                    format!("unknown option `{key}`: this back-end takes no options")
                } else {
                    format!(
                        "unknown option `{key}`: this back-end takes {}",
                        accepted
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            }),
        }
    }
}

/// Each back-end's opener, or an error saying which cargo feature this build lacks.
mod open {
    use super::*;

    type Opened = Result<Arc<dyn DynDriver>, ConfigError>;

    #[allow(dead_code)] // Used by the openers of features this build lacks.
    fn missing(url: &str, feature: &str) -> ConfigError {
        ConfigError::Url {
            url: redact(url),
            reason: format!("this build has no `{feature}` feature"),
        }
    }

    #[cfg(feature = "memory")]
    pub(super) fn memory(_url: &str) -> Opened {
        Ok(Arc::new(crate::memory::MemoryDriver::process_wide()))
    }
    #[cfg(not(feature = "memory"))]
    pub(super) fn memory(url: &str) -> Opened {
        Err(missing(url, "memory"))
    }

    #[cfg(feature = "sqlite")]
    pub(super) fn sqlite(_url: &str, path: &str, o: UrlOptions) -> Opened {
        let mut options = crate::sqlite::SqliteOptions::default();
        if let Some(prefix) = o.prefix {
            options = options.prefix(prefix);
        }
        if let Some(interval) = o.poll_interval {
            options = options.poll_interval(interval);
        }
        Ok(Arc::new(crate::sqlite::SqliteDriver::open_with(
            path, options,
        )?))
    }
    #[cfg(not(feature = "sqlite"))]
    pub(super) fn sqlite(url: &str, _path: &str, _o: UrlOptions) -> Opened {
        Err(missing(url, "sqlite"))
    }

    #[cfg(feature = "redis")]
    pub(super) fn redis(_url: &str, nodes: &[&str], o: UrlOptions) -> Opened {
        let mut options = crate::redis::RedisOptions::default();
        if let Some(prefix) = o.prefix {
            options = options.prefix(prefix);
        }
        Ok(Arc::new(crate::redis::RedisDriver::open_with(
            nodes, options,
        )?))
    }
    #[cfg(not(feature = "redis"))]
    pub(super) fn redis(url: &str, _nodes: &[&str], _o: UrlOptions) -> Opened {
        Err(missing(url, "redis"))
    }

    #[cfg(feature = "etcd")]
    pub(super) fn etcd(_url: &str, members: &[&str], o: UrlOptions) -> Opened {
        let mut options = crate::etcd::EtcdOptions::default();
        if let Some(prefix) = o.prefix {
            options = options.prefix(prefix);
        }
        Ok(Arc::new(crate::etcd::EtcdDriver::open(members, options)?))
    }
    #[cfg(not(feature = "etcd"))]
    pub(super) fn etcd(url: &str, _members: &[&str], _o: UrlOptions) -> Opened {
        Err(missing(url, "etcd"))
    }
}

/// `url` with any password replaced: the workspace's one helper, from `breaker-core`.
use breaker_core::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_people_write_them() {
        let p = policy_from_toml(
            r#"
            failures = 3
            window = "30s"
            open_for = "1m 30s"
            probe_lease = "250ms"
            backoff_multiplier = 2.0
            backoff_max = "10m"
            half_open_permits = 2
            success_threshold = 2
            on_backend_failure = "fail_open"
            strict = true
            min_agents = 3
            record_encoding = "compact"
            append_outcomes = true
            "#,
        )
        .unwrap();
        assert!(p.append_outcomes);
        assert_eq!(p.min_agents, 3);
        assert_eq!(p.record_encoding, RecordEncoding::Compact);
        assert_eq!(p.window, Duration::from_secs(30));
        assert_eq!(p.open_for, Duration::from_secs(90));
        assert_eq!(p.probe_lease, Duration::from_millis(250));
        assert_eq!(p.backoff.unwrap().max, Duration::from_secs(600));
        assert_eq!(p.on_backend_failure, BackendFailure::FailOpen);
        assert!(p.strict);
        assert_eq!(
            p.trip_rules,
            vec![breaker_core::TripRule::FailuresInWindow { failures: 3 }]
        );
        assert_eq!(
            policy_from_toml("").unwrap(),
            Policy::default(),
            "everything defaults"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let cases = [
            (r#"open_forr = "1s""#, "open_forr"),
            (r#"open_for = "soon""#, "open_for"),
            ("failures = -1", "failures"),
            ("failures = 0", "failures"),
            ("failure_rate = 1.5", "failure_rate"),
            (
                "failure_rate = 0.5
min_calls = 0",
                "min_calls",
            ),
            (
                "half_open_permits = 1
success_threshold = 2",
                "success_threshold",
            ),
            ("backoff_multiplier = 0.5", "backoff_multiplier"),
            ("slow_call_rate = 0.5", "slow_call"),
            (r#"on_backend_failure = "panic""#, "on_backend_failure"),
            (r#"strict = "yes""#, "strict"),
            ("min_agents = 0", "min_agents"),
            ("min_agents = 65", "min_agents"),
            (r#"record_encoding = "binary""#, "record_encoding"),
        ];
        for (text, key) in cases {
            let err = policy_from_toml(text).unwrap_err().to_string();
            assert!(
                err.contains(key),
                "{text:?} gave {err:?}, which does not name `{key}`"
            );
        }
    }

    #[test]
    fn environment_variables() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let p = policy_from_vars(
            "BREAKER_",
            vars(&[
                ("BREAKER_FAILURES", "7"),
                ("BREAKER_OPEN_FOR", "45s"),
                ("BREAKER_STRICT", "true"),
                ("BREAKER_MIN_AGENTS", "2"),
                ("BREAKER_RECORD_ENCODING", "compact"),
                ("BREAKER_APPEND_OUTCOMES", "true"),
                ("OTHER_THING", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(
            p.trip_rules,
            vec![breaker_core::TripRule::FailuresInWindow { failures: 7 }]
        );
        assert_eq!(p.open_for, Duration::from_secs(45));
        assert!(p.strict);
        assert_eq!(p.min_agents, 2);
        assert_eq!(p.record_encoding, RecordEncoding::Compact);
        assert!(p.append_outcomes);
        let err = policy_from_vars("BREAKER_", vars(&[("BREAKER_OPENFOR", "1s")])).unwrap_err();
        assert!(err.to_string().contains("openfor"), "{err}");
        let err = policy_from_vars("BREAKER_", vars(&[("BREAKER_FAILURE_RATE", "2")])).unwrap_err();
        assert!(err.to_string().contains("BREAKER_FAILURE_RATE"), "{err}");
        // A duration without its unit names the variable and says how to write it.
        let err = policy_from_vars("BREAKER_", vars(&[("BREAKER_OPEN_FOR", "30")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`BREAKER_OPEN_FOR`") && text.contains("30s"),
            "{text}"
        );
        // The CLI's back-end variable shares the prefix and is not a policy key.
        let p = policy_from_vars(
            "BREAKER_",
            vars(&[("BREAKER_BACKEND", "redis://x"), ("BREAKER_FAILURES", "4")]),
        )
        .unwrap();
        assert_eq!(
            p.trip_rules,
            vec![breaker_core::TripRule::FailuresInWindow { failures: 4 }]
        );
    }

    #[test]
    fn a_whole_breaker_from_toml() {
        let b = breaker_from_toml(
            r#"
            name = "from-config"
            backend = "memory://"
            [policy]
            failures = 2
            window = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(b.name().as_str(), "from-config");
        assert_eq!(b.policy().window, Duration::from_secs(5));
        for (text, key) in [
            (
                "name = \"x\"\nbackend = \"memory://\"\ncolour = 1",
                "colour",
            ),
            (
                "name = \"x\"\nbackend = \"memory://\"\n[policy]\nopen_for = \"never\"",
                "open_for",
            ),
            ("name = \"x\"", "backend"),
            (
                "name = \"a/b\"\nbackend = \"memory://\"",
                "invalid breaker name",
            ),
            ("name = \"x\"\nbackend = \"gopher://x\"", "unknown scheme"),
        ] {
            let err = breaker_from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
        let secret: BreakerConfig =
            toml::from_str("name = \"x\"\nbackend = \"redis://app:hunter2@host:6379\"").unwrap();
        let debug = format!("{secret:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("app:***@host"),
            "{debug}"
        );
    }

    #[test]
    fn backends_by_url() {
        assert_eq!(open_backend("memory://").unwrap().backend(), "memory");
        for (url, says) in [
            ("nonsense", "SCHEME://"),
            ("ftp://x", "unknown scheme `ftp`"),
            ("redis://:hunter2@[::1:6379", "invalid URL"),
            ("memory://?prefix=x", "unknown option `prefix`"),
            ("redis://:hunter2@h:1?prefx=a", "unknown option `prefx`"),
            ("sqlite:///tmp/x.db?poll_interval=soon", "poll_interval"),
            ("sqlite:///tmp/x.db?prefix", "has no value"),
        ] {
            let err = match open_backend(url) {
                Ok(_) => panic!("{url} opened"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn url_options_reach_the_driver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("options.db");
        let url = format!(
            "sqlite://{}?prefix=checkout&poll_interval=10ms",
            path.display()
        );
        let checkout = breaker(&url, "payments", Policy::default()).unwrap();
        futures_executor::block_on(checkout.force_open()).unwrap();
        // The same file without the prefix does not see the breaker; with it, it does.
        let plain = open_backend(&format!("sqlite://{}", path.display())).unwrap();
        let prefixed = open_backend(&url).unwrap();
        let t = Duration::from_secs(2);
        assert!(
            futures_executor::block_on(plain.list(t))
                .unwrap()
                .is_empty()
        );
        let listed = futures_executor::block_on(prefixed.list(t)).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.as_str(), "payments");
    }
}
