//! bookstrack-jobs: the long jobs of a book-tracking app, one Durable Object per job, with
//! progress streamed over hibernating WebSockets.
//!
//! # Layout
//!
//! Dependencies point one way, from the glue down to the leaves. Only [`runtime`] names
//! `worker::`; everything else takes the current time as a parameter and is tested natively
//! with `cargo test`.
//!
//! Glue:
//! - [`runtime`]: the Worker entry point, the job's Durable Object (a shell around the engine
//!   that implements [`host::Host`] over workerd), the rate limiter object, storage and fetch,
//!   and the job console page (`console/`, embedded at build time, served at `/` when enabled).
//!
//! The job machinery:
//! - [`engine`]: one job's life over a [`host::Host`]: requests, sockets, the alarm that runs
//!   due tasks and races a pipeline step against them, progress, checkpoints and endings.
//! - [`pipelines`]: one folder per pipeline (CSV import, shelf scan, batch enrichment, the
//!   synthetic test pipeline), each with its parsing, provider formats and step logic; the
//!   CSV import reads real-world exports (dialects, repairs, merged duplicates:
//!   docs/IMPORT.md), and `pipelines::provider_body` reads provider answers whatever their
//!   encoding.
//! - [`pipeline`]: the contract between them: the `Pipeline` trait and the `Ctx` a step sees.
//! - [`job`]: the job core: state machine, persisted record, task schedule, write throttle.
//! - [`host`]: what a job needs from its machine, and the values it trades in.
//! - [`keys`]: every storage key.
//! - [`internal`]: the Worker-to-object creation message.
//! - [`results`]: paged results: the page asked for, cursors, the page's byte budget.
//!
//! Shared domain:
//! - [`routes`]: the route table, and the 404/405 answers.
//! - [`limits`]: every request-size limit, and the checks on the request line.
//! - [`json_body`]: small JSON bodies read strictly (UTF-8, an object at the root).
//! - [`rate_limit`]: per-client buckets and the sliding window behind 429.
//! - [`error`], [`envelope`]: the one error type and the JSON envelope every answer wears.
//! - [`answers`]: the data of the creation, refresh, cancel and health answers.
//! - `schema` (native builds only): docs/schema/protocol.json, the JSON Schema of every
//!   message and answer, generated from these types.
//! - [`config`]: wrangler vars and secrets, with the contract's defaults.
//! - [`ids`], [`token`]: job ids; token issuing, hashing, expiry and refresh rules.
//! - [`protocol`]: WebSocket messages, client message parsing, close codes, the upgrade query.
//! - [`logline`]: structured, credential-free log lines.
//! - [`isbn`]: ISBN-10/13 validation and conversion, shared by every pipeline.
//! - [`multipart`]: multipart/form-data bodies.
//! - [`text`]: text cut to a byte budget and cleared of control characters.
//! - [`time`], [`base64`]: small helpers that would not justify a crate.

/// A test fixture under `tests/fixtures/<dir>/<name>`, compiled into the test binary.
#[cfg(test)]
macro_rules! fixture {
    ($dir:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $dir,
            "/",
            $name
        ))
    };
}

/// A binary test fixture under `tests/fixtures/<dir>/<name>` (a body with a byte-order mark,
/// UTF-16 text), compiled into the test binary as bytes.
#[cfg(test)]
macro_rules! fixture_bytes {
    ($dir:literal, $name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $dir,
            "/",
            $name
        ))
        .as_slice()
    };
}

pub mod answers;
pub mod base64;
pub mod config;
pub mod cost;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod host;
pub mod ids;
pub mod internal;
pub mod isbn;
pub mod job;
pub mod json_body;
pub mod keys;
pub mod limits;
pub mod logline;
pub mod multipart;
pub mod pipeline;
pub mod pipelines;
pub mod protocol;
pub mod rate_limit;
pub mod results;
pub mod routes;
#[cfg(not(target_arch = "wasm32"))]
pub mod schema;
pub mod text;
pub mod time;
pub mod token;

pub mod runtime;

/// The crate version and the git commit it was built from, stamped by `build.rs`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("BOOKSTRACK_GIT_COMMIT");
