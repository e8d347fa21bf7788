//! Following a registry's redirects: where a Location leads (absolute, scheme-relative,
//! absolute path or relative path), only ever to http or https, and how many are followed.

use crate::err;
use crate::util::Result;

/// Redirects followed for one request: blobs are often redirected to a CDN or an object
/// store (docker follows those), never this often.
pub(super) const MAX_REDIRECTS: usize = 5;

/// Text from a registry shown in an error: bounded and escaped, so that it stays one line
/// and cannot drive the terminal.
pub(super) fn shown(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    cut.escape_debug().to_string()
}

/// `scheme://host[:port]` of a URL, lowercased.
pub(super) fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// Where a redirect from `from` to `location` (absolute, scheme-relative, absolute path or
/// relative path) leads; only to http and https.
pub(super) fn redirect_target(from: &str, location: &str) -> Result<String> {
    let loc = location.trim();
    let lower = loc.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(loc.to_string());
    }
    let scheme = from.split_once("://").map(|(s, _)| s).unwrap_or("http");
    let home = origin(from);
    if let Some(r) = loc.strip_prefix("//") {
        return Ok(format!("{scheme}://{r}"));
    }
    if loc.starts_with('/') {
        return Ok(format!("{home}{loc}"));
    }
    // "name:..." before any '/', '?' or '#' is another scheme (file:, ftp:, javascript:).
    let head = loc.split(['/', '?', '#']).next().unwrap_or("");
    if head.contains(':') || loc.is_empty() {
        return Err(err!(
            "redirected to {:?}: strata follows only http and https redirects",
            shown(loc)
        ));
    }
    let path = from
        .get(home.len()..)
        .unwrap_or("")
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let dir = path.rfind('/').map(|i| &path[..=i]).unwrap_or("/");
    Ok(format!("{home}{dir}{loc}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_like_a_browser_and_stay_on_http() {
        let from = "http://127.0.0.1:5000/v2/x/blobs/sha256:ab?x=1";
        let t = |l: &str| redirect_target(from, l).ok();
        assert_eq!(
            t("https://cdn.example.com/b?sig=1").as_deref(),
            Some("https://cdn.example.com/b?sig=1")
        );
        assert_eq!(t("//cdn:81/b").as_deref(), Some("http://cdn:81/b"));
        assert_eq!(t("/other").as_deref(), Some("http://127.0.0.1:5000/other"));
        assert_eq!(
            t("c?d=1").as_deref(),
            Some("http://127.0.0.1:5000/v2/x/blobs/c?d=1")
        );
        for bad in ["file:///etc/passwd", "ftp://h/x", "javascript:alert(1)", ""] {
            assert!(t(bad).is_none(), "{bad} followed");
        }
        assert_eq!(origin("HTTP://Host:1/a?b"), "http://host:1");
        assert_ne!(origin("http://h:1/a"), origin("http://h:2/a"));
    }
}
