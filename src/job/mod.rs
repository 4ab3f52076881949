//! A job's core, independent of its pipeline: the client-visible state machine, the persisted
//! record with its credential, the task schedule behind the one alarm, the write throttle, and
//! the message stream with its sequence numbers and replayable events.

pub mod record;
pub mod schedule;
pub mod state;
pub mod stream;
pub mod throttle;

pub use state::*;
