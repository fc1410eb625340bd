//! Policies and back-ends from configuration: a policy from TOML or environment variables,
//! with durations written the way people write them (`"30s"`, `"250ms"`), unknown keys and
//! impossible values refused with an error naming the key; and a back-end chosen by URL.
//!
//! ```
//! let policy = breaker::config::policy_from_toml(r#"
//!     failures = 3
//!     window = "30s"
//!     open_for = "1m"
//!     on_backend_failure = "fail_closed"
//! "#)?;
//! assert_eq!(policy.open_for, std::time::Duration::from_secs(60));
//! # Ok::<(), breaker::config::ConfigError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{BackendFailure, DriverError, DynDriver, Policy, PolicyError};
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
/// let payments = breaker::config::breaker_from_toml(r#"
///     name = "payments-config-doc"
///     backend = "memory://"
///     [policy]
///     failures = 3
///     open_for = "30s"
/// "#)?;
/// assert_eq!(payments.policy().open_for, std::time::Duration::from_secs(30));
/// # Ok::<(), breaker::config::ConfigError>(())
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
    /// Opens the back-end and builds the breaker.
    pub fn build(self) -> Result<breaker_core::Breaker, ConfigError> {
        let policy = self.policy.into_policy()?;
        let driver = open_backend(&self.backend)?;
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
/// `BREAKER_FAILURES=5`). A variable with the prefix that is not a key is refused, naming it.
pub fn policy_from_env(prefix: &str) -> Result<Policy, ConfigError> {
    policy_from_vars(prefix, std::env::vars())
}

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
        let key = key.to_ascii_lowercase();
        // A number or a boolean as TOML reads it; anything else ("30s") as text.
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_str())
            .unwrap_or(toml::Value::String(value));
        table.insert(key, parsed);
    }
    let config: PolicyConfig =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                ConfigError::Syntax(format!("{} (environment variables {prefix}*)", e.message()))
            })?;
    config.into_policy()
}

/// Opens the back-end that `url` names:
///
/// | URL | back-end | cargo feature |
/// |---|---|---|
/// | `memory://` | this process's memory (the process-wide store) | `memory` |
/// | `sqlite://PATH` | the SQLite file at `PATH` (`sqlite:///abs/path`) | `sqlite` |
/// | `redis://[user:pass@]host:port[/db]`, `rediss://...` | Redis | `redis` |
/// | `redis-cluster://host:port,host:port` | Redis Cluster | `redis` |
/// | `etcd://host:port,host:port` | etcd (`etcds://` for TLS) | `etcd` |
pub fn open_backend(url: &str) -> Result<Arc<dyn DynDriver>, ConfigError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| ConfigError::Url {
        url: redact(url),
        reason: "expected SCHEME://...".into(),
    })?;
    match scheme {
        "memory" => open::memory(url),
        "sqlite" => open::sqlite(url, rest),
        "redis" | "rediss" => open::redis(url, &[url]),
        "redis-cluster" => {
            let nodes: Vec<String> = rest.split(',').map(|n| format!("redis://{n}")).collect();
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            open::redis(url, &nodes)
        }
        "etcd" | "etcds" => {
            let http = if scheme == "etcds" { "https" } else { "http" };
            let members: Vec<String> = rest.split(',').map(|m| format!("{http}://{m}")).collect();
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            open::etcd(url, &members)
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
    pub(super) fn sqlite(_url: &str, path: &str) -> Opened {
        Ok(Arc::new(crate::sqlite::SqliteDriver::open(path)?))
    }
    #[cfg(not(feature = "sqlite"))]
    pub(super) fn sqlite(url: &str, _path: &str) -> Opened {
        Err(missing(url, "sqlite"))
    }

    #[cfg(feature = "redis")]
    pub(super) fn redis(_url: &str, nodes: &[&str]) -> Opened {
        Ok(Arc::new(match nodes {
            [one] => crate::redis::RedisDriver::open(one)?,
            many => crate::redis::RedisDriver::open_cluster(many)?,
        }))
    }
    #[cfg(not(feature = "redis"))]
    pub(super) fn redis(url: &str, _nodes: &[&str]) -> Opened {
        Err(missing(url, "redis"))
    }

    #[cfg(feature = "etcd")]
    pub(super) fn etcd(_url: &str, members: &[&str]) -> Opened {
        let options = crate::etcd::EtcdOptions::default();
        Ok(Arc::new(crate::etcd::EtcdDriver::open(members, options)?))
    }
    #[cfg(not(feature = "etcd"))]
    pub(super) fn etcd(url: &str, _members: &[&str]) -> Opened {
        Err(missing(url, "etcd"))
    }
}

/// `url` with any password replaced.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

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
            "#,
        )
        .unwrap();
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
        let err = policy_from_vars("BREAKER_", vars(&[("BREAKER_OPENFOR", "1s")])).unwrap_err();
        assert!(err.to_string().contains("openfor"), "{err}");
        let err = policy_from_vars("BREAKER_", vars(&[("BREAKER_FAILURE_RATE", "2")])).unwrap_err();
        assert!(err.to_string().contains("failure_rate"), "{err}");
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
        ] {
            let err = match open_backend(url) {
                Ok(_) => panic!("{url} opened"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
