//! Runtime configuration from wrangler `[vars]` and secrets (contract section 7), with defaults.

use crate::logline::Level;
use crate::time::{Millis, SECOND_MS};

pub const DEFAULT_GOOGLE_BOOKS_API_BASE: &str = "https://www.googleapis.com/books/v1";
pub const DEFAULT_OPENLIBRARY_API_BASE: &str = "https://openlibrary.org";
pub const DEFAULT_GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-flash";

/// Signs tokens and ids in development mode when the `TOKEN_SIGNING_KEY` secret is absent.
/// It is in the public repository, so anyone can sign with it: production mode never uses it
/// (without the secret it answers 503 instead).
pub const DEVELOPMENT_SIGNING_KEY: &str = "bookstrack-jobs-development-signing-key";

/// `ENVIRONMENT`: what the deployment is for (contract 9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The default: the `TOKEN_SIGNING_KEY` secret is required.
    Production,
    /// `npm run dev` and the tests: without the secret, the development key signs.
    Development,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Development => "development",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub token_ttl_ms: Millis,
    pub token_refresh_window_ms: Millis,
    pub ready_timeout_ms: Millis,
    pub results_ttl_ms: Millis,
    pub scan_confidence_threshold: f64,
    /// `None` means any origin (`*`).
    pub allowed_origins: Option<Vec<String>>,
    pub google_books_api_base: String,
    pub openlibrary_api_base: String,
    pub gemini_api_base: String,
    pub gemini_model: String,
    pub gemini_api_key: Option<String>,
    pub google_books_api_key: Option<String>,
    pub token_signing_key: String,
    /// True when `TOKEN_SIGNING_KEY` is not set and `token_signing_key` is the public
    /// development key.
    pub signing_key_is_default: bool,
    pub environment: Environment,
    /// Exposes `POST /api/test/jobs` (synthetic jobs) for the test suite and benchmarks.
    pub enable_test_routes: bool,
    /// Serves the job console page at `/` (`CONSOLE_ENABLED`, default off; `npm run dev` turns
    /// it on). Off, `/` and the console's assets are unknown paths (404).
    pub console_enabled: bool,
    /// First retry delay of a failing task; doubled per attempt.
    pub task_retry_base_ms: Millis,
    /// Deadlines of one provider call (contract 9.6): past them a call is a retryable failure.
    pub gemini_timeout_ms: Millis,
    pub books_api_timeout_ms: Millis,
    /// The most tokens Gemini may write for one photo, and how many of them it may spend
    /// thinking (see `pipelines::scan::gemini::OutputBudget`).
    pub gemini_max_output_tokens: u32,
    pub gemini_thinking_budget: u32,
    /// A socket silent this long may be closed (4000) to make room for a new one (9.4).
    pub socket_idle_ms: Millis,
    /// Development only (`FAULT_FAIL_WRITES`): the first this-many checkpoint writes of every
    /// running job fail, counted with the job's stored write failures, to exercise recovery.
    pub fault_fail_writes: u32,
    /// The least important log lines written (`LOG_LEVEL`, default `info`).
    pub log_level: Level,
    /// Values that could not be parsed and fell back to their default, for a log line.
    pub warnings: Vec<String>,
}

impl Config {
    /// Builds the configuration from a lookup of variables and secrets by name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut warnings = Vec::new();
        let text = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut number = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match text(name) {
                None => default,
                Some(raw) => match raw.parse::<u64>() {
                    Ok(v) if (min..=max).contains(&v) => v,
                    _ => {
                        warnings.push(format!("{name}={raw:?} is not a whole number in {min}..={max}; using {default}"));
                        default
                    }
                },
            }
        };
        const YEAR_SECS: u64 = 366 * 86_400;
        let token_ttl = number("TOKEN_TTL_SECS", 7_200, 1, YEAR_SECS);
        let window = number("TOKEN_REFRESH_WINDOW_SECS", 1_800, 0, YEAR_SECS);
        let ready = number("READY_TIMEOUT_SECS", 30, 0, 86_400);
        let results_ttl = number("RESULTS_TTL_SECS", 86_400, 1, YEAR_SECS);
        let retry_base = number("TASK_RETRY_BASE_MS", 1_000, 1, 600_000);
        let gemini_timeout = number("GEMINI_TIMEOUT_SECS", 60, 1, 600);
        let books_timeout = number("BOOKS_API_TIMEOUT_SECS", 10, 1, 600);
        let socket_idle = number("SOCKET_IDLE_SECS", 120, 1, 86_400);
        let max_output_tokens = number("GEMINI_MAX_OUTPUT_TOKENS", 16_384, 256, 65_536) as u32;
        let thinking_budget = number("GEMINI_THINKING_BUDGET", 0, 0, 24_576) as u32;
        let fault_fail_writes = number("FAULT_FAIL_WRITES", 0, 0, 1_000) as u32;
        let environment = match text("ENVIRONMENT")
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("production") => Environment::Production,
            Some("development") => Environment::Development,
            Some(other) => {
                // An unknown name must not relax anything: production it is.
                warnings.push(format!(
                    "ENVIRONMENT={other:?} is not production or development; using production"
                ));
                Environment::Production
            }
        };
        let fault_fail_writes = if environment == Environment::Development {
            fault_fail_writes
        } else {
            if fault_fail_writes > 0 {
                warnings.push("FAULT_FAIL_WRITES is ignored outside development mode".into());
            }
            0
        };

        let threshold = match text("SCAN_CONFIDENCE_THRESHOLD") {
            None => 0.7,
            Some(raw) => match raw.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => v,
                _ => {
                    warnings.push(format!(
                        "SCAN_CONFIDENCE_THRESHOLD={raw:?} is not in 0..=1; using 0.7"
                    ));
                    0.7
                }
            },
        };
        let allowed_origins = text("ALLOWED_ORIGINS").and_then(|raw| {
            let list: Vec<String> = raw
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect();
            (!list.is_empty() && !list.iter().any(|o| o == "*")).then_some(list)
        });
        let base = |name: &str, default: &str| {
            text(name)
                .unwrap_or_else(|| default.to_string())
                .trim_end_matches('/')
                .to_string()
        };
        let log_level = match text("LOG_LEVEL") {
            None => Level::Info,
            Some(raw) => Level::parse(&raw).unwrap_or_else(|| {
                warnings.push(format!(
                    "LOG_LEVEL={raw:?} is not debug, info, warn or error; using info"
                ));
                Level::Info
            }),
        };
        let signing = text("TOKEN_SIGNING_KEY");
        Self {
            token_ttl_ms: token_ttl * SECOND_MS,
            token_refresh_window_ms: window * SECOND_MS,
            ready_timeout_ms: ready * SECOND_MS,
            results_ttl_ms: results_ttl * SECOND_MS,
            scan_confidence_threshold: threshold,
            allowed_origins,
            google_books_api_base: base("GOOGLE_BOOKS_API_BASE", DEFAULT_GOOGLE_BOOKS_API_BASE),
            openlibrary_api_base: base("OPENLIBRARY_API_BASE", DEFAULT_OPENLIBRARY_API_BASE),
            gemini_api_base: base("GEMINI_API_BASE", DEFAULT_GEMINI_API_BASE),
            gemini_model: text("GEMINI_MODEL").unwrap_or_else(|| DEFAULT_GEMINI_MODEL.to_string()),
            gemini_api_key: text("GEMINI_API_KEY"),
            google_books_api_key: text("GOOGLE_BOOKS_API_KEY"),
            signing_key_is_default: signing.is_none(),
            token_signing_key: signing.unwrap_or_else(|| DEVELOPMENT_SIGNING_KEY.to_string()),
            environment,
            enable_test_routes: flag(text("ENABLE_TEST_ROUTES")),
            console_enabled: flag(text("CONSOLE_ENABLED")),
            task_retry_base_ms: retry_base,
            gemini_timeout_ms: gemini_timeout * SECOND_MS,
            books_api_timeout_ms: books_timeout * SECOND_MS,
            socket_idle_ms: socket_idle * SECOND_MS,
            gemini_max_output_tokens: max_output_tokens,
            gemini_thinking_budget: thinking_budget.min(max_output_tokens),
            fault_fail_writes,
            log_level,
            warnings,
        }
    }

    /// Why `/health` and every job route answer 503 `SERVICE_UNAVAILABLE`, if they do: in
    /// production mode without the `TOKEN_SIGNING_KEY` secret, where the only key at hand is
    /// the public development one, with which anyone could sign ids and tokens.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        (self.environment == Environment::Production && self.signing_key_is_default)
            .then_some("TOKEN_SIGNING_KEY is not set")
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
    pub fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        match &self.allowed_origins {
            None => Some("*".to_string()),
            Some(list) => origin
                .map(|o| o.trim_end_matches('/'))
                .filter(|o| list.iter().any(|allowed| allowed.eq_ignore_ascii_case(o)))
                .map(str::to_string),
        }
    }
}

/// An on/off variable: on when `1`, `true`, `yes` or `on`, off otherwise and when unset.
fn flag(value: Option<String>) -> bool {
    matches!(value.as_deref(), Some("1" | "true" | "yes" | "on"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_contract_ones() {
        let c = config(&[]);
        assert_eq!(c.token_ttl_ms, 7_200_000);
        assert_eq!(c.token_refresh_window_ms, 1_800_000);
        assert_eq!(c.ready_timeout_ms, 30_000);
        assert_eq!(c.results_ttl_ms, 86_400_000);
        assert_eq!(c.scan_confidence_threshold, 0.7);
        assert_eq!(c.allowed_origins, None);
        assert_eq!(c.google_books_api_base, DEFAULT_GOOGLE_BOOKS_API_BASE);
        assert_eq!(c.openlibrary_api_base, DEFAULT_OPENLIBRARY_API_BASE);
        assert_eq!(c.gemini_api_base, DEFAULT_GEMINI_API_BASE);
        assert!(c.gemini_api_key.is_none());
        assert_eq!(c.gemini_timeout_ms, 60_000);
        assert_eq!(c.books_api_timeout_ms, 10_000);
        assert_eq!(c.socket_idle_ms, 120_000);
        assert_eq!(
            (c.gemini_max_output_tokens, c.gemini_thinking_budget),
            (16_384, 0)
        );
        assert!(!c.enable_test_routes);
        assert!(!c.console_enabled);
        assert!(c.signing_key_is_default);
        assert_eq!(c.environment, Environment::Production);
        assert_eq!(c.log_level, Level::Info);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn overrides_and_bad_values() {
        let c = config(&[
            ("TOKEN_TTL_SECS", "8"),
            ("READY_TIMEOUT_SECS", "-1"),
            ("RESULTS_TTL_SECS", "abc"),
            ("SCAN_CONFIDENCE_THRESHOLD", "1.5"),
            ("GEMINI_API_BASE", "http://127.0.0.1:9000/v1beta/"),
            ("GEMINI_API_KEY", "  "),
            ("ENABLE_TEST_ROUTES", "true"),
            ("CONSOLE_ENABLED", "on"),
            ("TOKEN_SIGNING_KEY", "s3cret"),
            ("LOG_LEVEL", "debug"),
        ]);
        assert_eq!(c.token_ttl_ms, 8_000);
        assert_eq!(c.ready_timeout_ms, 30_000);
        assert_eq!(c.results_ttl_ms, 86_400_000);
        assert_eq!(c.scan_confidence_threshold, 0.7);
        assert_eq!(c.gemini_api_base, "http://127.0.0.1:9000/v1beta");
        assert_eq!(c.gemini_api_key, None, "blank secrets count as missing");
        assert!(c.enable_test_routes);
        assert!(c.console_enabled);
        assert_eq!(c.token_signing_key, "s3cret");
        assert!(!c.signing_key_is_default);
        assert_eq!(c.log_level, Level::Debug);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    #[test]
    fn fault_injection_exists_only_in_development_mode() {
        let table = [
            (None, "3", 0, 1),
            (Some("production"), "3", 0, 1),
            (Some("development"), "3", 3, 0),
            (Some("Development"), "2", 2, 0),
            (Some("development"), "0", 0, 0),
        ];
        for (environment, faults, want, warnings) in table {
            let mut vars = vec![("FAULT_FAIL_WRITES", faults)];
            if let Some(e) = environment {
                vars.push(("ENVIRONMENT", e));
            }
            let c = config(&vars);
            assert_eq!(c.fault_fail_writes, want, "{environment:?}");
            assert_eq!(c.warnings.len(), warnings, "{environment:?}");
        }
    }

    #[test]
    fn cors_origins() {
        let any = config(&[("ALLOWED_ORIGINS", "*")]);
        assert_eq!(
            any.cors_origin(Some("https://a.example")).as_deref(),
            Some("*")
        );
        let listed = config(&[("ALLOWED_ORIGINS", "https://a.example, https://b.example/")]);
        let table = [
            (Some("https://a.example"), Some("https://a.example")),
            (Some("https://B.example"), Some("https://B.example")),
            (Some("https://c.example"), None),
            (None, None),
        ];
        for (origin, want) in table {
            assert_eq!(listed.cors_origin(origin).as_deref(), want, "{origin:?}");
        }
    }

    #[test]
    fn production_mode_needs_the_signing_key() {
        // (ENVIRONMENT, TOKEN_SIGNING_KEY, mode, unavailable, key used, warnings)
        type Row = (
            Option<&'static str>,
            Option<&'static str>,
            Environment,
            bool,
            &'static str,
            usize,
        );
        let dev = DEVELOPMENT_SIGNING_KEY;
        let table: &[Row] = &[
            (None, None, Environment::Production, true, dev, 0),
            (
                None,
                Some("s3cret"),
                Environment::Production,
                false,
                "s3cret",
                0,
            ),
            (
                Some("production"),
                None,
                Environment::Production,
                true,
                dev,
                0,
            ),
            (
                Some(" Production "),
                Some("s3cret"),
                Environment::Production,
                false,
                "s3cret",
                0,
            ),
            (
                Some("development"),
                None,
                Environment::Development,
                false,
                dev,
                0,
            ),
            (
                Some("DEVELOPMENT"),
                Some("s3cret"),
                Environment::Development,
                false,
                "s3cret",
                0,
            ),
            (Some(""), None, Environment::Production, true, dev, 0),
            (Some("dev"), None, Environment::Production, true, dev, 1),
            (
                Some("staging"),
                Some("s3cret"),
                Environment::Production,
                false,
                "s3cret",
                1,
            ),
            (
                Some("development"),
                Some("  "),
                Environment::Development,
                false,
                dev,
                0,
            ),
        ];
        for (env, key, mode, unavailable, used, warnings) in table {
            let mut pairs = Vec::new();
            if let Some(env) = env {
                pairs.push(("ENVIRONMENT", *env));
            }
            if let Some(key) = key {
                pairs.push(("TOKEN_SIGNING_KEY", *key));
            }
            let c = config(&pairs);
            let what = format!("ENVIRONMENT={env:?} TOKEN_SIGNING_KEY={key:?}");
            assert_eq!(c.environment, *mode, "{what}");
            assert_eq!(c.unavailable_reason().is_some(), *unavailable, "{what}");
            assert_eq!(c.token_signing_key, *used, "{what}");
            assert_eq!(c.warnings.len(), *warnings, "{what}: {:?}", c.warnings);
        }
    }
}
