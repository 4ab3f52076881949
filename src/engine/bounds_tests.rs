//! Hostile CSV uploads through the whole engine: every stored value and every results page
//! stays bounded, errors are capped and counted, and results never outgrow the upload.

use super::testing::Sim;
use super::tests::{config, csv_job, open, run_to_end, say, status, T0};
use crate::keys::MAX_RESULT_VALUE_BYTES;
use crate::pipelines::csv::store::{results_budget, MAX_ERRORS_BYTES, MAX_KEPT_ERRORS};
use crate::pipelines::csv::MAX_FIELD_BYTES;
use crate::results::MAX_PAGE_BYTES;
use serde_json::Value;

/// What an import of a hostile file must come to.
struct Case {
    name: &'static str,
    file: Vec<u8>,
    status: &'static str,
    /// `(errorCount, errors kept, errorsTruncated)` when the import completes; `None` kept
    /// when the errors' bytes decide how many.
    errors: Option<(u64, Option<usize>, bool)>,
    /// Books in the results when the import completes.
    books: Option<usize>,
}

fn rows(header: &str, count: usize, row: impl Fn(usize) -> String) -> Vec<u8> {
    let mut file = format!("{header}\n");
    for n in 0..count {
        file.push_str(&row(n));
        file.push('\n');
    }
    file.into_bytes()
}

/// A title that is unique per `n` and `len` bytes long.
fn long_title(n: usize, len: usize) -> String {
    let mut title = format!("Title {n} ");
    while title.len() < len {
        title.push_str("abcdefghij");
    }
    title.truncate(len);
    title
}

fn cases() -> Vec<Case> {
    let controls: String = (0..400_000)
        .map(|i| if i % 2 == 0 { 'a' } else { '\u{1}' })
        .collect();
    vec![
        Case {
            // 400,000 control characters in one cell: six bytes each in JSON if kept.
            name: "control characters",
            file: rows("Title,Author", 3, |n| match n {
                1 => format!("\"{controls}\",Someone"),
                _ => format!("Book {n},Someone"),
            }),
            status: "complete",
            errors: Some((0, Some(0), false)),
            books: Some(3),
        },
        Case {
            name: "one enormous cell",
            file: rows("Title,Author", 2, |n| {
                format!("{},Author", long_title(n, 1_000_000))
            }),
            status: "complete",
            errors: Some((0, Some(0), false)),
            books: Some(2),
        },
        Case {
            name: "60,000 one-cell rows",
            file: rows("Book Id,Title,Author", 60_000, |n| n.to_string()),
            status: "complete",
            errors: Some((60_000, Some(MAX_KEPT_ERRORS as usize), true)),
            books: Some(0),
        },
        Case {
            // Errors of 5 KiB titles: each kept error is cut to 1 KiB, and their bytes cap
            // how many are kept before the count does.
            name: "long titles in errors",
            file: rows("Title,Author,ISBN", 2_000, |n| {
                format!("{},A,9780441013594", long_title(n, 5_000))
            }),
            status: "complete",
            errors: Some((2_000, None, true)),
            books: Some(0),
        },
        Case {
            // Three-character unique titles: each book's JSON is seven times its row.
            name: "results amplified past twice the upload",
            file: rows("Title", 46_000, |n| {
                let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
                let d = |k: usize| digits[(n / 36usize.pow(k as u32)) % 36] as char;
                format!("{}{}{}", d(2), d(1), d(0))
            }),
            status: "failed",
            errors: None,
            books: None,
        },
    ]
}

/// Every page of the results, checked against the page size, joined.
fn pages(sim: &mut Sim, token: &str) -> Value {
    let whole = sim.all_results(token, "csv", None);
    // Page again to measure each page; `all_results` joined them already.
    let mut cursor: Option<String> = None;
    loop {
        let query = crate::results::PageQuery {
            limit: None,
            cursor: cursor.take(),
        };
        let token = token.to_string();
        let (_, page) = sim
            .request(|e| async move { e.results(Some(&token), "csv", &query).await })
            .expect("results");
        let bytes = serde_json::to_string(&page).unwrap().len();
        assert!(bytes <= MAX_PAGE_BYTES + 256, "a page of {bytes} bytes");
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return whole,
        }
    }
}

#[test]
fn hostile_uploads_stay_bounded_in_storage_and_in_results() {
    for case in cases() {
        let name = case.name;
        let mut sim = Sim::new(config(&[]), T0);
        let token = csv_job(&mut sim, &case.file);
        let socket = open(&sim);
        say(&mut sim, &socket, r#"{"type":"ready"}"#);
        run_to_end(&mut sim, T0 + 3_600_000);
        assert_eq!(status(&sim).as_deref(), Some(case.status), "{name}");

        let stored = sim.host.storage();
        let mut result_bytes = 0;
        for (key, value) in &stored {
            if key.starts_with("res:") {
                assert!(
                    value.len() <= MAX_RESULT_VALUE_BYTES,
                    "{name}: {key} holds {} bytes",
                    value.len()
                );
                result_bytes += key.len() + value.len();
            }
        }
        let upload = case.file.len() as u64;
        assert!(
            result_bytes as u64 <= results_budget(upload),
            "{name}: {result_bytes} bytes of results for {upload} uploaded"
        );
        let messages = socket.messages();
        let last = messages.last().unwrap();
        if case.status == "failed" {
            assert_eq!(last["payload"]["code"], "INVALID_REQUEST", "{name}: {last}");
            assert_eq!(last["payload"]["retryable"], false, "{name}");
            assert_eq!(socket.close_code(), Some(1011), "{name}");
            continue;
        }
        let summary = &last["payload"]["summary"];
        let whole = pages(&mut sim, &token);
        let errors = whole["errors"].as_array().unwrap();
        if let Some((count, kept, truncated)) = case.errors {
            assert_eq!(summary["errorCount"], count, "{name}: {summary}");
            assert_eq!(summary["errorsTruncated"], truncated, "{name}");
            match kept {
                Some(kept) => assert_eq!(errors.len(), kept, "{name}"),
                None => {
                    // As many as fit: one more would not have.
                    let bytes = serde_json::to_string(errors).unwrap().len() as u64;
                    let one = serde_json::to_string(&errors[0]).unwrap().len() as u64;
                    assert!(bytes <= MAX_ERRORS_BYTES + 2, "{name}: {bytes}");
                    assert!(bytes + one + 1 > MAX_ERRORS_BYTES, "{name}: {bytes}");
                    assert!((errors.len() as u64) < MAX_KEPT_ERRORS, "{name}");
                }
            }
        }
        for error in errors {
            let title = error["title"].as_str().unwrap_or_default();
            assert!(title.len() <= MAX_FIELD_BYTES, "{name}: {}", title.len());
            assert_eq!(
                error["truncated"] == true,
                title.len() == MAX_FIELD_BYTES,
                "{name}: {error}"
            );
        }
        let books = whole["books"].as_array().unwrap();
        assert_eq!(Some(books.len()), case.books, "{name}");
        for book in books {
            for (field, value) in book.as_object().unwrap() {
                let len = value.as_str().map_or(0, str::len);
                assert!(len <= MAX_FIELD_BYTES, "{name}: {field} of {len} bytes");
                assert!(
                    !value.as_str().unwrap_or_default().contains('\u{1}'),
                    "{name}: a control character was kept"
                );
            }
        }
    }
}

/// A real export's results take less room than the upload, and page back book for book
/// whatever the page size.
#[test]
fn a_real_export_pages_back_whole_within_its_budget() {
    let (file, _) = crate::pipelines::csv::generate_goodreads(10_000, 11);
    let mut sim = Sim::new(config(&[]), T0);
    let token = csv_job(&mut sim, &file);
    let socket = open(&sim);
    say(&mut sim, &socket, r#"{"type":"ready"}"#);
    run_to_end(&mut sim, T0 + 3_600_000);
    assert_eq!(status(&sim).as_deref(), Some("complete"));
    let result_bytes: usize = sim
        .host
        .storage()
        .iter()
        .filter(|(key, _)| key.starts_with("res:"))
        .map(|(key, value)| key.len() + value.len())
        .sum();
    assert!(
        result_bytes < file.len(),
        "{result_bytes} bytes of results for a {} byte export",
        file.len()
    );
    let whole = sim.all_results(&token, "csv", None);
    let books = whole["books"].as_array().unwrap().len() as u64;
    let summary = socket.messages().last().unwrap()["payload"]["summary"].clone();
    assert_eq!(summary["successCount"], books, "{summary}");
    assert!(books > 8_000, "{books}");
    for limit in [293, 1_000] {
        assert_eq!(
            sim.all_results(&token, "csv", Some(limit)),
            whole,
            "pages of {limit}"
        );
    }
}
