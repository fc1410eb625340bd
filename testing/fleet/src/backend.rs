//! Choosing a back-end by URL for the test agents: `memory://` or `sqlite://PATH`.

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
    Err(format!(
        "unknown back-end URL {url:?}: use memory:// or sqlite://PATH"
    ))
}
