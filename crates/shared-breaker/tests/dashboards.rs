//! The shipped dashboards (`dashboards/`): the Prometheus alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and every metric the Grafana
//! dashboard and the rules query is one the breakers emit (`shared_breaker::METRICS`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards")
}

/// The `breaker_*` metric names in `text`, a histogram's `_sum`, `_count` and `_bucket`
/// series named as their histogram.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("breaker_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| base.ends_with("_seconds"))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn assert_emitted(what: &str, queries: &[String]) {
    let known: Vec<&str> = shared_breaker::METRICS.iter().map(|(n, _, _)| *n).collect();
    let mut seen = 0;
    for query in queries {
        for name in metric_names(query) {
            assert!(
                known.contains(&name.as_str()),
                "{what} queries `{name}`, which no breaker emits ({known:?}): {query}"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "{what}: found only {seen} metrics in {queries:?}"
    );
}

#[test]
fn the_grafana_dashboard_queries_only_emitted_metrics() {
    let text = std::fs::read_to_string(dashboards().join("breaker-grafana.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a query").to_owned())
        .collect();
    assert_emitted("the Grafana dashboard", &queries);
    // Every metric shows somewhere.
    for (name, _, _) in shared_breaker::METRICS {
        assert!(
            queries
                .iter()
                .any(|q| metric_names(q).iter().any(|n| n == name)),
            "the dashboard shows nothing of {name}"
        );
    }
}

#[test]
fn the_alert_rules_query_only_emitted_metrics() {
    let text = std::fs::read_to_string(dashboards().join("breaker-alerts.yml")).unwrap();
    let queries: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(queries.len(), 3, "three rules");
    assert_emitted("the alert rules", &queries);
}

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let run = |args: &[&str]| {
        let out = Command::new("promtool")
            .current_dir(dashboards())
            .args(args)
            .output()
            .expect("promtool runs (Debian package `prometheus`, which cargo xtask test installs)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["check", "rules", "breaker-alerts.yml"]);
    run(&["test", "rules", "breaker-alerts.test.yml"]);
}
