//! CSV import: streaming, resumable parsing of Goodreads/StoryGraph/LibraryThing/plain exports.
