//! bookstrack-jobs: the long jobs of a book-tracking app, one Durable Object per job, with
//! progress streamed over hibernating WebSockets.
//!
//! # Layout
//!
//! The domain modules never name a `worker::` type; they take the current time as a
//! parameter and are tested natively with `cargo test`. The `runtime` module is the thin glue
//! that decodes requests and events, calls the domain, and performs the I/O.
//!
//! Domain:
//! - [`routes`]: the route table, and the 404/405 answers.
//! - [`limits`]: every request-size limit, and the checks on the request line.
//! - [`json_body`]: small JSON bodies read strictly (UTF-8, an object at the root).
//! - [`rate_limit`]: per-client buckets and the sliding window behind 429.
//! - [`error`], [`envelope`]: the one error type and the JSON envelope every answer wears.
//! - [`config`]: wrangler vars and secrets, with the contract's defaults.
//! - [`ids`], [`token`]: job ids; token issuing, hashing, expiry and refresh rules.
//! - [`job`]: the job state machine and its versioning.
//! - [`jobcore`]: a job's persisted core and the rules every event applies to it.
//! - [`protocol`]: WebSocket messages, client message parsing, close codes.
//! - [`schedule`]: the persisted task set behind a job's single alarm.
//! - [`throttle`]: when progress is persisted and how often it is sent.
//! - [`work`]: the per-pipeline progress persisted beside the core.
//! - [`synthetic`]: a test-only job kind that processes N items at a chosen pace.
//! - [`internal`]: the Worker-to-object creation message.
//! - [`logline`]: structured, credential-free log lines.
//! - [`isbn`]: ISBN-10/13 validation and conversion, shared by every pipeline.
//! - [`csv_import`]: resumable CSV parsing of real-world exports (dialects, repairs, merged
//!   duplicates; docs/IMPORT.md) and the mapping of export formats to books.
//! - [`scan`]: image type detection, Gemini requests and responses, scan results.
//! - [`enrich`]: Google Books and Open Library queries, parsing and match scoring.
//! - `pipelines::provider_body`: provider answer bytes as text, whatever their encoding.
//! - [`multipart`]: multipart/form-data bodies.
//! - [`time`], [`base64`]: small helpers that would not justify a crate.
//!
//! Glue:
//! - [`runtime`]: the Worker entry point, HTTP helpers and the Durable Object classes.

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

pub mod base64;
pub mod config;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod internal;
pub mod isbn;
pub mod job;
pub mod json_body;
pub mod limits;
pub mod logline;
pub mod multipart;
pub mod pipelines;
pub mod protocol;
pub mod rate_limit;
pub mod routes;
pub mod time;
pub mod token;

pub mod runtime;

/// The crate version and the git commit it was built from, stamped by `build.rs`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("BOOKSTRACK_GIT_COMMIT");
