//! Measures CSV import throughput natively: 50,000 generated Goodreads rows, parsed the way the glue does.

// The generator is test data and is not built for wasm; this example is native only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use bookstrack_jobs::pipelines::csv::{
        generate_goodreads, parse_slice, read_header, Deduper, ImportTotals,
    };
    use std::time::{Duration, Instant};

    const ROWS: usize = 50_000;
    const SEED: u64 = 2024;
    const RECORDS_PER_SLICE: usize = 2_000;
    const RUNS: usize = 5;

    pub fn main() {
        let (file, expected) = generate_goodreads(ROWS, SEED);
        let mut timings = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let totals = import(&file);
            timings.push(started.elapsed());
            // A fast wrong answer is no answer: every run must account for every row.
            assert_eq!(totals, expected, "the import disagrees with the generator");
        }
        timings.sort();
        let bytes = file.len() as f64;
        let rows = ROWS as f64;
        let mb_per_s = |d: Duration| bytes / 1e6 / d.as_secs_f64();
        let rows_per_s = |d: Duration| rows / d.as_secs_f64();
        let (fastest, median, slowest) = (timings[0], timings[RUNS / 2], timings[RUNS - 1]);
        println!(
            "{} rows, {} bytes, {RUNS} runs, slices of {RECORDS_PER_SLICE} records",
            ROWS,
            file.len()
        );
        for (label, time) in [
            ("min time", fastest),
            ("median", median),
            ("max time", slowest),
        ] {
            println!(
                "{label:>9}: {:>8.2} ms  {:>8.1} MB/s  {:>10.0} rows/s",
                time.as_secs_f64() * 1e3,
                mb_per_s(time),
                rows_per_s(time)
            );
        }
        let samples: Vec<String> = timings
            .iter()
            .map(|t| format!("{:.0}", rows_per_s(*t)))
            .collect();
        println!(
            "{{\"mb_per_s\":{:.1},\"rows_per_s\":{:.0},\"rows_per_s_samples\":[{}],\"bytes\":{},\"rows\":{}}}",
            mb_per_s(median),
            rows_per_s(median),
            samples.join(","),
            file.len(),
            ROWS
        );
    }

    /// Reads the header, then parses slice after slice from the saved cursor, as the glue does.
    fn import(file: &[u8]) -> ImportTotals {
        let (header, mut cursor) = read_header(file, true).expect("generated header is valid");
        let mut totals = ImportTotals::default();
        let mut deduper = Deduper::default();
        loop {
            let input = file.get(cursor.offset as usize..).unwrap_or_default();
            let out = parse_slice(
                &header,
                input,
                cursor,
                true,
                RECORDS_PER_SLICE,
                &mut totals,
                &mut deduper,
            );
            cursor = out.cursor;
            if out.done {
                return totals;
            }
        }
    }
}
