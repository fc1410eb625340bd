//! `breaker dashboard`: one page with every breaker under the prefix (effective state,
//! counts, since, next probe) and a live timeline of transitions, fed by the same push as
//! `watch` through server-sent events. Read-only unless started with a control token; then
//! trip, disable and reset buttons send it, and each action is logged. The page has no
//! external assets (it works offline), and every state is written out, not only coloured.
//!
//! Routes: `/` the page; `/api/breakers` the rows of `list --json`; `/api/events` the
//! lines of `watch --json`, as server-sent events; `/api/config` whether control is on;
//! `POST /api/breakers/{name}/{trip|disable|reset}` with `Authorization: Bearer TOKEN`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared_breaker::DynDriver;
use tokio::sync::broadcast;

use crate::{Action, operate_on};

/// The page, whole: markup, style and script inline.
const PAGE: &str = include_str!("dashboard.html");

struct App {
    driver: Arc<dyn DynDriver>,
    timeout: Duration,
    token: Option<String>,
    events: broadcast::Sender<String>,
}

/// Serves the dashboard on `listen` until the process ends.
pub fn serve(
    driver: Arc<dyn DynDriver>,
    timeout: Duration,
    listen: SocketAddr,
    token: Option<String>,
) -> Result<(), String> {
    let (events, _) = broadcast::channel(1024);
    let app = Arc::new(App {
        driver: driver.clone(),
        timeout,
        token,
        events: events.clone(),
    });
    // The transitions, from the same watch as `breaker watch`, on a thread of its own.
    let feed = std::thread::Builder::new()
        .name("breaker-dashboard-watch".into())
        .spawn(move || {
            let mut send = |line: &crate::watch::Line| {
                let _ = events.send(serde_json::to_string(line).expect("a line serialises"));
            };
            crate::watch::watch(&driver, timeout, None, Duration::from_millis(20), &mut send)
        })
        .map_err(|e| format!("could not start the dashboard's watch: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the dashboard's runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "breaker dashboard: http://{bound}/ ({})",
            if app.token.is_some() {
                "control on"
            } else {
                "read-only"
            }
        );
        let router = axum::Router::new()
            .route("/", get(page))
            .route("/api/config", get(config))
            .route("/api/breakers", get(breakers))
            .route("/api/events", get(events_stream))
            .route("/api/breakers/{name}/{action}", post(control))
            .with_state(app);
        let serving = axum::serve(listener, router);
        tokio::select! {
            served = serving => served.map_err(|e| e.to_string()),
            watched = tokio::task::spawn_blocking(move || feed.join()) => match watched {
                Ok(Ok(Err(e))) => Err(format!("the dashboard's watch stopped: {e}")),
                _ => Err("the dashboard's watch stopped".into()),
            },
        }
    })
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn config(State(app): State<Arc<App>>) -> Response {
    json(serde_json::json!({ "control": app.token.is_some() }).to_string())
}

async fn breakers(State(app): State<Arc<App>>) -> Response {
    let (driver, timeout) = (app.driver.clone(), app.timeout);
    match tokio::task::spawn_blocking(move || crate::rows(&driver, timeout)).await {
        Ok(Ok(rows)) => json(serde_json::to_string(&rows).expect("rows serialise")),
        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn events_stream(
    State(app): State<Arc<App>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = app.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => return Some((Ok(Event::default().data(line)), rx)),
                // A slow page missed lines: it reloads the table on the next one.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Whether `headers` carry the control token (`Authorization: Bearer TOKEN`).
fn authorised(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

async fn control(
    State(app): State<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &app.token else {
        return (
            StatusCode::FORBIDDEN,
            "read-only dashboard: start it with --control-token to allow actions",
        )
            .into_response();
    };
    if !authorised(&headers, token) {
        eprintln!("breaker dashboard: refused {action} {name}: no or wrong control token");
        return (StatusCode::FORBIDDEN, "no or wrong control token").into_response();
    }
    let action = match action.as_str() {
        "trip" => Action::Trip,
        "disable" => Action::Disable,
        "reset" => Action::Reset,
        other => {
            return (StatusCode::NOT_FOUND, format!("no action `{other}`")).into_response();
        }
    };
    let (driver, timeout) = (app.driver.clone(), app.timeout);
    let logged = name.clone();
    let done = tokio::task::spawn_blocking(move || operate_on(&driver, &name, action, timeout));
    match done.await {
        Ok(Ok(row)) => {
            eprintln!("breaker dashboard: {logged}: {}", row.state);
            json(serde_json::to_string(&row).expect("a row serialises"))
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
