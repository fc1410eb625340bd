//! Choosing a back-end by URL for the test agents: `memory://`, `sqlite://PATH`,
//! `redis://HOST:PORT`, `redis-cluster://HOST:PORT,HOST:PORT,...`, or
//! `etcd://HOST:PORT,HOST:PORT,...`.

use std::sync::Arc;

use breaker::DynDriver;

/// Opens the driver that `url` names.
pub fn open(url: &str) -> Result<Arc<dyn DynDriver>, String> {
    if url == "memory://" {
        return Ok(Arc::new(breaker::memory::MemoryDriver::new()));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        return breaker::sqlite::SqliteDriver::open(path)
            .map(|d| Arc::new(d) as Arc<dyn DynDriver>)
            .map_err(|e| format!("cannot open {url}: {e}"));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return breaker::redis::RedisDriver::open(url)
            .map(|d| Arc::new(d) as Arc<dyn DynDriver>)
            .map_err(|e| e.to_string());
    }
    if let Some(nodes) = url.strip_prefix("redis-cluster://") {
        let urls: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        return breaker::redis::RedisDriver::open_cluster(&urls)
            .map(|d| Arc::new(d) as Arc<dyn DynDriver>)
            .map_err(|e| e.to_string());
    }
    if let Some(members) = url.strip_prefix("etcd://") {
        let endpoints: Vec<String> = members.split(',').map(|m| format!("http://{m}")).collect();
        let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        return breaker::etcd::EtcdDriver::open(&endpoints, breaker::etcd::EtcdOptions::default())
            .map(|d| Arc::new(d) as Arc<dyn DynDriver>)
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "unknown back-end URL {url:?}: use memory://, sqlite://PATH, redis://HOST:PORT, \
         redis-cluster://HOST:PORT,... or etcd://HOST:PORT,..."
    ))
}
