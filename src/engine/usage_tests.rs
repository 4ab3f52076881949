//! What the engine counts for a job's `job.cost` line: counted in memory, stored with the job's own writes.

use super::testing::Sim;
use super::tests::{config, open, run_to_end, say, T0};
use crate::cost::Usage;
use crate::job::record::JobRecord;
use crate::keys;

/// A synthetic job of `items` items, 7 to a chunk.
fn synthetic(sim: &mut Sim, items: u64) {
    super::tests::synthetic_job(sim, items);
}

fn logged_cost(sim: &Sim) -> Usage {
    let lines = sim.host.logged("job.cost");
    assert_eq!(lines.len(), 1, "one job.cost line: {lines:?}");
    serde_json::from_value(lines[0].clone()).unwrap()
}

fn stored_usage(sim: &Sim) -> Usage {
    let core = &sim.host.storage()[keys::CORE];
    core.json::<JobRecord>().unwrap().usage
}

#[test]
fn a_job_logs_what_its_object_did_once_at_its_end() {
    let mut sim = Sim::new(config(&[]), T0);
    synthetic(&mut sim, 20);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    say(&mut sim, &socket, r#"{ "type": "ping" }"#);
    run_to_end(&mut sim, T0 + 60_000);
    let cost = logged_cost(&sim);
    assert_eq!(cost.messages_in, 2);
    assert_eq!(
        cost.messages_out,
        socket.messages().len() as u64,
        "{:?}",
        socket.kinds()
    );
    // Three chunks of seven, each an alarm; the writes and alarm sets up to the end counted
    // (the alarm set after the line, for the cleanup, is not).
    assert!(cost.alarms >= 3, "{cost:?}");
    let sets = sim.engine.io().alarm_sets.get();
    assert!(
        cost.alarm_sets >= 1 && cost.alarm_sets < sets,
        "{cost:?}, {sets}"
    );
    assert!(
        cost.rows_written >= sim.engine.io().writes.get(),
        "{cost:?}"
    );
    let line = &sim.host.logged("job.cost")[0];
    assert_eq!(line["ended"], "completed");
    assert!(line["dollars"].as_f64().is_some_and(|d| d > 0.0), "{line}");
    // What was stored with the end is what was counted up to that write.
    let stored = stored_usage(&sim);
    assert!(stored.alarms >= 3 && stored.rows_written > 0, "{stored:?}");
    assert!(stored.rows_written <= cost.rows_written);
}

#[test]
fn counts_survive_an_eviction_through_the_writes_the_job_makes_anyway() {
    let mut sim = Sim::new(config(&[]), T0);
    synthetic(&mut sim, 40);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    sim.run_until(T0 + 250);
    let before = stored_usage(&sim);
    assert!(before.alarms >= 1, "stored with a checkpoint: {before:?}");
    sim.evict();
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    run_to_end(&mut sim, T0 + 60_000);
    let cost = logged_cost(&sim);
    assert!(cost.alarms > before.alarms, "{before:?} then {cost:?}");
    assert!(cost.rows_written > before.rows_written);
    // The reload read the job back: its rows are counted too.
    assert!(
        cost.rows_read >= before.rows_read + 2,
        "{before:?} then {cost:?}"
    );
}

#[test]
fn awake_time_runs_from_the_first_event_in_flight_to_the_end_of_the_last() {
    let mut sim = Sim::new(config(&[]), T0);
    synthetic(&mut sim, 1_000);
    sim.engine.enter();
    sim.run_until(T0 + 200);
    sim.engine.enter();
    sim.run_until(T0 + 300);
    sim.engine.leave();
    assert_eq!(
        sim.engine.usage().unwrap().awake_ms,
        300,
        "the running event counts"
    );
    sim.run_until(T0 + 500);
    sim.engine.leave();
    sim.run_until(T0 + 900);
    assert_eq!(
        sim.engine.usage().unwrap().awake_ms,
        500,
        "idle time does not"
    );
    sim.engine.count_request();
    assert_eq!(sim.engine.usage().unwrap().requests, 1);
}
