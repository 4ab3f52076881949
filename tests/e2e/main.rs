//! End-to-end tests: the real worker under `wrangler dev` (workerd), driven over real HTTP and
//! WebSocket connections. Durations are shortened with `--var`; tests wait on events.
//!
//! Native only: the harness spawns processes and opens sockets.
#![cfg(not(target_arch = "wasm32"))]

mod support;

mod basics;
mod bounds;
mod compat;
mod console;
mod core;
mod csv;
mod enrich;
mod faults;
mod hostile;
mod idempotency;
mod inputs;
mod limits;
mod load;
mod resume;
mod scan;
mod security;
mod silent;
mod timing;
