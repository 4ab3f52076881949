//! Every storage key a job object writes, built in one place so no two modules can disagree.
//!
//! The names are a storage format: jobs persisted by an older build resume on a newer one,
//! so a key changes only with a migration (see `tests/fixtures/storage/`).

use std::ops::Range;

/// The job's core: credential, state, schedule and throttle ([`crate::job::record::JobRecord`]).
pub const CORE: &str = "core";
/// The pipeline's progress ([`crate::pipelines::work::Work`]), written with the core.
pub const WORK: &str = "work";

/// How many storage writes of the job failed in a row: small and apart from the core, so it
/// can be counted when the core's write is what fails.
pub const FAULTS: &str = "faults";

/// A CSV upload, stored in slices `in:0`, `in:1`, ...
pub const CSV_INPUT_PREFIX: &str = "in:";
/// An enrichment batch's books, one JSON array.
pub const ENRICH_INPUT: &str = "in:books";

/// The result slices of a CSV import stored by v1, numbered in the order they were written.
pub const CSV_RESULT_PREFIX: &str = "res:csv:";
/// A CSV import's books, merges, errors and warnings (`pipelines::csv::store`). None of these
/// prefixes starts with [`CSV_RESULT_PREFIX`], so listing v1's slices never meets them.
pub const CSV_BOOKS_PREFIX: &str = "res:csvb:";
pub const CSV_PATCHES_PREFIX: &str = "res:csvp:";
pub const CSV_ERRORS_PREFIX: &str = "res:csve:";
pub const CSV_WARNINGS_PREFIX: &str = "res:csvw:";
/// The outcome of each enrichment input, by input index.
pub const ENRICH_RESULT_PREFIX: &str = "res:enr:";
/// The books found on each photo of a scan, by the photo's position in the batch.
pub const SCAN_RESULT_PREFIX: &str = "res:scan:";

/// Where the bytes of a scan's photo number `position` are stored, in slices.
pub fn scan_image_prefix(position: usize) -> String {
    format!("img:{position}:")
}

/// Inputs are stored in slices of this size, well under the 2 MB key+value limit of
/// SQLite-backed objects.
pub const SLICE_BYTES: usize = 1024 * 1024;

/// The `n`th slice of a value stored under `prefix`.
pub fn slice(prefix: &str, n: usize) -> String {
    format!("{prefix}{n}")
}

/// The slices `len` bytes are stored in: each key with the byte range it holds.
pub fn slices(prefix: &str, len: usize) -> Vec<(String, Range<usize>)> {
    (0..len.div_ceil(SLICE_BYTES))
        .map(|n| {
            let start = n * SLICE_BYTES;
            (slice(prefix, n), start..(start + SLICE_BYTES).min(len))
        })
        .collect()
}

/// Just the keys of [`slices`].
pub fn slice_keys(prefix: &str, len: usize) -> Vec<String> {
    slices(prefix, len)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

pub fn csv_result(slice: u32) -> String {
    format!("{CSV_RESULT_PREFIX}{slice:05}")
}

/// Book slice `slice` of a CSV import.
pub fn csv_books(slice: u32) -> String {
    format!("{CSV_BOOKS_PREFIX}{slice:05}")
}

/// Where the merges into the books of `slice` are stored: [`csv_patches`] sort under it in
/// the order they were written.
pub fn csv_patches_prefix(slice: u32) -> String {
    format!("{CSV_PATCHES_PREFIX}{slice:05}:")
}

pub fn csv_patches(slice: u32, part: u32) -> String {
    format!("{}{part:06}", csv_patches_prefix(slice))
}

pub fn csv_errors(part: u32) -> String {
    format!("{CSV_ERRORS_PREFIX}{part:05}")
}

pub fn csv_warnings(part: u32) -> String {
    format!("{CSV_WARNINGS_PREFIX}{part:05}")
}

pub fn enrich_result(index: usize) -> String {
    format!("{ENRICH_RESULT_PREFIX}{index:03}")
}

pub fn scan_result(position: usize) -> String {
    format!("{SCAN_RESULT_PREFIX}{position:02}")
}

/// Part `part` of a photo's books: the first part is [`scan_result`] itself (as older builds
/// stored the whole list), later ones sort right after it.
pub fn scan_result_part(position: usize, part: usize) -> String {
    match part {
        0 => scan_result(position),
        n => format!("{SCAN_RESULT_PREFIX}{position:02}:{n}"),
    }
}

/// The most bytes one stored result value holds, whatever the data: results are split into
/// parts of at most this size, far under the 2 MB a key and value may take in a SQLite-backed
/// object.
pub const MAX_RESULT_VALUE_BYTES: usize = 128 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact spellings older builds wrote; changing one strands their stored jobs.
    #[test]
    fn keys_keep_their_stored_spelling() {
        let table = [
            (csv_result(0), "res:csv:00000"),
            (csv_result(12), "res:csv:00012"),
            (csv_books(3), "res:csvb:00003"),
            (csv_patches(3, 17), "res:csvp:00003:000017"),
            (csv_errors(2), "res:csve:00002"),
            (csv_warnings(0), "res:csvw:00000"),
            (enrich_result(7), "res:enr:007"),
            (scan_result(3), "res:scan:03"),
            (scan_result_part(3, 0), "res:scan:03"),
            (scan_result_part(3, 2), "res:scan:03:2"),
            (slice(CSV_INPUT_PREFIX, 2), "in:2"),
            (slice(&scan_image_prefix(1), 0), "img:1:0"),
        ];
        for (built, stored) in table {
            assert_eq!(built, stored);
        }
    }

    #[test]
    fn slices_cover_the_data_exactly() {
        let table = [
            (0, 0),
            (1, 1),
            (SLICE_BYTES, 1),
            (SLICE_BYTES + 1, 2),
            (10 * SLICE_BYTES, 10),
        ];
        for (len, count) in table {
            let s = slices("in:", len);
            assert_eq!(s.len(), count, "{len}");
            assert_eq!(s.iter().map(|(_, r)| r.len()).sum::<usize>(), len);
            if let Some((key, _)) = s.last() {
                assert_eq!(key, &format!("in:{}", count - 1));
            }
        }
    }

    /// Result keys sort in index order, which is how results are listed back.
    #[test]
    fn result_keys_sort_numerically() {
        let mut keys: Vec<String> = [100, 9, 10, 0].map(enrich_result).to_vec();
        keys.sort();
        assert_eq!(
            keys,
            ["res:enr:000", "res:enr:009", "res:enr:010", "res:enr:100"]
        );
        assert!(csv_result(99_999) > csv_result(10_000));
        for key in [
            csv_books(0),
            csv_patches(0, 0),
            csv_errors(0),
            csv_warnings(0),
        ] {
            assert!(
                !key.starts_with(CSV_RESULT_PREFIX),
                "{key} lists with v1's slices"
            );
        }
        assert!(csv_patches(2, 10) > csv_patches(2, 9));
        assert!(csv_patches(2, 0).starts_with(&csv_patches_prefix(2)));
        assert!(!csv_patches(12, 0).starts_with(&csv_patches_prefix(1)));
        let mut parts = vec![scan_result(1), scan_result_part(0, 1), scan_result(0)];
        parts.sort();
        assert_eq!(parts, ["res:scan:00", "res:scan:00:1", "res:scan:01"]);
    }
}
