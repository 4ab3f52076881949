//! Jobs persisted by the v1 worker (commit 292d417) resume and finish on this engine.
//!
//! The fixtures under `tests/fixtures/storage/v1/` are the real storage of jobs that the old
//! worker was running when it was killed, captured by `bash scripts/capture-v1-storage 292d417`
//! (see the README there). Each is loaded into the in-memory host with its alarm, the job is
//! driven to its end, and its summary and results are compared with what the old worker
//! itself answered for the same inputs run undisturbed.

use super::testing::{Scripted, Sim};
use super::ClientFrame;
use crate::config::Config;
use crate::host::{Answer, Outbound, SocketTag, Stored};
use serde_json::{json, Value};
use std::collections::BTreeMap;

macro_rules! v1_fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/v1/",
            $name,
            ".json"
        ))
    };
}

struct Fixture {
    name: &'static str,
    value: Value,
}

impl Fixture {
    fn new(name: &'static str, text: &str) -> Self {
        Self {
            name,
            value: serde_json::from_str(text).expect("fixture JSON"),
        }
    }

    fn token(&self) -> String {
        self.value["token"].as_str().unwrap().to_string()
    }

    fn storage(&self) -> BTreeMap<String, Stored> {
        self.value["storage"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                let stored = match (value["text"].as_str(), value["base64"].as_str()) {
                    (Some(text), _) => Stored::Text(text.to_string()),
                    (_, Some(b64)) => Stored::Bytes(crate::base64::decode(b64, 16 << 20).unwrap()),
                    _ => panic!("{}: {key} is neither text nor bytes", self.name),
                };
                (key.clone(), stored)
            })
            .collect()
    }

    fn expected(&self) -> &Value {
        &self.value["inputs"]["expected"]
    }

    /// The worker's configuration at capture, with the providers pointed at the fake below.
    fn config(&self) -> Config {
        let vars = self.value["vars"].as_object().unwrap().clone();
        Config::from_lookup(|name| match name {
            "GEMINI_API_BASE" => Some("http://fake/v1beta".into()),
            "GOOGLE_BOOKS_API_BASE" => Some("http://fake/books/v1".into()),
            "OPENLIBRARY_API_BASE" => Some("http://fake/ol".into()),
            _ => vars.get(name).and_then(Value::as_str).map(str::to_string),
        })
    }

    /// A machine holding the fixture's storage and alarm, a moment after the capture.
    fn resume(&self) -> Sim {
        let record: Value = self.storage()["core"].json().unwrap();
        let last_update = record["state"]["lastUpdate"].as_u64().unwrap();
        let alarm = self.value["alarm"].as_u64();
        let mut sim = Sim::new(self.config(), last_update + 1);
        sim.host.set_storage(self.storage());
        sim.host.set_alarm_at(alarm);
        sim.host.script(gemini_by_marker);
        sim.load();
        sim
    }
}

/// Gemini as the capture's fake answered: the fixture named by the `scenario=<name>;` marker
/// inside the photo.
fn gemini_by_marker(request: &Outbound) -> Scripted {
    let body: Value = serde_json::from_str(request.body.as_deref().unwrap_or("")).unwrap();
    let data = body["contents"][0]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p["inline_data"]["data"].as_str())
        .unwrap_or("");
    let image = crate::base64::decode(data, 16 << 20).unwrap_or_default();
    let text = String::from_utf8_lossy(&image);
    let scenario = text
        .split("scenario=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("");
    let answer = match scenario {
        "fenced" => fixture!("gemini", "fenced.json"),
        "wrapped" => fixture!("gemini", "wrapped_books.json"),
        "bare" => fixture!("gemini", "bare_array.json"),
        other => panic!("the v1 fixtures use no Gemini scenario {other:?}"),
    };
    Scripted::After(5, Answer::new(200, answer))
}

/// A summary without `duration`, which differs from run to run, and without what v2 added to
/// a CSV summary (contract 9.2), after checking it agrees with v1's own counts: the whole
/// import's errors were kept, as the fixtures hold only a few.
fn without_duration(mut summary: Value) -> Value {
    if let Some(map) = summary.as_object_mut() {
        map.remove("duration");
        if let Some(count) = map.remove("errorCount") {
            assert_eq!(Some(&count), map.get("failureCount"), "errorCount");
            assert_eq!(map.remove("errorsTruncated"), Some(Value::Bool(false)));
            assert!(map.remove("warningCount").is_some_and(|n| n.is_u64()));
            assert_eq!(map.remove("warningsTruncated"), Some(Value::Bool(false)));
        }
    }
    summary
}

/// Says `ready` on a socket (which starts a queued job) and runs until the job ends, within
/// ten minutes of virtual time.
fn finish(sim: &mut Sim) -> Value {
    let limit = sim.now() + 600_000;
    let socket = sim.host.open_socket(SocketTag::default());
    let frame_socket = socket.clone();
    sim.request(|e| async move {
        e.on_message(&frame_socket, ClientFrame::Text(r#"{"type":"ready"}"#))
            .await
    });
    let engine = sim.engine.clone();
    let ended = sim.run(
        || {
            engine
                .with_job(|job| job.record.state.status.is_terminal())
                .unwrap_or(false)
        },
        limit,
    );
    assert!(ended, "the resumed job never ended");
    assert_eq!(socket.close_code(), Some(1000), "{:?}", socket.kinds());
    sim.engine
        .with_job(|job| job.record.state.summary.clone())
        .flatten()
        .expect("a summary")
}

fn segment(fixture: &Fixture) -> &'static str {
    match fixture.value["pipeline"].as_str().unwrap() {
        "csv_import" => "csv",
        "ai_scan" => "scan",
        "batch_enrichment" => "enrichment",
        other => panic!("{other}"),
    }
}

#[test]
fn finished_v1_jobs_serve_the_results_they_served() {
    for fixture in [
        Fixture::new("complete_scan", v1_fixture!("complete_scan")),
        Fixture::new("complete_enrich", v1_fixture!("complete_enrich")),
    ] {
        let mut sim = fixture.resume();
        let served = sim.all_results(&fixture.token(), segment(&fixture), None);
        assert_eq!(served, fixture.expected()["results"], "{}", fixture.name);
    }
}

#[test]
fn running_v1_jobs_resume_and_end_as_the_old_worker_ended_them() {
    for fixture in [
        Fixture::new("scan_mid", v1_fixture!("scan_mid")),
        Fixture::new("synthetic_mid", v1_fixture!("synthetic_mid")),
    ] {
        let mut sim = fixture.resume();
        let summary = finish(&mut sim);
        let expected = fixture.expected();
        let want_summary = without_duration(expected["summary"].clone());
        let got_summary = without_duration(summary);
        // The synthetic fixture records only the counts; every field it has must match.
        for (key, want) in want_summary.as_object().unwrap() {
            assert_eq!(&got_summary[key], want, "{}: summary.{key}", fixture.name);
        }
        let segment = match fixture.name {
            "synthetic_mid" => "csv",
            _ => segment(&fixture),
        };
        let served = sim.all_results(&fixture.token(), segment, None);
        assert_eq!(served, expected["results"], "{}", fixture.name);
        // Only the photo that was mid-call at the kill, and the one after it, are asked for.
        if fixture.name == "scan_mid" {
            assert_eq!(sim.host.calls().len(), 2);
        }
    }
}

#[test]
fn a_csv_import_killed_mid_way_resumes_with_its_dedupe_memory() {
    let fixture = Fixture::new("csv_mid", v1_fixture!("csv_mid"));
    let complete = Fixture::new("complete_csv", v1_fixture!("complete_csv"));
    let mut sim = fixture.resume();
    let summary = finish(&mut sim);
    let expected = fixture.expected();
    assert_eq!(
        without_duration(summary),
        without_duration(expected["summary"].clone())
    );
    let served = sim.all_results(&fixture.token(), "csv", None);
    let books = served["books"].as_array().unwrap();
    assert_eq!(books.len() as u64, expected["books"].as_u64().unwrap());
    assert_eq!(served["errors"], expected["errors"]);
    // v2 warnings name their field (contract 9.1); one stored by v1 reads back as "record".
    let mut warnings = expected["warnings"].clone();
    for warning in warnings.as_array_mut().unwrap() {
        warning["field"] = json!("record");
    }
    assert_eq!(served["warnings"], warnings);
    assert_eq!(served["successRate"], expected["successRate"]);
    let first = expected["firstBooks"].as_array().unwrap();
    let last = expected["lastBooks"].as_array().unwrap();
    assert_eq!(&books[..first.len()], first.as_slice());
    assert_eq!(&books[books.len() - last.len()..], last.as_slice());
    // And the same document as the old worker's undisturbed import of the same file, served
    // by this engine from the old slices.
    let mut undisturbed = complete.resume();
    assert_eq!(
        served,
        undisturbed.all_results(&complete.token(), "csv", None)
    );
}

#[test]
fn a_queued_v1_job_starts_on_ready_and_imports_its_file() {
    let fixture = Fixture::new("queued", v1_fixture!("queued"));
    let mut sim = fixture.resume();
    assert_eq!(
        sim.engine.with_job(|job| job.record.state.status.as_str()),
        Some("queued")
    );
    finish(&mut sim);
    let served = sim.all_results(&fixture.token(), "csv", None);
    let expected: Value = serde_json::from_str(fixture!("csv", "goodreads.expected.json")).unwrap();
    assert_eq!(served["books"], expected["books"]);
    assert_eq!(served["errors"], expected["errors"]);
    assert_eq!(json!(served["successRate"]), expected["successRate"]);
}
