//! The engine under a virtual clock: timed tasks stay on time whatever a provider does, and a
//! job dropped mid-step and rebuilt from storage ends exactly as an undisturbed one.

use super::testing::{MemSocket, Scripted, Sim};
use super::ClientFrame;
use crate::config::Config;
use crate::host::{Answer, Host, SocketTag, Stored};
use crate::internal::{self, Blob, CreateJob};
use crate::job::Pipeline;
use crate::keys;
use crate::pipelines::csv::{read_header, CsvWork};
use crate::pipelines::enrich::EnrichWork;
use crate::pipelines::scan::{ImageKind, ScanPhoto, ScanWork};
use crate::pipelines::synthetic::SyntheticSpec;
use crate::pipelines::work::Work;
use crate::time::Millis;
use serde_json::Value;
use std::collections::HashMap;
use std::rc::Rc;

pub(super) const T0: Millis = 1_700_000_000_000;
const JOB_ID: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";

pub(super) fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<&str, &str> = [
        ("GEMINI_API_KEY", "k"),
        ("GEMINI_API_BASE", "http://gemini"),
        ("GOOGLE_BOOKS_API_BASE", "http://gb"),
        ("OPENLIBRARY_API_BASE", "http://ol"),
        ("TASK_RETRY_BASE_MS", "1000"),
    ]
    .into_iter()
    .collect();
    map.extend(vars.iter().copied());
    Config::from_lookup(|name| map.get(name).map(|v| v.to_string()))
}

/// Creates the job in the sim's object; returns its token.
pub(super) fn create(
    sim: &mut Sim,
    pipeline: Pipeline,
    work: Work,
    total: u64,
    inputs: &[(String, Vec<u8>)],
) -> String {
    let create = CreateJob {
        job_id: JOB_ID.into(),
        pipeline,
        total_count: total,
        work,
        blobs: inputs
            .iter()
            .map(|(key, bytes)| Blob {
                key: key.clone(),
                len: bytes.len(),
            })
            .collect(),
        idempotency: None,
    };
    let data: Vec<u8> = inputs.iter().flat_map(|(_, b)| b.clone()).collect();
    let body = internal::encode(&create, &data);
    let (status, answer) = sim
        .request(|e| async move { e.create(&body).await })
        .expect("created");
    assert_eq!(status, 202);
    crate::schema::tests::assert_answer("CreateJob", &Ok((status, answer.clone())));
    answer["token"].as_str().unwrap().to_string()
}

pub(super) fn scan_job(sim: &mut Sim, photos: usize) -> String {
    let image = b"\xFF\xD8\xFF\xE0 a photo".to_vec();
    let work = Work::Scan(ScanWork {
        photos: (0..photos)
            .map(|i| ScanPhoto::new(i as u32, ImageKind::Jpeg, image.len()))
            .collect(),
    });
    let inputs: Vec<(String, Vec<u8>)> = (0..photos)
        .map(|i| (keys::slice(&keys::scan_image_prefix(i), 0), image.clone()))
        .collect();
    create(sim, Pipeline::AiScan, work, photos as u64, &inputs)
}

/// A valid ISBN-13 for a small number.
fn isbn13(n: u32) -> String {
    let body = format!("978{n:09}");
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

pub(super) fn enrich_job(sim: &mut Sim, books: u32) -> String {
    let books: Vec<Value> = (0..books)
        .map(|n| serde_json::json!({ "title": format!("Book {n}"), "isbn": isbn13(n) }))
        .collect();
    let bytes = serde_json::to_vec(&books).unwrap();
    let work = Work::Enrich(EnrichWork::new(books.len()));
    create(
        sim,
        Pipeline::BatchEnrichment,
        work,
        books.len() as u64,
        &[(keys::ENRICH_INPUT.into(), bytes)],
    )
}

pub(super) fn csv_job(sim: &mut Sim, file: &[u8]) -> String {
    let (header, cursor) = read_header(file, true).unwrap();
    let work = Work::Csv(CsvWork::new(header, cursor, file.len()));
    let inputs: Vec<(String, Vec<u8>)> = keys::slices(keys::CSV_INPUT_PREFIX, file.len())
        .into_iter()
        .map(|(key, range)| (key, file[range].to_vec()))
        .collect();
    create(sim, Pipeline::CsvImport, work, 0, &inputs)
}

pub(super) fn synthetic_job(sim: &mut Sim, items: u64) -> String {
    let spec = SyntheticSpec {
        pipeline: Pipeline::CsvImport,
        items,
        items_per_chunk: 7,
        chunk_delay_ms: 100,
        fail_first_attempts: 0,
        coalesce_ms: None,
        throttle_ms: None,
    };
    create(sim, Pipeline::CsvImport, Work::Synthetic(spec), items, &[])
}

/// A Gemini answer with one book.
pub(super) fn gemini_ok() -> Answer {
    Answer::new(200, fixture!("gemini", "fenced.json"))
}

/// Google Books knows every ISBN it is asked for, as "Book <n>".
pub(super) fn google_books(request: &crate::host::Outbound) -> Scripted {
    let isbn = request
        .url
        .split("isbn:")
        .nth(1)
        .map(|rest| rest.chars().take(13).collect::<String>());
    let Some(isbn) = isbn else {
        return Scripted::After(5, Answer::new(200, r#"{"totalItems":0}"#));
    };
    let n: u32 = isbn[3..12].parse().unwrap();
    let body = serde_json::json!({"totalItems": 1, "items": [{"volumeInfo": {
        "title": format!("Book {n}"), "authors": ["A. Writer"],
        "industryIdentifiers": [{"type": "ISBN_13", "identifier": isbn}]}}]});
    Scripted::After(5, Answer::new(200, body.to_string()))
}

pub(super) fn open(sim: &Sim) -> Rc<MemSocket> {
    sim.host.open_socket(SocketTag::default())
}

pub(super) fn say(sim: &mut Sim, socket: &Rc<MemSocket>, text: &'static str) {
    let socket = socket.clone();
    sim.request(|e| async move { e.on_message(&socket, ClientFrame::Text(text)).await });
}

pub(super) fn status(sim: &Sim) -> Option<String> {
    sim.engine
        .with_job(|job| job.record.state.status.as_str().to_string())
}

/// Runs until the job ends (or the limit), returning the time it ended at.
pub(super) fn run_to_end(sim: &mut Sim, limit: Millis) -> Millis {
    let engine = sim.engine.clone();
    let ended = sim.run(
        || {
            engine
                .with_job(|job| job.record.state.status.is_terminal())
                .unwrap_or(true)
        },
        limit,
    );
    assert!(ended, "the job did not end by {limit}: {:?}", status(sim));
    sim.now()
}

#[test]
fn token_expiry_and_cleanup_keep_their_time_while_a_provider_hangs() {
    // (what the provider does, when the socket must close, with what)
    let table: &[(&str, Scripted)] = &[
        ("hangs for ever", Scripted::Hang),
        ("answers after 44 s", Scripted::After(44_000, gemini_ok())),
    ];
    for (name, answer) in table {
        let mut sim = Sim::new(
            config(&[("TOKEN_TTL_SECS", "8"), ("RESULTS_TTL_SECS", "6")]),
            T0,
        );
        let answer = answer.clone();
        sim.host.script(move |_| answer.clone());
        scan_job(&mut sim, 1);
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        sim.run_until(T0 + 7_999);
        assert_eq!(socket.close_code(), None, "{name}: open before expiry");
        assert_eq!(sim.host.calls().len(), 1, "{name}: the call is in flight");
        sim.run_until(T0 + 8_000);
        assert_eq!(socket.close_code(), Some(1008), "{name}: closed at expiry");
        sim.run_until(T0 + 13_999);
        assert!(!sim.host.storage().is_empty(), "{name}: kept until the TTL");
        sim.run_until(T0 + 14_000);
        assert!(
            sim.host.storage().is_empty(),
            "{name}: everything deleted at token expiry + results TTL"
        );
        assert_eq!(status(&sim), None, "{name}: the job is gone");
        assert_eq!(sim.host.alarm_at(), None, "{name}: no alarm left");
        assert_eq!(sim.host.logged("step.abandoned").len(), 1, "{name}");
    }
}

#[test]
fn a_slow_but_sure_provider_is_awaited_past_the_tasks_that_come_due() {
    let mut sim = Sim::new(config(&[("TOKEN_TTL_SECS", "8")]), T0);
    sim.host.script(|_| Scripted::After(44_000, gemini_ok()));
    scan_job(&mut sim, 1);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    let ended = run_to_end(&mut sim, T0 + 120_000);
    assert_eq!(status(&sim).as_deref(), Some("complete"));
    assert_eq!(ended, T0 + 44_000, "completed when the answer came");
    assert_eq!(sim.host.calls().len(), 1, "the call was never repeated");
    assert_eq!(
        socket.close_code(),
        Some(1008),
        "the token still expired on time"
    );
    let summary = sim
        .engine
        .with_job(|job| job.record.state.summary.clone())
        .flatten()
        .unwrap();
    assert_eq!(summary["successCount"], 1, "{summary}");
    assert!(summary["totalDetected"].as_u64().unwrap() > 0, "{summary}");
}

#[test]
fn a_cancel_during_a_hung_call_ends_the_job_at_once() {
    let mut sim = Sim::new(config(&[]), T0);
    sim.host.script(|_| Scripted::Hang);
    let token = scan_job(&mut sim, 2);
    let sockets = [open(&sim), open(&sim)];
    say(&mut sim, &sockets[0], r#"{"type":"ready"}"#);
    sim.run_until(T0 + 3_000);
    assert_eq!(sim.host.calls().len(), 1);
    let token2 = token.clone();
    let canceled = sim.request(|e| async move { e.cancel_request(Some(&token2)).await });
    assert_eq!(canceled.unwrap().0, 200);
    assert_eq!(
        sim.now(),
        T0 + 3_000,
        "the cancel did not wait for the call"
    );
    for socket in &sockets {
        assert_eq!(socket.close_code(), Some(1001));
    }
    assert_eq!(status(&sim).as_deref(), Some("canceled"));
    // The alarm gives up the step at once: the next photo is never asked for.
    sim.run_until(T0 + 200_000);
    assert_eq!(sim.host.calls().len(), 1, "no work after the cancel");
    assert_eq!(sim.host.logged("step.abandoned").len(), 1);
    let cleanup = sim
        .engine
        .with_job(|job| {
            job.record
                .schedule
                .get(crate::job::schedule::TaskKind::Cleanup)
        })
        .flatten()
        .expect("cleanup is scheduled");
    assert_eq!(cleanup.due, T0 + 3_000 + 86_400_000);
    assert!(sim.host.alarm_at().is_some());
}

#[test]
fn a_timed_out_call_is_retried_with_backoff_and_honours_retry_after() {
    // (the first answer, when the second call must happen)
    let rate_limited = Answer {
        retry_after: Some("30".into()),
        ..Answer::new(
            429,
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#,
        )
    };
    let table: &[(&str, Scripted, Millis)] = &[
        // Timed out at 60 s, then the first backoff (1 s).
        ("timeout", Scripted::Hang, 61_000),
        ("5xx", Scripted::After(10, Answer::new(503, "{}")), 1_010),
        (
            "429 with Retry-After",
            Scripted::After(10, rate_limited),
            30_010,
        ),
    ];
    for (name, first, second_at) in table {
        let mut sim = Sim::new(config(&[]), T0);
        let mut first = Some(first.clone());
        sim.host
            .script(move |_| first.take().unwrap_or(Scripted::After(10, gemini_ok())));
        scan_job(&mut sim, 1);
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        run_to_end(&mut sim, T0 + 600_000);
        assert_eq!(status(&sim).as_deref(), Some("complete"), "{name}");
        let calls = sim.host.calls();
        assert_eq!(calls.len(), 2, "{name}");
        assert_eq!(
            calls[1].0 - T0,
            *second_at,
            "{name}: when the retry went out"
        );
        let retries = sim.host.logged("task.retry");
        assert_eq!(retries.len(), 1, "{name}");
        let stored: Value = sim.host.storage()[keys::CORE].json().unwrap();
        assert!(stored["state"]["status"] == "complete", "{name}");
        assert_eq!(socket.close_code(), Some(1000), "{name}");
    }
}

#[test]
fn retries_are_counted_in_storage_and_run_out() {
    let mut sim = Sim::new(config(&[]), T0);
    sim.host
        .script(|_| Scripted::After(10, Answer::new(500, "{}")));
    scan_job(&mut sim, 1);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    // After the first failure the attempt count is in storage, so an eviction keeps it.
    let host = sim.host.clone();
    sim.run(|| !host.logged("task.retry").is_empty(), T0 + 10_000);
    let stored: Value = sim.host.storage()[keys::CORE].json().unwrap();
    assert_eq!(stored["schedule"]["tasks"]["process"]["attempts"], 1);
    sim.evict();
    run_to_end(&mut sim, T0 + 600_000);
    assert_eq!(status(&sim).as_deref(), Some("failed"));
    assert_eq!(
        sim.host.calls().len(),
        5,
        "five attempts in all, across the eviction"
    );
    assert_eq!(socket.close_code(), Some(1011));
    let error = socket.messages().last().unwrap()["payload"].clone();
    assert_eq!(error["retryable"], true);
    assert_eq!(error["code"], "PROVIDER_ERROR");
}

#[test]
fn the_job_ends_the_same_when_the_engine_is_dropped_mid_step() {
    type Make = fn(&mut Sim) -> String;
    // Three runs of the import, so each quarter is reached with a run still to come.
    let file = crate::pipelines::csv::generate_goodreads(48_000, 7).0;
    let csv: Maker = Box::new(move |sim| csv_job(sim, &file));
    type Maker = Box<dyn Fn(&mut Sim) -> String>;
    let table: Vec<(&str, Maker, &'static str)> = vec![
        (
            "synthetic",
            Box::new((|sim| synthetic_job(sim, 50)) as Make),
            "csv",
        ),
        (
            "enrichment",
            Box::new((|sim| enrich_job(sim, 25)) as Make),
            "enrichment",
        ),
        ("csv", csv, "csv"),
    ];
    for (name, make, segment) in table {
        let undisturbed = {
            let mut sim = Sim::new(config(&[]), T0);
            sim.host.script(google_books);
            let token = make(&mut sim);
            let socket = open(&sim);
            say(&mut sim, &socket, r#"{"type":"ready"}"#);
            run_to_end(&mut sim, T0 + 600_000);
            assert_eq!(status(&sim).as_deref(), Some("complete"), "{name}");
            sim.all_results(&token, segment, None)
        };
        // Drop the engine a quarter, half and three quarters of the way, each time in the
        // middle of a step (between two of its awaits).
        for quarter in 1..=3u64 {
            let mut sim = Sim::new(config(&[]), T0);
            sim.host.script(google_books);
            let token = make(&mut sim);
            let socket = open(&sim);
            say(&mut sim, &socket, r#"{"type":"ready"}"#);
            let engine = sim.engine.clone();
            let reached = sim.run(
                || {
                    engine
                        .with_job(|job| {
                            let s = &job.record.state;
                            s.status == crate::job::Status::Running
                                && s.total_count > 0
                                && s.processed_count * 4 >= s.total_count * quarter
                        })
                        .unwrap_or(false)
                },
                T0 + 600_000,
            );
            assert!(reached, "{name}: never {quarter}/4 of the way");
            sim.evict();
            assert_eq!(
                status(&sim).as_deref(),
                Some("running"),
                "{name} {quarter}/4"
            );
            run_to_end(&mut sim, T0 + 600_000);
            assert_eq!(
                status(&sim).as_deref(),
                Some("complete"),
                "{name} {quarter}/4"
            );
            assert_eq!(
                sim.all_results(&token, segment, None),
                undisturbed,
                "{name}: evicted {quarter}/4 of the way"
            );
        }
    }
}

#[test]
fn an_import_starts_from_the_upload_it_kept_and_reads_it_back_only_after_an_eviction() {
    // Three input slices, so the creation stores two before its last write.
    let file = crate::pipelines::csv::generate_goodreads(12_000, 7).0;
    assert!(file.len() > 2 * keys::SLICE_BYTES);
    let mut results = Vec::new();
    for evicted in [false, true] {
        let mut sim = Sim::new(config(&[]), T0);
        let token = csv_job(&mut sim, &file);
        if evicted {
            sim.evict();
        }
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        run_to_end(&mut sim, T0 + 600_000);
        assert_eq!(
            status(&sim).as_deref(),
            Some("complete"),
            "evicted: {evicted}"
        );
        let input_reads = sim
            .host
            .keys_read()
            .iter()
            .filter(|key| key.starts_with(keys::CSV_INPUT_PREFIX))
            .count();
        let slices = keys::slices(keys::CSV_INPUT_PREFIX, file.len()).len();
        assert_eq!(
            input_reads,
            if evicted { slices } else { 0 },
            "evicted: {evicted}"
        );
        results.push(sim.all_results(&token, "csv", None));
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn a_job_that_never_starts_is_cleaned_up_after_its_token_and_the_ttl() {
    let mut sim = Sim::new(
        config(&[
            ("TOKEN_TTL_SECS", "8"),
            ("RESULTS_TTL_SECS", "6"),
            ("READY_TIMEOUT_SECS", "3600"),
        ]),
        T0,
    );
    csv_job(&mut sim, b"Title\nDune\n");
    sim.run_until(T0 + 13_999);
    assert_eq!(status(&sim).as_deref(), Some("queued"));
    sim.run_until(T0 + 14_000);
    assert_eq!(status(&sim), None);
    assert!(sim.host.storage().is_empty());
}

#[test]
fn a_refresh_during_a_hung_call_moves_the_expiry_the_wait_is_on() {
    let mut sim = Sim::new(
        config(&[("TOKEN_TTL_SECS", "10"), ("TOKEN_REFRESH_WINDOW_SECS", "8")]),
        T0,
    );
    sim.host.script(|_| Scripted::Hang);
    let token = scan_job(&mut sim, 1);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    sim.run_until(T0 + 5_000);
    let body = serde_json::json!({ "oldToken": token }).to_string();
    let refreshed = sim.request(|e| async move { e.refresh(body.as_bytes()).await });
    assert_eq!(refreshed.unwrap().0, 200);
    sim.run_until(T0 + 14_999);
    assert_eq!(
        socket.close_code(),
        None,
        "the old expiry no longer applies"
    );
    sim.run_until(T0 + 15_000);
    assert_eq!(socket.close_code(), Some(1008), "the new one does");
}

#[test]
fn storage_written_by_the_engine_reads_back_as_it_was() {
    let mut sim = Sim::new(config(&[]), T0);
    enrich_job(&mut sim, 3);
    let stored = sim.host.storage();
    assert!(matches!(stored[keys::ENRICH_INPUT], Stored::Bytes(_)));
    assert!(matches!(stored[keys::CORE], Stored::Text(_)));
    sim.evict();
    assert_eq!(status(&sim).as_deref(), Some("queued"));
    assert!(sim.host.now() >= T0);
}

#[test]
fn closing_a_silent_socket_asks_for_a_reset_once_nothing_is_held_in_memory() {
    // (what happens, whether the socket spoke first, resets wanted)
    type Act = fn(&mut Sim, &str);
    let cancel: Act = |sim, token| {
        let token = token.to_string();
        sim.request(|e| async move { e.cancel_request(Some(&token)).await })
            .unwrap();
    };
    let finish: Act = |sim, _| {
        run_to_end(sim, sim.now() + 60_000);
    };
    let table: &[(&str, Act, bool, u32)] = &[
        ("cancel, silent", cancel, false, 1),
        ("cancel, spoke", cancel, true, 0),
        ("complete, silent", finish, false, 1),
        ("complete, spoke", finish, true, 0),
    ];
    for (name, act, spoke, resets) in table {
        let mut sim = Sim::new(config(&[("READY_TIMEOUT_SECS", "1")]), T0);
        let token = synthetic_job(&mut sim, 3);
        let socket = open(&sim);
        if *spoke {
            socket.auto_response_at.set(Some(T0));
        }
        act(&mut sim, &token);
        assert!(socket.close_code().is_some(), "{name}");
        assert_eq!(sim.host.resets(), *resets, "{name}");
    }
}

#[test]
fn a_running_job_stores_its_progress_before_a_reset_and_never_resets_mid_step() {
    let mut sim = Sim::new(config(&[("TOKEN_TTL_SECS", "8")]), T0);
    sim.host.script(|_| Scripted::After(20_000, gemini_ok()));
    scan_job(&mut sim, 1);
    let talker = open(&sim);
    let silent = open(&sim);
    say(&mut sim, &talker, r#"{"type":"ready"}"#);
    sim.run_until(T0 + 8_000);
    assert_eq!(silent.close_code(), Some(1008));
    assert_eq!(
        sim.host.resets(),
        0,
        "not while the Gemini call is in flight"
    );
    run_to_end(&mut sim, T0 + 60_000);
    assert_eq!(sim.host.resets(), 1, "once the step is over");
}

/// Every event message a socket received, by seq, without the replies to its own `ready`.
fn events_by_seq(socket: &MemSocket) -> Vec<(u64, String)> {
    let mut events: Vec<(u64, String)> = socket
        .messages()
        .into_iter()
        .filter(|m| {
            !matches!(
                m["type"].as_str(),
                Some("ready_ack" | "reconnected" | "job_progress")
            )
        })
        .map(|m| (m["seq"].as_u64().unwrap(), m["payload"].to_string()))
        .collect();
    events.sort();
    events.dedup();
    events
}

#[test]
fn a_client_that_reconnects_with_since_ends_with_every_event_the_others_had() {
    // (reconnect after this many item results, evict the object before reconnecting)
    for (after, evict) in [(2, false), (2, true), (0, false), (5, false)] {
        let mut sim = Sim::new(config(&[]), T0);
        sim.host.script(google_books);
        let token = enrich_job(&mut sim, 5);
        let steady = open(&sim);
        say(&mut sim, &steady, r#"{"type":"ready"}"#);
        let dropping = open(&sim);
        say(&mut sim, &dropping, r#"{"type":"ready"}"#);
        let watched = dropping.clone();
        sim.run(
            || {
                watched
                    .kinds()
                    .iter()
                    .filter(|k| *k == "item_result")
                    .count()
                    >= after
            },
            T0 + 60_000,
        );
        // The socket dies: the client keeps the last seq it saw.
        let since = dropping
            .messages()
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .max()
            .unwrap();
        *dropping.closed.borrow_mut() = Some((1006, "gone".into()));
        sim.run_until(sim.now() + 5);
        if evict {
            sim.evict();
        }
        let back = sim.host.open_socket(SocketTag {
            since: Some(since),
            ..SocketTag::default()
        });
        say(&mut sim, &back, r#"{"type":"ready"}"#);
        run_to_end(&mut sim, T0 + 60_000);
        let mut resumed = events_by_seq(&dropping);
        resumed.extend(events_by_seq(&back));
        resumed.sort();
        resumed.dedup();
        assert_eq!(
            resumed,
            events_by_seq(&steady),
            "after {after} item results, evicted: {evict}"
        );
        let items = resumed
            .iter()
            .filter(|(_, p)| p.contains("item_result"))
            .count();
        assert_eq!(items, 5, "one item_result per book");
        let seqs: Vec<u64> = back
            .messages()
            .iter()
            .skip(1)
            .filter_map(|m| m["seq"].as_u64())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "replay in order: {seqs:?}"
        );
        assert!(
            seqs.iter().all(|s| *s > since),
            "only what came after since"
        );
        let _ = token;
    }
}

#[test]
fn seq_strictly_increases_on_every_socket_and_across_evictions() {
    let mut sim = Sim::new(config(&[]), T0);
    let token = synthetic_job(&mut sim, 60);
    let a = open(&sim);
    say(&mut sim, &a, r#"{"type":"ready"}"#);
    let engine = sim.engine.clone();
    sim.run(
        || {
            engine
                .with_job(|j| j.record.state.processed_count >= 30)
                .unwrap_or(false)
        },
        T0 + 60_000,
    );
    let before_eviction = a.messages().last().unwrap()["seq"].as_u64().unwrap();
    sim.evict();
    let b = sim.host.open_socket(SocketTag {
        reconnect: true,
        ..SocketTag::default()
    });
    say(&mut sim, &b, r#"{"type":"ready"}"#);
    run_to_end(&mut sim, T0 + 60_000);
    for (name, socket) in [("a", &a), ("b", &b)] {
        let seqs: Vec<u64> = socket
            .messages()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert!(!seqs.is_empty());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: {seqs:?}");
    }
    let first_b = b.messages()[0]["seq"].as_u64().unwrap();
    assert!(
        first_b > before_eviction,
        "after the eviction numbering goes on above: {before_eviction} {first_b}"
    );
    let _ = token;
}

#[test]
fn a_job_stored_before_the_stream_existed_resyncs() {
    let mut sim = Sim::new(config(&[]), T0);
    synthetic_job(&mut sim, 3);
    // As an older build stored it: no stream in the core.
    let mut stored = sim.host.storage();
    let mut core: Value = stored[keys::CORE].json().unwrap();
    core.as_object_mut().unwrap().remove("stream");
    stored.insert(keys::CORE.into(), Stored::Text(core.to_string()));
    sim.host.set_storage(stored);
    sim.evict();
    let socket = sim.host.open_socket(SocketTag {
        since: Some(4),
        ..SocketTag::default()
    });
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    let kinds = socket.kinds();
    assert_eq!(kinds[..2], ["ready_ack", "reconnected"]);
    assert_eq!(socket.messages()[1]["payload"]["resync"], true);
}

#[test]
fn a_silent_socket_makes_room_for_a_new_one_after_the_idle_time() {
    // (seconds the eight stay silent, whether one of them pinged, what the ninth gets)
    let table: &[(u64, bool, Option<u16>)] = &[
        (119, false, Some(1013)),
        (121, false, None),
        (121, true, None),
    ];
    for (silent_secs, one_pinged, ninth_closed) in table {
        let mut sim = Sim::new(config(&[("READY_TIMEOUT_SECS", "3600")]), T0);
        let token = synthetic_job(&mut sim, 3);
        let query = crate::protocol::UpgradeQuery {
            job_id: JOB_ID.into(),
            token: Some(token.clone()),
            reconnect: false,
            since: None,
        };
        let mut eight = Vec::new();
        for _ in 0..8 {
            let admission = sim.engine.admit(&query).unwrap();
            assert_eq!(admission.refusal, None);
            eight.push(sim.host.open_socket(admission.tag));
        }
        sim.run_until(T0 + silent_secs * 1_000);
        if *one_pinged {
            eight[3].auto_response_at.set(Some(sim.now()));
        }
        let ninth = sim.engine.admit(&query).unwrap();
        assert_eq!(
            ninth.refusal.map(|c| c.code()),
            *ninth_closed,
            "{silent_secs} s"
        );
        let replaced: Vec<usize> = (0..8)
            .filter(|i| eight[*i].close_code() == Some(4000))
            .collect();
        match ninth_closed {
            Some(_) => assert!(replaced.is_empty()),
            None => {
                assert_eq!(replaced.len(), 1, "exactly one old socket makes room");
                assert_ne!(replaced[0], 3, "the one that pinged is not idle");
            }
        }
    }
}

#[test]
fn after_a_refresh_a_socket_of_the_old_token_can_no_longer_cancel_and_closes_when_it_expires() {
    let mut sim = Sim::new(
        config(&[
            ("TOKEN_TTL_SECS", "100"),
            ("TOKEN_REFRESH_WINDOW_SECS", "90"),
            ("READY_TIMEOUT_SECS", "3600"),
        ]),
        T0,
    );
    let old = synthetic_job(&mut sim, 3);
    let query = |token: &str| crate::protocol::UpgradeQuery {
        job_id: JOB_ID.into(),
        token: Some(token.to_string()),
        reconnect: false,
        since: None,
    };
    let old_socket = sim
        .host
        .open_socket(sim.engine.admit(&query(&old)).unwrap().tag);
    sim.run_until(T0 + 20_000);
    let body = serde_json::json!({ "oldToken": old }).to_string();
    let (_, refreshed) = sim
        .request(|e| async move { e.refresh(body.as_bytes()).await })
        .unwrap();
    let new = refreshed["token"].as_str().unwrap().to_string();
    let new_socket = sim
        .host
        .open_socket(sim.engine.admit(&query(&new)).unwrap().tag);
    say(&mut sim, &old_socket, r#"{"type":"cancel"}"#);
    assert_eq!(
        old_socket.close_code(),
        Some(1008),
        "its rights ended with its token"
    );
    assert_eq!(
        status(&sim).as_deref(),
        Some("queued"),
        "and it canceled nothing"
    );
    // A second socket of the old token, silent, closes when the old token would have expired.
    let other_old = sim.host.open_socket(SocketTag {
        token: old_socket.tag.borrow().token.clone(),
        token_expires_at: T0 + 100_000,
        ..SocketTag::default()
    });
    sim.run_until(T0 + 99_999);
    assert_eq!(other_old.close_code(), None);
    sim.run_until(T0 + 100_000);
    assert_eq!(other_old.close_code(), Some(1008));
    assert_eq!(new_socket.close_code(), None, "the new token lives on");
    say(&mut sim, &new_socket, r#"{"type":"cancel"}"#);
    assert_eq!(status(&sim).as_deref(), Some("canceled"));
}

#[test]
fn failed_writes_never_strand_a_job() {
    // (writes made to fail, how the job ends, failures logged)
    let table: &[(&str, &str, u32)] = &[("2", "complete", 2), ("10", "failed", 5)];
    for (failing, ends, logged) in table {
        let vars = [
            ("ENVIRONMENT", "development"),
            ("FAULT_FAIL_WRITES", *failing),
        ];
        let mut sim = Sim::new(config(&vars), T0);
        sim.host.script(google_books);
        let token = enrich_job(&mut sim, 12);
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        let host = sim.host.clone();
        let ended = sim.run(
            || {
                let core: Option<Value> =
                    host.storage().get(keys::CORE).and_then(|v| v.json().ok());
                core.is_some_and(|c| c["state"]["status"] == *ends)
            },
            T0 + 3_600_000,
        );
        assert!(ended, "{failing}: never stored as {ends}");
        assert_eq!(
            sim.host.logged("storage.failed").len() as u32,
            *logged,
            "{failing}"
        );
        let stored: Value = sim.host.storage()[keys::FAULTS].json().unwrap();
        assert_eq!(stored["total"], *logged, "{failing}: counted in storage");
        match *ends {
            "complete" => {
                assert_eq!(socket.close_code(), Some(1000), "{failing}");
                let books = sim.all_results(&token, "enrichment", None)["books"].clone();
                assert_eq!(books.as_array().unwrap().len(), 12, "nothing lost");
            }
            _ => {
                assert_eq!(socket.close_code(), Some(1011), "{failing}");
                let error = socket.messages().last().unwrap()["payload"].clone();
                assert_eq!(error["code"], "INTERNAL_ERROR");
                assert_eq!(error["retryable"], true);
                let cleanup = sim
                    .engine
                    .with_job(|j| {
                        j.record
                            .schedule
                            .get(crate::job::schedule::TaskKind::Cleanup)
                    })
                    .flatten();
                assert!(cleanup.is_some(), "cleanup still scheduled");
                assert!(sim.host.alarm_at().is_some());
            }
        }
    }
}

#[test]
fn a_repeated_idempotent_creation_answers_as_the_first_and_creates_nothing() {
    let create = |request: &str| {
        let create = CreateJob {
            job_id: JOB_ID.into(),
            pipeline: Pipeline::CsvImport,
            total_count: 3,
            work: Work::Synthetic(SyntheticSpec {
                pipeline: Pipeline::CsvImport,
                items: 3,
                items_per_chunk: 1,
                chunk_delay_ms: 0,
                fail_first_attempts: 0,
                coalesce_ms: None,
                throttle_ms: None,
            }),
            blobs: vec![],
            idempotency: Some(request.to_string()),
        };
        internal::encode(&create, &[])
    };
    let mut sim = Sim::new(
        config(&[
            ("TOKEN_TTL_SECS", "100"),
            ("TOKEN_REFRESH_WINDOW_SECS", "90"),
        ]),
        T0,
    );
    let post = |sim: &mut Sim, body: Vec<u8>| sim.request(|e| async move { e.create(&body).await });
    let (status, first) = post(&mut sim, create("h1")).unwrap();
    assert_eq!(status, 202);
    let writes = sim.engine.io().writes.get();
    let (status, again) = post(&mut sim, create("h1")).unwrap();
    assert_eq!(status, 202);
    assert_eq!(again["jobId"], first["jobId"]);
    assert_eq!(
        again["token"], first["token"],
        "the same token, kept nowhere"
    );
    assert_eq!(
        sim.engine.io().writes.get(),
        writes,
        "a repeat writes nothing"
    );
    let other = post(&mut sim, create("h2")).unwrap_err();
    assert_eq!(other.status(), 409, "the same key with another request");
    // After a refresh the first token is gone: a repeat gets a new one that works.
    sim.run_until(T0 + 20_000);
    let body = serde_json::json!({ "oldToken": first["token"] }).to_string();
    sim.request(|e| async move { e.refresh(body.as_bytes()).await })
        .unwrap();
    let (_, third) = post(&mut sim, create("h1")).unwrap();
    assert_ne!(third["token"], first["token"]);
    let token = third["token"].as_str().unwrap().to_string();
    assert!(
        sim.engine.state(Some(&token)).is_ok(),
        "the new token works"
    );
    assert_eq!(third["expiresIn"], 100);
}

/// The largest stored value, inputs (which are stored in 1 MiB slices) aside.
fn largest_result_value(host: &crate::engine::testing::MemoryHost) -> (String, usize) {
    host.storage()
        .into_iter()
        .filter(|(key, _)| !key.starts_with("in:") && !key.starts_with("img:"))
        .map(|(key, value)| {
            let len = key.len() + value.len();
            (key, len)
        })
        .max_by_key(|(_, len)| *len)
        .unwrap_or_default()
}

#[test]
fn a_photo_with_many_long_titles_is_stored_in_bounded_parts() {
    // 200 books, each with a 500-character title of 4-byte characters: about 400 KB of JSON.
    let books: Vec<Value> = (0..200)
        .map(|i| {
            serde_json::json!({ "title": format!("{i} {}", "𝔅".repeat(495)), "author": "A",
                "isbn": null, "confidence": 0.9,
                "boundingBox": { "x": 0.1, "y": 0.1, "width": 0.1, "height": 0.1 } })
        })
        .collect();
    let text = serde_json::to_string(&books).unwrap();
    let body = serde_json::json!({ "candidates": [{ "content": { "parts": [{ "text": text }] },
        "finishReason": "STOP" }] })
    .to_string();
    let mut sim = Sim::new(config(&[]), T0);
    sim.host
        .script(move |_| Scripted::After(10, Answer::new(200, body.clone())));
    let token = scan_job(&mut sim, 1);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    run_to_end(&mut sim, T0 + 60_000);
    assert_eq!(status(&sim).as_deref(), Some("complete"));
    let (key, largest) = largest_result_value(&sim.host);
    assert!(
        largest <= keys::MAX_RESULT_VALUE_BYTES,
        "{key}: {largest} bytes"
    );
    let parts = sim
        .host
        .storage()
        .keys()
        .filter(|k| k.starts_with("res:scan:00"))
        .count();
    assert!(parts >= 3, "split into {parts} parts");
    assert_eq!(
        sim.all_results(&token, "scan", None)["books"]
            .as_array()
            .unwrap()
            .len(),
        200
    );
    let item = socket
        .messages()
        .into_iter()
        .find(|m| m["type"] == "item_result")
        .unwrap();
    assert_eq!(item["payload"]["books"].as_array().unwrap().len(), 200);
    // The same books when the item is replayed from storage after an eviction.
    sim.evict();
    let back = sim.host.open_socket(SocketTag {
        since: Some(1),
        ..SocketTag::default()
    });
    say(&mut sim, &back, r#"{"type":"ready"}"#);
    let replayed = back
        .messages()
        .into_iter()
        .find(|m| m["type"] == "item_result")
        .unwrap();
    assert_eq!(replayed["payload"], item["payload"]);
}
