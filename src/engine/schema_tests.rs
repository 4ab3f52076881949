//! Real jobs through the engine against docs/schema/protocol.json: every message a socket
//! gets and every answer a request gets validates against its entry, replays included.

use super::testing::{MemSocket, Scripted, Sim};
use super::tests::{
    config, csv_job, enrich_job, gemini_ok, google_books, open, run_to_end, say, scan_job, T0,
};
use crate::host::{Answer, SocketTag};
use crate::results::PageQuery;
use crate::schema::tests::{assert_answer, assert_message};
use serde_json::Value;
use std::rc::Rc;

/// Every message the socket got, each against its entry; returns their types.
fn check_socket(socket: &MemSocket) -> Vec<String> {
    for text in socket.sent.borrow().iter() {
        assert_message(text);
    }
    socket.kinds()
}

fn check_state(sim: &mut Sim, token: &str) -> Value {
    let token = token.to_string();
    let reply = sim.request(|e| async move { e.state(Some(&token)) });
    assert_answer("JobState", &reply);
    reply.map(|(_, data)| data).unwrap_or_default()
}

/// Every page of the results, `limit` entries each, against `def`; returns the pages.
fn check_pages(sim: &mut Sim, token: &str, segment: &'static str, def: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let query = PageQuery {
            limit: Some("2".into()),
            cursor: cursor.take(),
        };
        let token = token.to_string();
        let reply = sim.request(|e| async move { e.results(Some(&token), segment, &query).await });
        assert_answer(def, &reply);
        let (_, page) = reply.expect("a results page");
        cursor = page["nextCursor"].as_str().map(str::to_string);
        pages.push(page);
        if cursor.is_none() || pages.len() > 100 {
            return pages;
        }
    }
}

#[test]
fn a_csv_import_sends_what_the_schema_describes() {
    let long = "x".repeat(3_000);
    let file = format!(
        "Title,Author,ISBN\n\
         The Hobbit,J.R.R. Tolkien,9780547928227\n\
         ,Nobody,\n\
         {long},Someone,9780547928228\n\
         Dune,Frank Herbert,9.78044E+12\n\
         The Hobbit,J.R.R. Tolkien,9780547928227\n\
         Emma,Jane Austen,\n\
         Persuasion,Jane Austen,\n"
    );
    let mut sim = Sim::new(config(&[]), T0);
    let token = csv_job(&mut sim, file.as_bytes());
    assert_eq!(check_state(&mut sim, &token)["status"], "queued");
    let early = {
        let token = token.clone();
        sim.request(|e| async move { e.results(Some(&token), "csv", &PageQuery::default()).await })
    };
    assert!(early.is_err(), "no results before the end");
    assert_answer("CsvResults", &early);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    run_to_end(&mut sim, T0 + 60_000);
    let kinds = check_socket(&socket);
    assert_eq!(kinds.last().map(String::as_str), Some("job_complete"));
    let state = check_state(&mut sim, &token);
    assert_eq!(state["summary"]["errorCount"], 2, "{state}");
    let pages = check_pages(&mut sim, &token, "csv", "CsvResults");
    assert!(pages.len() > 1, "paged: {pages:?}");
    let first = &pages[0];
    assert!(
        first["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "{first}"
    );
    assert!(
        first["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["truncated"] == true),
        "{first}"
    );
    assert!(pages[1..]
        .iter()
        .all(|p| p["errors"] == serde_json::json!([])));
    // A socket on the ended job gets it all again.
    let late = open(&sim);
    say(&mut sim, &late, r#"{"type":"ready"}"#);
    assert_eq!(
        check_socket(&late),
        ["ready_ack", "reconnected", "job_complete"]
    );
}

#[test]
fn an_enrichment_resumed_after_an_eviction_sends_what_the_schema_describes() {
    let mut sim = Sim::new(config(&[]), T0);
    // Book 3 is unknown to both providers.
    sim.host.script(|request| {
        let unknown = request.url.contains("978000000003");
        match (unknown, request.url.starts_with("http://gb")) {
            (true, true) => Scripted::After(5, Answer::new(200, r#"{"totalItems":0}"#)),
            (true, false) => Scripted::After(5, Answer::new(404, "{}")),
            (false, _) => google_books(request),
        }
    });
    let token = enrich_job(&mut sim, 5);
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
                >= 2
        },
        T0 + 60_000,
    );
    let since = dropping
        .messages()
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .max()
        .unwrap();
    *dropping.closed.borrow_mut() = Some((1006, "gone".into()));
    run_to_end(&mut sim, T0 + 120_000);
    // The client comes back after the object was evicted: the replay is rebuilt from storage.
    sim.evict();
    let back = sim.host.open_socket(SocketTag {
        since: Some(since),
        ..SocketTag::default()
    });
    say(&mut sim, &back, r#"{"type":"ready"}"#);
    // And one that asks for more than was ever sent: a resync.
    let ahead = sim.host.open_socket(SocketTag {
        since: Some(since + 1_000_000),
        ..SocketTag::default()
    });
    say(&mut sim, &ahead, r#"{"type":"ready"}"#);
    check_socket(&dropping);
    assert!(check_socket(&back).contains(&"item_result".to_string()));
    let resynced = ahead.messages();
    assert!(
        resynced.iter().any(|m| m["payload"]["resync"] == true),
        "{resynced:?}"
    );
    check_socket(&ahead);
    check_state(&mut sim, &token);
    let pages = check_pages(&mut sim, &token, "enrichment", "EnrichmentResults");
    let books: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["books"].as_array().unwrap())
        .collect();
    assert_eq!(books.len(), 5);
    assert!(books.iter().any(|b| b["success"] == false), "{books:?}");
}

#[test]
fn scans_that_complete_and_fail_send_what_the_schema_describes() {
    // Photo 1 of 2 is refused by the model: the scan completes with one failed photo. Then a
    // scan whose every photo is refused fails.
    for (photos, refused) in [(2, vec![1]), (2, vec![0, 1])] {
        let mut sim = Sim::new(config(&[]), T0);
        let calls = Rc::new(std::cell::Cell::new(0usize));
        let seen = calls.clone();
        sim.host.script(move |_| {
            let n = seen.get();
            seen.set(n + 1);
            if refused.contains(&n) {
                Scripted::After(10, Answer::new(400, r#"{"error":{"code":400}}"#))
            } else {
                Scripted::After(10, gemini_ok())
            }
        });
        let token = scan_job(&mut sim, photos);
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        run_to_end(&mut sim, T0 + 600_000);
        let kinds = check_socket(&socket);
        let state = check_state(&mut sim, &token);
        match state["status"].as_str() {
            Some("complete") => {
                check_pages(&mut sim, &token, "scan", "ScanResults");
            }
            Some("failed") => {
                assert_eq!(kinds.last().map(String::as_str), Some("error"));
                let token = token.clone();
                let gone = sim.request(|e| async move {
                    e.results(Some(&token), "scan", &PageQuery::default()).await
                });
                assert_answer("ScanResults", &gone);
            }
            other => panic!("{other:?}: {state}"),
        }
    }
}

#[test]
fn cancel_refresh_and_refusals_answer_what_the_schema_describes() {
    let mut sim = Sim::new(config(&[("TOKEN_REFRESH_WINDOW_SECS", "7200")]), T0);
    sim.host.script(|_| Scripted::Hang);
    let token = scan_job(&mut sim, 1);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    sim.run_until(T0 + 1_000);
    check_state(&mut sim, "wrong");
    let body = format!(r#"{{"jobId":"x","oldToken":"{token}"}}"#).into_bytes();
    let refreshed = sim.request(|e| async move { e.refresh(&body).await });
    assert_answer("TokenRefresh", &refreshed);
    let token = refreshed.unwrap().1["token"].as_str().unwrap().to_string();
    let refused = sim.request(|e| async move { e.refresh(b"not json").await });
    assert_answer("TokenRefresh", &refused);
    let cancel = {
        let token = token.clone();
        sim.request(|e| async move { e.cancel_request(Some(&token)).await })
    };
    assert_answer("CancelJob", &cancel);
    assert!(cancel.is_ok());
    let again = {
        let token = token.clone();
        sim.request(|e| async move { e.cancel_request(Some(&token)).await })
    };
    assert!(again.is_err(), "a second cancel is a conflict");
    assert_answer("CancelJob", &again);
    assert_eq!(check_state(&mut sim, &token)["status"], "canceled");
    check_socket(&socket);
}
