//! Serves the job console (`/`, `/console.css`, `/console.js`), embedded at build time.
//!
//! The console is a browser client of the public API and the progress socket, nothing more:
//! it creates jobs over the same routes the phone uses and keeps tokens in page memory. It
//! is served only when `CONSOLE_ENABLED` is on (the route table answers 404 otherwise).

use crate::routes::ConsoleAsset;
use worker::{Headers, Response};

/// Everything the page needs comes from the worker itself: its own script and stylesheet,
/// and `fetch`/`WebSocket` to its own origin (`'self'` covers `ws:`/`wss:` to the same host).
/// Images are limited to the page's own origin and `data:` URLs: enrichment cover URLs point
/// at the providers' hosts, so the page shows them as links instead of loading them (a strict
/// page never contacts a third party on its own). No inline script or style, no eval, and
/// with Trusted Types required the script cannot write HTML strings into the page at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
trusted-types 'none'";

const PAGE: &str = include_str!("../../console/index.html");
const STYLE: &str = include_str!("../../console/console.css");
const SCRIPT: &str = include_str!("../../console/console.js");

/// The media type and body of an asset.
pub fn content(asset: ConsoleAsset) -> (&'static str, &'static str) {
    match asset {
        ConsoleAsset::Page => ("text/html; charset=utf-8", PAGE),
        ConsoleAsset::Style => ("text/css; charset=utf-8", STYLE),
        ConsoleAsset::Script => ("text/javascript; charset=utf-8", SCRIPT),
    }
}

/// The 200 answer for an asset, with the security headers every console file carries.
pub fn response(asset: ConsoleAsset) -> Response {
    let (media_type, body) = content(asset);
    let headers = Headers::new();
    // Constant names and values: setting them cannot fail.
    for (name, value) in [
        ("content-type", media_type),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        let _ = headers.set(name, value);
    }
    Response::builder()
        .with_status(200)
        .with_headers(headers)
        .fixed(body.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_exactly_the_served_assets_and_nothing_external() {
        let (_, page) = content(ConsoleAsset::Page);
        for asset in [ConsoleAsset::Style, ConsoleAsset::Script] {
            assert!(page.contains(&format!("\"{}\"", asset.path())), "{asset:?}");
        }
        for (_, body) in ConsoleAsset::ALL.map(content) {
            for needle in [
                "http://", "//cdn", "<style", " style=", "onclick=", "@import",
            ] {
                assert!(!body.contains(needle), "{needle:?} in an asset");
            }
        }
        // The only script is the external one: no inline code for the policy to refuse.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script type=\"module\" src=\"/console.js\"></script>"));
    }

    #[test]
    fn the_script_never_stores_tokens_or_writes_html() {
        let (_, script) = content(ConsoleAsset::Script);
        for needle in [
            "localStorage",
            "sessionStorage",
            "indexedDB",
            "document.cookie",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "history.pushState",
            "history.replaceState",
            "location.hash =",
            "eval(",
        ] {
            assert!(!script.contains(needle), "{needle:?} in console.js");
        }
    }

    #[test]
    fn the_policy_is_strict() {
        for needle in ["'unsafe-inline'", "'unsafe-eval'", "http:", "https:", "*"] {
            assert!(!CONTENT_SECURITY_POLICY.contains(needle), "{needle:?}");
        }
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
    }
}
