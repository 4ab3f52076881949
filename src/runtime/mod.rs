//! The thin glue between the Workers runtime and the domain modules; only here is `worker::` named.

pub mod body;
pub mod console;
pub mod create;
pub mod edge;
pub mod entry;
pub mod http;
pub mod job_object;
pub mod provider;
pub mod rate_limiter;
pub mod store;
