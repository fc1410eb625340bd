//! Connections to Redis (one server or a cluster), made lazily, and turning Redis errors
//! into driver errors that never show a password.

use std::time::Duration;

use breaker_core::{DriverError, DriverErrorKind};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

/// A connection to one server (reconnecting by itself) or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How to reach Redis.
#[allow(clippy::large_enum_variant)] // One per driver: its size does not matter.
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A connection made on first use, and made again after a failure to make it.
pub(crate) struct Lazy {
    target: Target,
    conn: OnceCell<Conn>,
    timeout: Duration,
}

impl Lazy {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Lazy {
            target,
            conn: OnceCell::new(),
            timeout,
        }
    }

    /// The connection; must run on the driver runtime.
    pub(crate) async fn get(&self, url: &str) -> Result<Conn, DriverError> {
        self.conn
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeout))
                            .set_response_timeout(Some(self.timeout))
                            .set_number_of_retries(1)
                            .set_max_delay(Duration::from_millis(500));
                        ConnectionManager::new_lazy_with_config(client.clone(), config)
                            .map(Conn::Single)
                            .map_err(|e| error(url, "connect", e))
                    }
                    Target::Cluster(client) => client
                        .get_async_connection()
                        .await
                        .map(Conn::Cluster)
                        .map_err(|e| error(url, "connect", e)),
                }
            })
            .await
            .cloned()
    }

    /// A plain client to one server, for the push channel (in a cluster, published messages
    /// reach every node).
    pub(crate) fn pubsub_client(
        &self,
        url: &str,
        tls_root_cert: Option<&[u8]>,
    ) -> Result<redis::Client, DriverError> {
        match (&self.target, tls_root_cert) {
            (Target::Single(client), _) => Ok(client.clone()),
            (Target::Cluster(_), None) => {
                redis::Client::open(url).map_err(|e| error(&redact(url), "connect", e))
            }
            (Target::Cluster(_), Some(pem)) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )
            .map_err(|e| error(&redact(url), "connect", e)),
        }
    }
}

/// A URL with its password replaced, for messages and `Debug`: the one helper of the
/// workspace, from `breaker-core`.
pub(crate) use breaker_core::redact_url as redact;

/// A driver error for a Redis error met while doing `what` against `url` (already
/// redacted).
pub(crate) fn error(url: &str, what: &str, e: redis::RedisError) -> DriverError {
    let kind = if e.is_timeout() {
        DriverErrorKind::Timeout
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.kind() == redis::ErrorKind::InvalidClientConfig
    {
        DriverErrorKind::Config
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        DriverErrorKind::Unavailable
    } else {
        DriverErrorKind::Other
    };
    // Redis errors name commands and servers, never the password of the URL.
    DriverError::new(kind, format!("redis {url}: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://user:s3cret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact("rediss://:s3cret@host"), "rediss://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host"), "redis://user@host");
    }
}
