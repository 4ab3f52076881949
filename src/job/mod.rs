//! A job's core, independent of its pipeline: the client-visible state machine, the persisted
//! record with its credential, the task schedule behind the one alarm, and the write throttle.

pub mod record;
pub mod schedule;
pub mod state;
pub mod throttle;

pub use state::*;
