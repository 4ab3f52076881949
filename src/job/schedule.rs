//! The persisted task schedule behind a job's one alarm: at most one task per kind, each with
//! a due time and an attempt count.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The timed work of a job. The declaration order is the order in which tasks that are due
/// at the same instant run: cleanup first (nothing else matters after it), then expiry, then
/// the job's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Cleanup,
    TokenExpiry,
    Start,
    Process,
    Flush,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cleanup => "cleanup",
            Self::TokenExpiry => "token_expiry",
            Self::Start => "start",
            Self::Process => "process",
            Self::Flush => "flush",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub due: Millis,
    /// Failed runs so far; reset when the task is scheduled afresh.
    pub attempts: u32,
}

/// How failing tasks are retried: exponential backoff from `base_ms`, capped at `cap_ms`,
/// for at most `max_attempts` runs in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: Millis,
    pub cap_ms: Millis,
}

impl RetryPolicy {
    pub const DEFAULT: Self = Self {
        max_attempts: 5,
        base_ms: 1_000,
        cap_ms: 60_000,
    };

    /// Delay before the run that follows failed run number `attempts` (1-based).
    pub fn delay_after(self, attempts: u32) -> Millis {
        let exponent = attempts.saturating_sub(1).min(32);
        self.base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.cap_ms)
    }
}

/// What happened to a task that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    RetryAt {
        due: Millis,
        attempts: u32,
    },
    /// Every attempt is used up; the task is removed and the job should fail.
    Exhausted {
        attempts: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    tasks: BTreeMap<TaskKind, Task>,
}

impl Schedule {
    /// Schedules `kind` at `due`, replacing any earlier entry of that kind with a fresh
    /// attempt count. Other kinds are never touched: one task cannot push another out of the
    /// alarm.
    pub fn set(&mut self, kind: TaskKind, due: Millis) {
        self.tasks.insert(kind, Task { due, attempts: 0 });
    }

    /// Schedules `kind` at `due` unless it is already due sooner.
    pub fn set_no_later_than(&mut self, kind: TaskKind, due: Millis) {
        match self.tasks.get_mut(&kind) {
            Some(task) if task.due <= due => {}
            Some(task) => task.due = due,
            None => self.set(kind, due),
        }
    }

    pub fn remove(&mut self, kind: TaskKind) -> Option<Task> {
        self.tasks.remove(&kind)
    }

    pub fn get(&self, kind: TaskKind) -> Option<Task> {
        self.tasks.get(&kind).copied()
    }

    pub fn contains(&self, kind: TaskKind) -> bool {
        self.tasks.contains_key(&kind)
    }

    /// Tasks due at `now`, in the order they should run (see [`TaskKind`]).
    pub fn due(&self, now: Millis) -> Vec<TaskKind> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.due <= now)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The instant the alarm must fire next: the earliest due time, or none.
    pub fn next_alarm(&self) -> Option<Millis> {
        self.tasks.values().map(|t| t.due).min()
    }

    /// The earliest due time among `kinds`.
    pub fn next_due_of(&self, kinds: &[TaskKind]) -> Option<Millis> {
        kinds
            .iter()
            .filter_map(|k| self.get(*k))
            .map(|t| t.due)
            .min()
    }

    /// Records a failed run of `kind` and reschedules it with backoff, but no sooner than
    /// `retry_after_ms` (a provider's `Retry-After`), or removes it when its attempts are
    /// used up.
    pub fn retry(
        &mut self,
        kind: TaskKind,
        now: Millis,
        policy: RetryPolicy,
        retry_after_ms: Option<Millis>,
    ) -> RetryOutcome {
        let attempts = self.tasks.get(&kind).map_or(0, |t| t.attempts) + 1;
        if attempts >= policy.max_attempts {
            self.tasks.remove(&kind);
            return RetryOutcome::Exhausted { attempts };
        }
        let delay = policy
            .delay_after(attempts)
            .max(retry_after_ms.unwrap_or(0));
        let due = now + delay;
        self.tasks.insert(kind, Task { due, attempts });
        RetryOutcome::RetryAt { due, attempts }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn kinds(&self) -> impl Iterator<Item = TaskKind> + '_ {
        self.tasks.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_task_per_kind_and_kinds_are_independent() {
        let mut s = Schedule::default();
        s.set(TaskKind::Start, 100);
        s.set(TaskKind::Cleanup, 900);
        s.set(TaskKind::Start, 50);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(TaskKind::Start).unwrap().due, 50);
        assert_eq!(
            s.get(TaskKind::Cleanup).unwrap().due,
            900,
            "untouched by Start"
        );
    }

    #[test]
    fn set_no_later_than_only_moves_earlier() {
        let mut s = Schedule::default();
        s.set_no_later_than(TaskKind::Flush, 500);
        s.set_no_later_than(TaskKind::Flush, 700);
        assert_eq!(s.get(TaskKind::Flush).unwrap().due, 500);
        s.set_no_later_than(TaskKind::Flush, 300);
        assert_eq!(s.get(TaskKind::Flush).unwrap().due, 300);
    }

    #[test]
    fn due_tasks_come_in_run_order() {
        let mut s = Schedule::default();
        s.set(TaskKind::Flush, 10);
        s.set(TaskKind::Process, 10);
        s.set(TaskKind::Start, 5);
        s.set(TaskKind::TokenExpiry, 20);
        s.set(TaskKind::Cleanup, 10);
        assert_eq!(
            s.due(10),
            vec![
                TaskKind::Cleanup,
                TaskKind::Start,
                TaskKind::Process,
                TaskKind::Flush
            ]
        );
        assert_eq!(s.due(4), vec![]);
        assert_eq!(s.next_alarm(), Some(5));
    }

    #[test]
    fn backoff_table() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_ms: 1_000,
            cap_ms: 60_000,
        };
        let table = [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (6, 32_000),
            (7, 60_000),
            (40, 60_000),
        ];
        for (attempts, delay) in table {
            assert_eq!(p.delay_after(attempts), delay, "{attempts}");
        }
    }

    #[test]
    fn retry_counts_attempts_then_gives_up() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_ms: 100,
            cap_ms: 10_000,
        };
        let mut s = Schedule::default();
        s.set(TaskKind::Process, 0);
        assert_eq!(
            s.retry(TaskKind::Process, 1_000, p, None),
            RetryOutcome::RetryAt {
                due: 1_100,
                attempts: 1
            }
        );
        assert_eq!(
            s.retry(TaskKind::Process, 1_100, p, None),
            RetryOutcome::RetryAt {
                due: 1_300,
                attempts: 2
            }
        );
        assert_eq!(
            s.retry(TaskKind::Process, 1_300, p, None),
            RetryOutcome::Exhausted { attempts: 3 }
        );
        assert!(!s.contains(TaskKind::Process));
        s.set(TaskKind::Process, 2_000);
        assert_eq!(
            s.get(TaskKind::Process).unwrap().attempts,
            0,
            "fresh schedule, fresh count"
        );
    }

    #[test]
    fn a_retry_waits_at_least_the_providers_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_ms: 100,
            cap_ms: 10_000,
        };
        let table = [(None, 1_100), (Some(50), 1_100), (Some(30_000), 31_000)];
        for (retry_after, due) in table {
            let mut s = Schedule::default();
            s.set(TaskKind::Process, 0);
            assert_eq!(
                s.retry(TaskKind::Process, 1_000, p, retry_after),
                RetryOutcome::RetryAt { due, attempts: 1 },
                "{retry_after:?}"
            );
        }
    }

    #[test]
    fn next_due_of_looks_only_at_the_kinds_asked() {
        let mut s = Schedule::default();
        s.set(TaskKind::Process, 5);
        s.set(TaskKind::Flush, 30);
        s.set(TaskKind::Cleanup, 20);
        assert_eq!(
            s.next_due_of(&[TaskKind::Flush, TaskKind::Cleanup]),
            Some(20)
        );
        assert_eq!(s.next_due_of(&[TaskKind::TokenExpiry]), None);
    }

    #[test]
    fn survives_a_storage_round_trip() {
        let mut s = Schedule::default();
        s.set(TaskKind::Start, 1);
        s.set(TaskKind::Cleanup, 2);
        s.retry(TaskKind::Start, 5, RetryPolicy::DEFAULT, None);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&text).unwrap(), s);
    }

    /// Property tests need proptest, a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const ALL: [TaskKind; 5] = [
            TaskKind::Cleanup,
            TaskKind::TokenExpiry,
            TaskKind::Start,
            TaskKind::Process,
            TaskKind::Flush,
        ];

        fn op() -> impl Strategy<Value = (u8, usize, u64)> {
            (0u8..4, 0usize..5, 0u64..1_000_000)
        }

        proptest! {
            #[test]
            fn next_alarm_is_always_the_minimum_due_time(ops in proptest::collection::vec(op(), 0..60)) {
                let mut s = Schedule::default();
                for (action, kind, at) in ops {
                    let kind = ALL[kind];
                    match action {
                        0 => s.set(kind, at),
                        1 => s.set_no_later_than(kind, at),
                        2 => { s.remove(kind); }
                        _ => { s.retry(kind, at, RetryPolicy::DEFAULT, None); }
                    }
                    let min = ALL.iter().filter_map(|k| s.get(*k)).map(|t| t.due).min();
                    prop_assert_eq!(s.next_alarm(), min);
                    prop_assert!(s.len() <= ALL.len());
                    // Whatever is due at the alarm instant includes the task that set it.
                    if let Some(at) = min {
                        prop_assert!(!s.due(at).is_empty());
                    }
                }
            }
        }
    }
}
