//! The column orders of the exports we recognise, for files that lost their header row.
//!
//! Each list is the header row the service writes, as seen in real exports. They are used only
//! when a file's first line is data (a `format` hint, or a Goodreads export recognised by its
//! first record); a file with a header row is always read by its own names.

/// Goodreads' export since about 2018.
pub const GOODREADS: &[&str] = &[
    "Book Id",
    "Title",
    "Author",
    "Author l-f",
    "Additional Authors",
    "ISBN",
    "ISBN13",
    "My Rating",
    "Average Rating",
    "Publisher",
    "Binding",
    "Number of Pages",
    "Year Published",
    "Original Publication Year",
    "Date Read",
    "Date Added",
    "Bookshelves",
    "Bookshelves with positions",
    "Exclusive Shelf",
    "My Review",
    "Spoiler",
    "Private Notes",
    "Read Count",
    "Owned Copies",
];

/// Goodreads' older, wider export (with the recommendation and condition columns).
pub const GOODREADS_OLD: &[&str] = &[
    "Book Id",
    "Title",
    "Author",
    "Author l-f",
    "Additional Authors",
    "ISBN",
    "ISBN13",
    "My Rating",
    "Average Rating",
    "Publisher",
    "Binding",
    "Number of Pages",
    "Year Published",
    "Original Publication Year",
    "Date Read",
    "Date Added",
    "Bookshelves",
    "Bookshelves with positions",
    "Exclusive Shelf",
    "My Review",
    "Spoiler",
    "Private Notes",
    "Read Count",
    "Recommended For",
    "Recommended By",
    "Owned Copies",
    "Original Purchase Date",
    "Original Purchase Location",
    "Condition",
    "Condition Description",
    "BCID",
];

pub const STORYGRAPH: &[&str] = &[
    "Title",
    "Authors",
    "Contributors",
    "ISBN/UID",
    "Format",
    "Read Status",
    "Date Added",
    "Last Date Read",
    "Dates Read",
    "Read Count",
    "Moods",
    "Pace",
    "Character- or Plot-Driven?",
    "Strong Character Development?",
    "Loveable Characters?",
    "Diverse Characters?",
    "Flawed Characters?",
    "Star Rating",
    "Review",
    "Content Warnings",
    "Content Warning Description",
    "Tags",
    "Owned?",
];

/// LibraryThing's current export, tab-separated (`.tsv`); its CSV variant has the same names.
pub const LIBRARYTHING: &[&str] = &[
    "Book Id",
    "Title",
    "Sort Character",
    "Primary Author",
    "Primary Author Role",
    "Secondary Author",
    "Secondary Author Roles",
    "Publication",
    "Date",
    "Review",
    "Rating",
    "Comment",
    "Private Comment",
    "Summary",
    "Media",
    "Physical Description",
    "Weight",
    "Height",
    "Thickness",
    "Length",
    "Dimensions",
    "Page Count",
    "LCCN",
    "Acquired",
    "Date Started",
    "Date Read",
    "Barcode",
    "BCID",
    "Tags",
    "Collections",
    "Languages",
    "Original Languages",
    "LC Classification",
    "ISBN",
    "ISBNs",
    "Subjects",
    "Dewey Decimal",
    "Dewey Wording",
    "Other Call Number",
    "Copies",
    "Source",
    "Entry Date",
    "From Where",
    "OCLC",
    "Work id",
    "Lending Patron",
    "Lending Status",
    "Lending Start",
    "Lending End",
];

/// The older LibraryThing CSV export. Only these first seven names are the same in every
/// copy seen (other tools check exactly these); what follows varies, so a header-less file
/// in this layout is read for its title, author and ISBNs only.
pub const LIBRARYTHING_OLD: &[&str] = &[
    "'TITLE'",
    "'AUTHOR (first, last)'",
    "'AUTHOR (last, first)'",
    "'DATE'",
    "'LCC'",
    "'DDC'",
    "'ISBNs'",
];

pub const PLAIN: &[&str] = &["Title", "Author", "ISBN"];

/// Strings for tests and fixtures: a layout's header row joined with `separator`.
#[cfg(test)]
pub(crate) fn header_row(layout: &[&str], separator: &str) -> String {
    layout.join(separator)
}
