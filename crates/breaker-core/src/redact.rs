//! Keeping secrets out of every output: the one helper that every driver, the facade's
//! configuration and the CLI use to show a back-end address.

/// `url` with any password replaced by `***`, for messages, `Debug` output and logs.
///
/// It assumes nothing of the input, since a mistyped URL is exactly when it is printed: the
/// user information is whatever comes before the last `@` and after the scheme (`redis://`,
/// or a mangled `redis:/`, or none at all), and whatever follows its first `:` is the
/// password, `@` and `/` included.
///
/// ```
/// use breaker_core::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/2"), "redis://app:***@10.0.0.5:6379/2");
/// assert_eq!(redact_url("redis:/app:s3cret@host"), "redis:/app:***@host");
/// assert_eq!(redact_url("etcd://root:p@ss/word@h:2379"), "etcd://root:***@h:2379");
/// assert_eq!(redact_url("sqlite:///var/lib/b.db"), "sqlite:///var/lib/b.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((head, host)) = url.rsplit_once('@') else {
        return url.to_owned();
    };
    // The scheme and its slashes, however mistyped: up to `://`, else up to the last `/`
    // before the user information's first `:`, else nothing.
    let scheme_end = match head.find("://") {
        Some(i) => i + 3,
        None => {
            let first_colon = head.find(':').unwrap_or(head.len());
            // `redis:/user:pw`: the `:/` of the scheme comes before the user's `:`.
            match head.find(":/") {
                Some(i) if i <= first_colon => {
                    let after = &head[i + 1..];
                    i + 1 + after.len() - after.trim_start_matches('/').len()
                }
                _ => 0,
            }
        }
    };
    let (scheme, userinfo) = head.split_at(scheme_end);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_password_survives_any_form() {
        let secret = "hunter2";
        for url in [
            "redis://u:hunter2@h:6379",
            "redis://:hunter2@h:6379/0",
            "rediss://u:hunter2@h",
            "redis:/u:hunter2@h",
            "redis:u:hunter2@h",
            "u:hunter2@h",
            "etcds://u:hunter2@host:",
            "http://root:hunter2@127.0.0.1:2379",
            "etcd://u:hunt@er2@h",
            "redis://u:hunter2@@h",
            "redis://u:x/hunter2@h",
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains(secret) && !shown.contains("er2@"),
                "{url} -> {shown}"
            );
            assert!(shown.contains("***"), "{url} -> {shown}");
        }
        for plain in [
            "redis://h:6379",
            "sqlite:///tmp/x.db",
            "memory://",
            "nonsense",
            "",
        ] {
            assert_eq!(redact_url(plain), plain);
        }
        assert_eq!(
            redact_url("redis://user@h"),
            "redis://user@h",
            "a user alone is no secret"
        );
    }
}
