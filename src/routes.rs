//! The route table: (method, path) to a route, or to the 404/405 the contract asks for.

use crate::error::ApiError;
use crate::job::Pipeline;

/// Every endpoint of the public API. Path parameters are kept raw; their validation belongs
/// to the handler so that a malformed id is a 400, not a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    CreateCsvImport,
    CreateScan,
    CreateScanBatch,
    CreateEnrichment,
    JobState {
        job_id: String,
    },
    TokenRefresh,
    CancelById {
        job_id: String,
    },
    /// The legacy cancel routes that carry `{jobId}` in a JSON body.
    CancelByBody,
    Results {
        pipeline: Pipeline,
        job_id: String,
    },
    ProgressSocket,
    /// Creates a synthetic job; answered only when `ENABLE_TEST_ROUTES` is on.
    CreateSyntheticJob,
    /// A file of the job console; answered only when `CONSOLE_ENABLED` is on.
    Console(ConsoleAsset),
}

/// The job console's files: the page at `/` and the two files it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAsset {
    Page,
    Style,
    Script,
}

impl ConsoleAsset {
    pub const ALL: [ConsoleAsset; 3] = [Self::Page, Self::Style, Self::Script];

    /// The path the asset is served at.
    pub fn path(self) -> &'static str {
        match self {
            Self::Page => "/",
            Self::Style => "/console.css",
            Self::Script => "/console.js",
        }
    }
}

/// What the method and path resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Route(Route),
    /// A CORS preflight.
    Preflight,
}

const GET: &str = "GET, OPTIONS";
const POST: &str = "POST, OPTIONS";

/// Resolves a request line. `OPTIONS` on any path is a preflight (contract section 1); on a
/// known path another method is 405 with the allowed methods, and unknown paths are 404.
///
/// The synthetic-job route exists only when `test_routes` is on, and the console's paths only
/// when `console` is on; otherwise those paths are unknown like any other, so a production
/// deployment does not reveal them.
pub fn resolve(
    method: &str,
    path: &str,
    test_routes: bool,
    console: bool,
) -> Result<Resolved, ApiError> {
    if method == "OPTIONS" {
        return Ok(Resolved::Preflight);
    }
    let (route, allow) = match_path(path)
        .filter(|(route, _)| match route {
            Route::CreateSyntheticJob => test_routes,
            Route::Console(_) => console,
            _ => true,
        })
        .ok_or_else(|| ApiError::not_found(format!("no route for {path}")))?;
    let wanted = if allow == GET { "GET" } else { "POST" };
    if method == wanted {
        Ok(Resolved::Route(route))
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

fn match_path(path: &str) -> Option<(Route, &'static str)> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let found = match segments.as_slice() {
        ["health"] => (Route::Health, GET),
        ["api", "import", "csv"] | ["api", "import", "csv-gemini"] => {
            (Route::CreateCsvImport, POST)
        }
        ["api", "scan-bookshelf"] => (Route::CreateScan, POST),
        ["api", "scan-bookshelf", "batch"] => (Route::CreateScanBatch, POST),
        ["api", "enrichment", "batch"] | ["v1", "enrichment", "batch"] => {
            (Route::CreateEnrichment, POST)
        }
        ["api", "job-state", id] => (
            Route::JobState {
                job_id: id.to_string(),
            },
            GET,
        ),
        ["api", "token", "refresh"] => (Route::TokenRefresh, POST),
        ["api", "jobs", id, "cancel"] => (
            Route::CancelById {
                job_id: id.to_string(),
            },
            POST,
        ),
        ["api", "enrichment", "cancel"] | ["api", "scan-bookshelf", "cancel"] => {
            (Route::CancelByBody, POST)
        }
        ["v1", kind, "results", id] => {
            let pipeline = match *kind {
                "csv" => Pipeline::CsvImport,
                "scan" => Pipeline::AiScan,
                "enrichment" => Pipeline::BatchEnrichment,
                _ => return None,
            };
            let job_id = id.to_string();
            (Route::Results { pipeline, job_id }, GET)
        }
        ["ws", "progress"] => (Route::ProgressSocket, GET),
        ["api", "test", "jobs"] => (Route::CreateSyntheticJob, POST),
        [""] => (Route::Console(ConsoleAsset::Page), GET),
        ["console.css"] => (Route::Console(ConsoleAsset::Style), GET),
        ["console.js"] => (Route::Console(ConsoleAsset::Script), GET),
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn route(method: &str, path: &str) -> Route {
        match resolve(method, path, true, true) {
            Ok(Resolved::Route(r)) => r,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn resolves_every_route_and_alias() {
        let id = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";
        let table: &[(&str, String, Route)] = &[
            ("GET", "/health".into(), Route::Health),
            ("POST", "/api/import/csv".into(), Route::CreateCsvImport),
            (
                "POST",
                "/api/import/csv-gemini".into(),
                Route::CreateCsvImport,
            ),
            ("POST", "/api/scan-bookshelf".into(), Route::CreateScan),
            (
                "POST",
                "/api/scan-bookshelf/batch".into(),
                Route::CreateScanBatch,
            ),
            (
                "POST",
                "/api/enrichment/batch".into(),
                Route::CreateEnrichment,
            ),
            (
                "POST",
                "/v1/enrichment/batch".into(),
                Route::CreateEnrichment,
            ),
            (
                "GET",
                format!("/api/job-state/{id}"),
                Route::JobState { job_id: id.into() },
            ),
            ("POST", "/api/token/refresh".into(), Route::TokenRefresh),
            (
                "POST",
                format!("/api/jobs/{id}/cancel"),
                Route::CancelById { job_id: id.into() },
            ),
            ("POST", "/api/enrichment/cancel".into(), Route::CancelByBody),
            (
                "POST",
                "/api/scan-bookshelf/cancel".into(),
                Route::CancelByBody,
            ),
            (
                "GET",
                format!("/v1/csv/results/{id}"),
                Route::Results {
                    pipeline: Pipeline::CsvImport,
                    job_id: id.into(),
                },
            ),
            (
                "GET",
                format!("/v1/scan/results/{id}"),
                Route::Results {
                    pipeline: Pipeline::AiScan,
                    job_id: id.into(),
                },
            ),
            (
                "GET",
                format!("/v1/enrichment/results/{id}"),
                Route::Results {
                    pipeline: Pipeline::BatchEnrichment,
                    job_id: id.into(),
                },
            ),
            ("GET", "/ws/progress".into(), Route::ProgressSocket),
            ("POST", "/api/test/jobs".into(), Route::CreateSyntheticJob),
            ("GET", "/".into(), Route::Console(ConsoleAsset::Page)),
            (
                "GET",
                "/console.css".into(),
                Route::Console(ConsoleAsset::Style),
            ),
            (
                "GET",
                "/console.js".into(),
                Route::Console(ConsoleAsset::Script),
            ),
        ];
        for (method, path, want) in table {
            assert_eq!(&route(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_are_405() {
        let table: &[(&str, &str, ErrorCode)] = &[
            ("GET", "/nope", ErrorCode::NotFound),
            ("GET", "//", ErrorCode::NotFound),
            ("GET", "/console.js/", ErrorCode::NotFound),
            ("GET", "/console", ErrorCode::NotFound),
            ("GET", "/health/", ErrorCode::NotFound),
            ("GET", "/api/job-state", ErrorCode::NotFound),
            ("GET", "/v1/books/results/x", ErrorCode::NotFound),
            ("GET", "health", ErrorCode::NotFound),
            ("POST", "/health", ErrorCode::MethodNotAllowed),
            ("DELETE", "/api/import/csv", ErrorCode::MethodNotAllowed),
            ("GET", "/api/token/refresh", ErrorCode::MethodNotAllowed),
            ("PUT", "/ws/progress", ErrorCode::MethodNotAllowed),
            ("HEAD", "/health", ErrorCode::MethodNotAllowed),
            ("POST", "/", ErrorCode::MethodNotAllowed),
            ("HEAD", "/console.js", ErrorCode::MethodNotAllowed),
        ];
        for (method, path, code) in table {
            let err = resolve(method, path, true, true).unwrap_err();
            assert_eq!(err.code, *code, "{method} {path}");
        }
        assert_eq!(
            resolve("POST", "/health", true, true).unwrap_err().allow,
            Some("GET, OPTIONS")
        );
    }

    #[test]
    fn options_anywhere_is_a_preflight() {
        assert_eq!(
            resolve("OPTIONS", "/api/import/csv", false, false),
            Ok(Resolved::Preflight)
        );
        assert_eq!(
            resolve("OPTIONS", "/nope", false, false),
            Ok(Resolved::Preflight)
        );
    }

    #[test]
    fn the_test_route_is_unknown_unless_enabled() {
        for method in ["GET", "POST", "PUT"] {
            let err = resolve(method, "/api/test/jobs", false, true).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{method}");
        }
        assert_eq!(
            resolve("POST", "/api/test/jobs", true, false),
            Ok(Resolved::Route(Route::CreateSyntheticJob))
        );
    }

    #[test]
    fn the_console_is_unknown_unless_enabled() {
        for asset in ConsoleAsset::ALL {
            for method in ["GET", "POST", "HEAD"] {
                let err = resolve(method, asset.path(), true, false).unwrap_err();
                assert_eq!(err.code, ErrorCode::NotFound, "{method} {}", asset.path());
            }
            assert_eq!(
                resolve("GET", asset.path(), false, true),
                Ok(Resolved::Route(Route::Console(asset)))
            );
        }
    }
}
