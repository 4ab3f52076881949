//! Writes the benchmark's generated Goodreads file to stdout, for profiling an import by hand
//! (scripts/profile-csv.mjs): `cargo run --release --example goodreads_csv -- [rows] [seed]`.

// The generator is test data and is not built for wasm; this example is native only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use std::io::Write;
    let mut args = std::env::args().skip(1);
    // The defaults are the file `npm run bench` imports (tests/bench/main.rs).
    let rows = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (file, _) = bookstrack_jobs::pipelines::csv::generate_goodreads(rows, seed);
    std::io::stdout()
        .write_all(&file)
        .expect("writing the file to stdout");
}
