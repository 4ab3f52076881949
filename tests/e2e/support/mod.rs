//! The end-to-end harness: the worker under `wrangler dev`, clients, and fake providers.

pub mod client;
pub mod fake;
pub mod providers;
pub mod reference;
pub mod schema;
pub mod wrangler;

pub use client::*;
pub use wrangler::{SplitWorkers, Worker, WorkerOptions};

use tokio::sync::OnceCell;

/// Options every test worker starts with: development mode (no signing secret needed, as
/// under `npm run dev`), test routes on, fast task retries, and every log line, since tests
/// read the worker's own account of what it did.
pub fn test_options() -> WorkerOptions {
    WorkerOptions::default()
        .var("ENVIRONMENT", "development")
        .var("ENABLE_TEST_ROUTES", "true")
        .var("TASK_RETRY_BASE_MS", 50)
        .var("LOG_LEVEL", "debug")
}

/// One worker shared by the tests that need no special configuration; it lives for the
/// whole test process and its process group is killed at exit.
pub async fn shared() -> &'static Worker {
    static SHARED: OnceCell<Worker> = OnceCell::const_new();
    SHARED.get_or_init(|| Worker::start(test_options())).await
}
