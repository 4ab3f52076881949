//! Batch enrichment: Google Books and Open Library queries, response parsing and match scoring.
