//! Match scoring: whether a provider record is the book the user asked for, so that a title
//! search never accepts a sequel, a companion or a cookbook in its place.
//!
//! # How a score is made
//!
//! - **ISBN.** When the input has a valid ISBN and a candidate carries it (as an ISBN-10 or
//!   ISBN-13), the candidate matches outright with score 1.
//! - **Title similarity** is the Sørensen–Dice coefficient over *word tokens* (not character
//!   bigrams): `2·shared / (words_a + words_b)`. Words are what distinguishes "Dune" from
//!   "Dune Messiah" or "Foundation" from "Second Foundation"; a character-bigram Dice rates
//!   those 0.5–0.8 because the shared word is long, which is too close to a real match.
//!   Typos are tolerated per word instead: two alphabetic words of 5+ letters count as the
//!   same word when their character-bigram Dice is at least 0.8 ("Hobit" ~ "Hobbit").
//!   Before comparing, titles are case-folded, common Latin diacritics folded (é → e),
//!   apostrophes dropped (Ender's → enders), `&` read as "and", other punctuation made a word
//!   break, the articles a/an/the dropped, and anything in brackets removed (Goodreads-style
//!   "(Dune Chronicles, #1)", "(Deluxe Edition)"). The subtitle after the first `:` (or a
//!   spaced dash, " - ") is ignored unless *both* sides have one; then the full titles are
//!   compared, so that "Star Wars: Heir to the Empire" does not match "Star Wars: Dark Force
//!   Rising". A statement of responsibility is cut first ([`strip_responsibility`]): the
//!   author after a catalogue's `\c` marker, or after ` / ` or `by` when it is the author.
//! - **Author overlap** compares surnames only, as the overlap coefficient
//!   `shared / min(|input surnames|, |candidate surnames|)`, so a record listing fewer
//!   (or more) co-authors still counts. A surname is the last word of a name, ignoring
//!   initials and suffixes (Jr., III); in "Herbert, Frank" form it is the part before the
//!   comma. Input names may be separated by `,` `;` `&` `/` or "and".
//! - **Combination.** With authors on both sides: `0.7·title + 0.3·author`. Without (no input
//!   author, or a record that lists none): `0.9·title`, the stricter bar: only an exact
//!   title after normalisation (or one differing by a typo) passes.
//! - [`MIN_SCORE`] is 0.85. With a perfect author match the title must reach 0.8 (five words
//!   with one differing: "Philosopher's Stone" vs "Sorcerer's Stone" passes; "Dune" vs
//!   "Dune Messiah", 0.67, does not). An exact title with a wrong author (0.7) does not pass.
//!
//! "1984" does **not** match "Nineteen Eighty-Four": reading numerals as words would need a
//! number-to-words table (in several languages, with year-style readings) for the sake of a
//! handful of titles. An input with an ISBN matches on it; without one, both providers also
//! index Orwell's novel under the title "1984", which matches.

use super::model::{clean_published_date, clean_publisher, Candidate, EnrichedBook, Provider};
use super::request::BookInput;

/// The lowest score [`best_match`] accepts.
pub const MIN_SCORE: f64 = 0.85;

const TITLE_WEIGHT: f64 = 0.7;
const AUTHOR_WEIGHT: f64 = 0.3;
/// Applied when authors cannot be compared: an exact title alone scores 0.9.
const TITLE_ONLY_FACTOR: f64 = 0.9;
/// Words per title part, surnames per side and authors per record that take part in scoring:
/// bounds the quadratic word matching on pathological provider records.
const MAX_TOKENS: usize = 64;
/// Two words of at least this many letters may match despite a typo.
const FUZZY_MIN_CHARS: usize = 5;
const FUZZY_MIN_DICE: f64 = 0.8;

const ARTICLES: [&str; 3] = ["the", "a", "an"];
/// Words that end a name without being its surname.
const NAME_NOISE: [&str; 17] = [
    "jr",
    "sr",
    "ii",
    "iii",
    "iv",
    "phd",
    "md",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "sir",
    "dame",
    "editor",
    "ed",
    "translator",
];
/// Words that separate two people in an author string.
const NAME_SEPARATORS: [&str; 2] = ["and", "with"];

/// How well `candidate` matches `input`, in `0.0..=1.0` (see the module docs).
pub fn score(input: &BookInput, candidate: &Candidate) -> f64 {
    if isbn_matches(input, candidate) {
        return 1.0;
    }
    let input_surnames = input.author.as_deref().map(surnames).unwrap_or_default();
    let named: Vec<&str> = input
        .author
        .iter()
        .chain(candidate.authors.iter().take(MAX_TOKENS))
        .map(String::as_str)
        .collect();
    let title = title_similarity(
        strip_responsibility(&input.title, &named),
        strip_responsibility(&candidate.title, &named),
        candidate.subtitle.as_deref(),
    );
    let candidate_surnames = dedup(
        candidate
            .authors
            .iter()
            .take(MAX_TOKENS)
            .flat_map(|a| surnames(a))
            .take(MAX_TOKENS)
            .collect(),
    );
    let s = if input_surnames.is_empty() || candidate_surnames.is_empty() {
        TITLE_ONLY_FACTOR * title
    } else {
        TITLE_WEIGHT * title + AUTHOR_WEIGHT * surname_overlap(&input_surnames, &candidate_surnames)
    };
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The candidate that is the input's book: one carrying the input's valid ISBN if any (the
/// first such), else the highest score of at least [`MIN_SCORE`] (the earliest on a tie, as
/// providers rank by relevance). `None` when nothing is close enough.
pub fn best_match<'a>(input: &BookInput, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    if let Some(isbn13) = input.valid_isbn13() {
        if let Some(c) = candidates.iter().find(|c| c.carries_isbn(&isbn13)) {
            return Some(c);
        }
    }
    let mut best: Option<(&Candidate, f64)> = None;
    for c in candidates {
        let s = score(input, c);
        // On a tie, a record with a cover beats one without: providers list duplicates of a
        // work, and the one the user will see should show its cover.
        let better = match best {
            None => true,
            Some((b, bs)) => s > bs || (s == bs && b.cover_url.is_none() && c.cover_url.is_some()),
        };
        if s >= MIN_SCORE && better {
            best = Some((c, s));
        }
    }
    best.map(|(c, _)| c)
}

/// A title without a statement of responsibility. Library catalogues, and the Google Books
/// records copied from them, append the author after a MARC `\c` marker or a ` / `
/// (`Java NIO \c Ron Hitchens`, `Dune / Frank Herbert`), and prose writes `by <author>`. The
/// `\c` tail is always cut (it is never title text); the others only when the tail names a
/// surname of one of `authors`, so `Stand by Me` keeps its words.
pub fn strip_responsibility<'a>(title: &'a str, authors: &[&str]) -> &'a str {
    if let Some(at) = title.find("\\c") {
        let before = title.get(..at).unwrap_or_default();
        let after = title.get(at + 2..).unwrap_or_default();
        let marker = (before.is_empty() || before.ends_with(char::is_whitespace))
            && (after.is_empty() || after.starts_with(char::is_whitespace));
        if marker && !before.trim().is_empty() {
            return before.trim_end();
        }
    }
    let known: Vec<String> = authors.iter().flat_map(|a| surnames(a)).collect();
    if known.is_empty() {
        return title;
    }
    let lower = title.to_lowercase();
    // Byte positions agree between `title` and `lower` only when folding kept every length;
    // otherwise the title is left as it is.
    if lower.len() != title.len() {
        return title;
    }
    for separator in [" / ", " by "] {
        let Some(at) = lower.rfind(separator) else {
            continue;
        };
        let (head, tail) = (
            title.get(..at).unwrap_or_default(),
            title.get(at + separator.len()..).unwrap_or_default(),
        );
        let names_author = surnames(tail).iter().any(|s| known.contains(s));
        if names_author && !head.trim().is_empty() {
            return head.trim_end();
        }
    }
    title
}

// The results record of a candidate is built here, beside the rule that cuts its title, so
// that the model depends on nothing of the matcher.
impl Candidate {
    /// The results line's record: values as the provider gave them, except the title, cut
    /// of a statement of responsibility (`Java NIO \c Ron Hitchens` is `Java NIO`, see
    /// [`strip_responsibility`]), and `publisher` and `publishedDate`, cleaned to the
    /// results' shapes ([`clean_publisher`], [`clean_published_date`]).
    pub fn to_enriched(&self, provider: Provider) -> EnrichedBook {
        let authors: Vec<&str> = self.authors.iter().map(String::as_str).collect();
        EnrichedBook {
            title: strip_responsibility(&self.title, &authors).to_string(),
            authors: self.authors.clone(),
            isbn13: self.isbn13.clone(),
            isbn10: self.isbn10.clone(),
            publisher: self.publisher.as_deref().and_then(clean_publisher),
            published_date: self
                .published_date
                .as_deref()
                .and_then(clean_published_date),
            page_count: self.page_count,
            cover_url: self.cover_url.clone(),
            provider,
        }
    }

    /// Whether this record carries the given ISBN-13 (or the ISBN-10 it converts from).
    pub fn carries_isbn(&self, isbn13: &str) -> bool {
        self.isbns.iter().any(|i| i == isbn13)
    }
}

/// The main title and the subtitle: split at the first `:`, or at a spaced dash (` - `,
/// ` – `, ` — `), which records use the same way (`Sapiens - A Brief History`); a dash inside a
/// word (`Catch-22`) is no separator.
fn split_subtitle(text: &str) -> (&str, &str) {
    let at = [":", " - ", " \u{2013} ", " \u{2014} "]
        .iter()
        .filter_map(|sep| text.find(sep).map(|i| (i, sep.len())))
        .min();
    match at {
        Some((i, len)) => (
            text.get(..i).unwrap_or_default(),
            text.get(i + len..).unwrap_or_default(),
        ),
        None => (text, ""),
    }
}

/// The title to send to a provider's search: bracketed series or edition notes removed
/// ("The Way of Kings (The Stormlight Archive, #1)" → "The Way of Kings"), since search
/// engines require every word to appear and the record's title rarely carries them.
pub fn search_title(title: &str) -> String {
    let stripped = strip_bracketed(title);
    let collapsed = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        title.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        collapsed
    }
}

fn isbn_matches(input: &BookInput, candidate: &Candidate) -> bool {
    input
        .valid_isbn13()
        .is_some_and(|isbn13| candidate.carries_isbn(&isbn13))
}

#[derive(Debug, PartialEq)]
struct TitleParts {
    main: Vec<String>,
    subtitle: Vec<String>,
}

fn title_parts(title: &str) -> TitleParts {
    let stripped = strip_bracketed(title);
    let (main, subtitle) = split_subtitle(&stripped);
    let main = content_words(main);
    if !main.is_empty() {
        return TitleParts {
            main,
            subtitle: content_words(subtitle),
        };
    }
    // A title that is all subtitle (": x") or all brackets ("(untitled)") is compared whole.
    let whole = content_words(&stripped);
    let main = if whole.is_empty() {
        content_words(title)
    } else {
        whole
    };
    TitleParts {
        main,
        subtitle: Vec::new(),
    }
}

fn title_similarity(input: &str, candidate: &str, candidate_subtitle: Option<&str>) -> f64 {
    let input = title_parts(input);
    let candidate = match candidate_subtitle {
        Some(sub) => title_parts(&format!("{candidate}: {sub}")),
        None => title_parts(candidate),
    };
    if input.subtitle.is_empty() || candidate.subtitle.is_empty() {
        word_dice(&input.main, &candidate.main)
    } else {
        let full = |p: TitleParts| [p.main, p.subtitle].concat();
        word_dice(&full(input), &full(candidate))
    }
}

/// Words with articles removed, unless the title is nothing but articles ("The The").
fn content_words(text: &str) -> Vec<String> {
    let words: Vec<String> = lex(text, false)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .collect();
    let content: Vec<String> = words
        .iter()
        .filter(|w| !ARTICLES.contains(&w.as_str()))
        .cloned()
        .collect();
    let mut out = if content.is_empty() { words } else { content };
    out.truncate(MAX_TOKENS);
    out
}

/// Dice over word multisets; exact matches are paired first so a typo-tolerant pairing
/// cannot steal a word that has an exact partner.
fn word_dice(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut used = vec![false; b.len()];
    let mut shared = 0usize;
    let mut pending = Vec::new();
    for word in a {
        match (0..b.len()).find(|&j| !used[j] && b[j] == *word) {
            Some(j) => {
                used[j] = true;
                shared += 1;
            }
            None => pending.push(word),
        }
    }
    for word in pending {
        if let Some(j) = (0..b.len()).find(|&j| !used[j] && same_word(word, &b[j])) {
            used[j] = true;
            shared += 1;
        }
    }
    (2 * shared) as f64 / (a.len() + b.len()) as f64
}

fn same_word(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let long_alphabetic =
        |w: &str| w.chars().count() >= FUZZY_MIN_CHARS && w.chars().all(char::is_alphabetic);
    long_alphabetic(a) && long_alphabetic(b) && bigram_dice(a, b) >= FUZZY_MIN_DICE
}

fn bigram_dice(a: &str, b: &str) -> f64 {
    let bigrams = |w: &str| {
        let chars: Vec<char> = w.chars().collect();
        chars.windows(2).map(|p| (p[0], p[1])).collect::<Vec<_>>()
    };
    let a = bigrams(a);
    let mut b = bigrams(b);
    let total = a.len() + b.len();
    if total == 0 {
        return 0.0;
    }
    let mut shared = 0usize;
    for pair in &a {
        if let Some(j) = b.iter().position(|p| p == pair) {
            b.swap_remove(j);
            shared += 1;
        }
    }
    (2 * shared) as f64 / total as f64
}

fn surname_overlap(input: &[String], candidate: &[String]) -> f64 {
    let shared = input
        .iter()
        .filter(|s| candidate.iter().any(|c| same_word(s, c)))
        .count();
    let smaller = input.len().min(candidate.len());
    if smaller == 0 {
        0.0
    } else {
        (shared as f64 / smaller as f64).min(1.0)
    }
}

/// The surnames in an author string (see the module docs).
fn surnames(author: &str) -> Vec<String> {
    let stripped = strip_bracketed(author);
    let mut out = Vec::new();
    for person_group in lex(&stripped, true).split(|t| *t == Token::Separator) {
        let parts: Vec<Vec<&String>> = person_group
            .split(|t| *t == Token::Comma)
            .map(|part| {
                part.iter()
                    .filter_map(|t| match t {
                        Token::Word(w) if is_name_word(w) => Some(w),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|words| !words.is_empty())
            .collect();
        match parts.as_slice() {
            // "Herbert, Frank": one word before the comma is a surname, not a whole person.
            [last, _first] if last.len() == 1 => out.push(last[0].clone()),
            _ => out.extend(
                parts
                    .iter()
                    .filter_map(|words| words.last().map(|w| (*w).clone())),
            ),
        }
    }
    out.truncate(MAX_TOKENS);
    dedup(out)
}

/// Initials ("J." of "J.R.R.") and suffixes cannot tell two authors apart.
fn is_name_word(word: &str) -> bool {
    word.chars().count() >= 2 && !NAME_NOISE.contains(&word)
}

fn dedup(mut words: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(words.len());
    words.retain(|w| {
        if seen.contains(w) {
            false
        } else {
            seen.push(w.clone());
            true
        }
    });
    words
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Comma,
    Separator,
}

/// Splits folded text into words. In author mode `,` and person separators become tokens;
/// in title mode they are word breaks and `&` reads as "and".
fn lex(text: &str, author_mode: bool) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        if author_mode && NAME_SEPARATORS.contains(&w.as_str()) {
            tokens.push(Token::Separator);
        } else {
            tokens.push(Token::Word(w));
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if let Some(folded) = fold_diacritic(c) {
            word.push_str(folded);
        } else if c.is_alphanumeric() {
            word.push(c);
        } else if is_apostrophe(c) || is_combining_mark(c) {
            // Part of the word: "ender's" reads as "enders", a decomposed "é" as "e".
        } else {
            flush(&mut word, &mut tokens);
            match c {
                ',' if author_mode => tokens.push(Token::Comma),
                ';' | '&' | '/' | '|' | '+' if author_mode => tokens.push(Token::Separator),
                '&' => tokens.push(Token::Word("and".into())),
                _ => {}
            }
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '\u{2018}' | '\u{2019}' | '\u{02bc}' | '`' | '\u{00b4}'
    )
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036f}')
}

/// Common Latin letters with diacritics, as their base letters; a Unicode normalisation
/// crate would be the general answer but is not worth its tables in the wasm bundle.
fn fold_diacritic(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' | 'ľ' | 'ĺ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ř' | 'ŕ' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ť' | 'ţ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'þ' => "th",
        _ => return None,
    })
}

/// Removes `(...)`, `[...]` and `{...}` spans; an unclosed bracket removes the rest.
fn strip_bracketed(text: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                out.push(' ');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(title: &str, subtitle: Option<&str>, authors: &[&str]) -> Candidate {
        Candidate {
            title: title.into(),
            subtitle: subtitle.map(Into::into),
            authors: authors.iter().map(|a| a.to_string()).collect(),
            ..Candidate::default()
        }
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn accepts_and_rejects_like_a_librarian() {
        // (input title, input author, candidate title, candidate subtitle, candidate authors, accept)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            bool,
        );
        let table: &[Row] = &[
            // Near misses from the brief.
            (
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                "The Hobbit Companion",
                None,
                &["David Day"],
                false,
            ),
            (
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                "Hobbit Cooking",
                None,
                &[],
                false,
            ),
            (
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                "Hobbit Cooking",
                None,
                &["Anna Brown"],
                false,
            ),
            ("The Hobbit", None, "Hobbit Cooking", None, &[], false),
            (
                "The Hobbit",
                None,
                "The Hobbit Companion",
                None,
                &["David Day"],
                false,
            ),
            (
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                "The Annotated Hobbit",
                None,
                &["J. R. R. Tolkien", "Douglas A. Anderson"],
                false,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "Dune Messiah",
                None,
                &["Frank Herbert"],
                false,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "Children of Dune",
                None,
                &["Frank Herbert"],
                false,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "The Road to Dune",
                None,
                &["Frank Herbert", "Brian Herbert"],
                false,
            ),
            (
                "Foundation",
                Some("Isaac Asimov"),
                "Second Foundation",
                None,
                &["Isaac Asimov"],
                false,
            ),
            (
                "Foundation",
                Some("Isaac Asimov"),
                "Foundation and Empire",
                None,
                &["Isaac Asimov"],
                false,
            ),
            (
                "Harry Potter and the Chamber of Secrets",
                Some("J.K. Rowling"),
                "Harry Potter and the Prisoner of Azkaban",
                None,
                &["J. K. Rowling"],
                false,
            ),
            (
                "Star Wars: Heir to the Empire",
                Some("Timothy Zahn"),
                "Star Wars",
                Some("Dark Force Rising"),
                &["Timothy Zahn"],
                false,
            ),
            // Same title, another author's book.
            (
                "It",
                Some("Stephen King"),
                "It",
                None,
                &["Sarah Smith"],
                false,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "Dune",
                None,
                &["Anne Frank"],
                false,
            ),
            // Decided: numerals are not read as words.
            (
                "1984",
                Some("George Orwell"),
                "Nineteen Eighty-Four",
                None,
                &["George Orwell"],
                false,
            ),
            // Accepted variants.
            (
                "Dune",
                Some("Frank Herbert"),
                "Dune",
                None,
                &["Frank Herbert"],
                true,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "Dune (Deluxe Edition)",
                None,
                &["Herbert, Frank"],
                true,
            ),
            (
                "Dune",
                Some("Frank Herbert"),
                "Dune",
                Some("Deluxe Edition"),
                &["Frank Herbert"],
                true,
            ),
            (
                "Dune (Dune Chronicles, #1)",
                Some("Herbert, Frank"),
                "Dune",
                None,
                &["Frank Herbert"],
                true,
            ),
            (
                "DUNE",
                Some("FRANK HERBERT"),
                "dune",
                None,
                &["frank herbert"],
                true,
            ),
            ("Dune", None, "Dune", None, &["Frank Herbert"], true),
            ("Dune", Some("Frank Herbert"), "Dune", None, &[], true),
            (
                "1984",
                Some("George Orwell"),
                "1984",
                None,
                &["George Orwell"],
                true,
            ),
            (
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                "The Hobbit",
                Some("Or There and Back Again"),
                &["J. R. R. Tolkien"],
                true,
            ),
            (
                "The Hobbit",
                Some("Tolkien, J.R.R."),
                "Hobbit",
                None,
                &["John Ronald Reuel Tolkien"],
                true,
            ),
            (
                "The Hobit",
                Some("Tolkien"),
                "The Hobbit",
                None,
                &["J.R.R. Tolkien"],
                true,
            ),
            (
                "Sapiens: A Brief History of Humankind",
                Some("Yuval Noah Harari"),
                "Sapiens",
                None,
                &["Yuval Noah Harari"],
                true,
            ),
            (
                "Sapiens: A Brief History of Humankind",
                Some("Yuval Noah Harari"),
                "Sapiens",
                Some("A Brief History of Humankind"),
                &["Yuval Noah Harari"],
                true,
            ),
            (
                "Ender's Game",
                Some("Orson Scott Card"),
                "Enders Game",
                None,
                &["Orson Scott Card"],
                true,
            ),
            (
                "Les Misérables",
                Some("Victor Hugo"),
                "Les Miserables",
                None,
                &["Victor Hugo"],
                true,
            ),
            (
                "Cien años de soledad",
                Some("Gabriel García Márquez"),
                "Cien Años de Soledad",
                None,
                &["Gabriel Garcia Marquez"],
                true,
            ),
            (
                "Cien años de soledad",
                Some("García Márquez, Gabriel"),
                "Cien años de soledad",
                None,
                &["Gabriel García Márquez"],
                true,
            ),
            (
                "Pride & Prejudice",
                Some("Jane Austen"),
                "Pride and Prejudice",
                None,
                &["Jane Austen"],
                true,
            ),
            (
                "Harry Potter and the Philosopher's Stone",
                Some("J.K. Rowling"),
                "Harry Potter and the Sorcerer's Stone",
                None,
                &["J. K. Rowling"],
                true,
            ),
            (
                "Good Omens",
                Some("Terry Pratchett, Neil Gaiman"),
                "Good Omens",
                None,
                &["Neil Gaiman", "Terry Pratchett"],
                true,
            ),
            (
                "Good Omens",
                Some("Terry Pratchett & Neil Gaiman"),
                "Good Omens",
                None,
                &["Terry Pratchett"],
                true,
            ),
            (
                "The Left Hand of Darkness",
                Some("Le Guin, Ursula K."),
                "The Left Hand of Darkness",
                None,
                &["Ursula K. Le Guin"],
                true,
            ),
            (
                "Crime and Punishment",
                Some("Fyodor Dostoevsky"),
                "Crime and Punishment",
                None,
                &["Fyodor Dostoyevsky"],
                true,
            ),
            (
                "Star Wars: Heir to the Empire",
                Some("Timothy Zahn"),
                "Heir to the Empire",
                Some("Star Wars"),
                &["Timothy Zahn"],
                true,
            ),
            ("三体", Some("刘慈欣"), "三体", None, &["刘慈欣"], true),
        ];
        for (title, author, c_title, c_sub, c_authors, accept) in table {
            let input = BookInput::new(title, *author, None);
            let c = cand(c_title, *c_sub, c_authors);
            let s = score(&input, &c);
            assert!((0.0..=1.0).contains(&s));
            assert_eq!(
                s >= MIN_SCORE,
                *accept,
                "{title:?} by {author:?} vs {c_title:?} {c_sub:?} by {c_authors:?}: {s}"
            );
            let candidates = [c];
            assert_eq!(best_match(&input, &candidates).is_some(), *accept);
        }
    }

    #[test]
    fn isbn_matches_outright() {
        let mut c = cand("Completely Different", None, &["Someone Else"]);
        c.isbns = vec!["9780441013593".into()];
        let table = [
            (Some("9780441013593"), 1.0),
            (Some("0441013597"), 1.0),
            (Some("978-0-441-01359-3"), 1.0),
            (Some("9780441013594"), 0.0), // bad checksum: scored on title only
            (Some("9780547928227"), 0.0),
            (None, 0.0),
        ];
        for (isbn, want) in table {
            let input = BookInput::new("Dune", Some("Frank Herbert"), isbn);
            assert_eq!(score(&input, &c), want, "{isbn:?}");
        }
    }

    #[test]
    fn best_match_prefers_isbn_then_score_then_order() {
        let mut by_isbn = cand("Dune Messiah", None, &["Frank Herbert"]);
        by_isbn.isbns = vec!["9780441013593".into()];
        let exact = cand("Dune", None, &["Frank Herbert"]);
        let mut exact_again = exact.clone();
        exact_again.source_id = Some("second".into());
        let no_author = cand("Dune", None, &[]);
        let messiah = cand("Dune Messiah", None, &["Frank Herbert"]);

        let with_isbn = BookInput::new("Dune", Some("Frank Herbert"), Some("0441013597"));
        let no_isbn = BookInput::new("Dune", Some("Frank Herbert"), None);
        let table: &[(&BookInput, Vec<Candidate>, Option<usize>)] = &[
            (&with_isbn, vec![exact.clone(), by_isbn.clone()], Some(1)),
            (&no_isbn, vec![by_isbn.clone(), exact.clone()], Some(1)),
            (
                &no_isbn,
                vec![messiah.clone(), no_author.clone(), exact.clone()],
                Some(2),
            ),
            (&no_isbn, vec![messiah.clone(), no_author.clone()], Some(1)),
            (&no_isbn, vec![exact.clone(), exact_again.clone()], Some(0)),
            (&no_isbn, vec![messiah.clone()], None),
            (&no_isbn, vec![], None),
        ];
        for (input, candidates, want) in table {
            let got = best_match(input, candidates)
                .map(|c| candidates.iter().position(|x| std::ptr::eq(x, c)).unwrap());
            assert_eq!(got, *want, "{candidates:?}");
        }
    }

    #[test]
    fn titles_normalise_for_comparison() {
        let table: &[(&str, &[&str], &[&str])] = &[
            ("The Hobbit", &["hobbit"], &[]),
            (
                "The Hobbit: or There and Back Again",
                &["hobbit"],
                &["or", "there", "and", "back", "again"],
            ),
            ("Dune (Dune Chronicles, #1)", &["dune"], &[]),
            ("Dune [Illustrated]", &["dune"], &[]),
            ("Dune (unclosed", &["dune"], &[]),
            ("Ender’s Game", &["enders", "game"], &[]),
            ("Pride & Prejudice", &["pride", "and", "prejudice"], &[]),
            ("Catch-22", &["catch", "22"], &[]),
            ("Les Mise\u{301}rables", &["les", "miserables"], &[]),
            ("STRAßE", &["strasse"], &[]),
            ("The The", &["the", "the"], &[]),
            ("A", &["a"], &[]),
            (": Only Subtitle", &["only", "subtitle"], &[]),
            ("(untitled)", &["untitled"], &[]),
            ("", &[], &[]),
            ("?!", &[], &[]),
        ];
        for (title, main, subtitle) in table {
            let parts = title_parts(title);
            assert_eq!(
                parts,
                TitleParts {
                    main: words(main),
                    subtitle: words(subtitle)
                },
                "{title}"
            );
        }
    }

    #[test]
    fn surnames_are_extracted() {
        let table: &[(&str, &[&str])] = &[
            ("Frank Herbert", &["herbert"]),
            ("Herbert, Frank", &["herbert"]),
            ("J.R.R. Tolkien", &["tolkien"]),
            ("Tolkien, J. R. R.", &["tolkien"]),
            ("Martin Luther King Jr.", &["king"]),
            ("King, Stephen, Jr.", &["king"]),
            ("Ursula K. Le Guin", &["guin"]),
            ("Le Guin, Ursula K.", &["guin", "ursula"]),
            ("Terry Pratchett, Neil Gaiman", &["pratchett", "gaiman"]),
            ("Terry Pratchett & Neil Gaiman", &["pratchett", "gaiman"]),
            ("Terry Pratchett and Neil Gaiman", &["pratchett", "gaiman"]),
            ("Stephen King; Peter Straub", &["king", "straub"]),
            ("Frank Herbert (Author)", &["herbert"]),
            ("Gabriel García Márquez", &["marquez"]),
            ("Homer", &["homer"]),
            ("J.", &[]),
            ("", &[]),
            ("Herbert Herbert, Herbert", &["herbert"]),
        ];
        for (author, want) in table {
            assert_eq!(surnames(author), words(want), "{author}");
        }
    }

    #[test]
    fn word_dice_pairs_exact_words_before_typos() {
        let table: &[(&[&str], &[&str], f64)] = &[
            (&["dune"], &["dune"], 1.0),
            (&["dune"], &["dune", "messiah"], 2.0 / 3.0),
            (&["hobit"], &["hobbit"], 1.0),
            (&["dune"], &["dunes"], 0.0),
            (&["stone", "stones"], &["stones", "stone"], 1.0),
            (&[], &["dune"], 0.0),
            (&[], &[], 0.0),
        ];
        for (a, b, want) in table {
            let got = word_dice(&words(a), &words(b));
            assert!((got - want).abs() < 1e-9, "{a:?} {b:?}: {got}");
        }
    }

    #[test]
    fn statements_of_responsibility_are_cut() {
        let table: &[(&str, &[&str], &str)] = &[
            ("Java NIO \\c Ron Hitchens", &["Ron Hitchens"], "Java NIO"),
            ("Java NIO \\c Ron Hitchens", &[], "Java NIO"),
            ("Java NIO \\c", &[], "Java NIO"),
            ("Dune / Frank Herbert", &["Herbert, Frank"], "Dune"),
            ("Dune / edited by Frank Herbert", &["Frank Herbert"], "Dune"),
            ("Dune by Frank Herbert", &["F. Herbert"], "Dune"),
            // Only the author's name makes a tail a statement of responsibility.
            ("Stand by Me", &["Stephen King"], "Stand by Me"),
            ("Either / Or", &["Søren Kierkegaard"], "Either / Or"),
            ("Dune / Frank Herbert", &[], "Dune / Frank Herbert"),
            // A title that is nothing but the marker's tail is kept.
            ("\\c Ron Hitchens", &[], "\\c Ron Hitchens"),
            ("by Frank Herbert", &["Frank Herbert"], "by Frank Herbert"),
            ("C:\\code", &[], "C:\\code"),
        ];
        for (title, authors, want) in table {
            assert_eq!(strip_responsibility(title, authors), *want, "{title}");
        }
    }

    #[test]
    fn records_with_an_author_suffix_or_a_dash_subtitle_match() {
        // (input title, input author, record title, record subtitle, record authors, accept)
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            bool,
        );
        let table: &[Row] = &[
            (
                "Java NIO",
                "Ron Hitchens",
                "Java NIO \\c Ron Hitchens",
                None,
                &["Ron Hitchens"],
                true,
            ),
            (
                "Java NIO",
                "Ron Hitchens",
                "Java NIO \\c Ron Hitchens",
                None,
                &[],
                true,
            ),
            (
                "Dune",
                "Frank Herbert",
                "Dune / Frank Herbert",
                None,
                &["Frank Herbert"],
                true,
            ),
            (
                "Sapiens",
                "Yuval Noah Harari",
                "Sapiens - A Brief History of Humankind",
                None,
                &["Yuval Noah Harari"],
                true,
            ),
            (
                "Sapiens",
                "Yuval Noah Harari",
                "Sapiens \u{2014} A Brief History",
                None,
                &["Yuval Noah Harari"],
                true,
            ),
            // Still not a sequel or another book by the same author.
            (
                "Java NIO",
                "Ron Hitchens",
                "Java NIO Advanced Cookbook \\c Ron Hitchens",
                None,
                &["Ron Hitchens"],
                false,
            ),
            (
                "Star Wars - Heir to the Empire",
                "Timothy Zahn",
                "Star Wars: Dark Force Rising",
                None,
                &["Timothy Zahn"],
                false,
            ),
        ];
        for (title, author, c_title, c_sub, c_authors, accept) in table {
            let input = BookInput::new(title, Some(author), None);
            let c = cand(c_title, *c_sub, c_authors);
            let s = score(&input, &c);
            assert_eq!(s >= MIN_SCORE, *accept, "{title} vs {c_title}: {s}");
        }
    }

    #[test]
    fn a_tie_goes_to_the_record_with_a_cover() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), None);
        let bare = cand("Dune", None, &["Frank Herbert"]);
        let mut covered = bare.clone();
        covered.cover_url = Some("https://covers.openlibrary.org/b/id/1-L.jpg".into());
        let mut covered_later = covered.clone();
        covered_later.source_id = Some("later".into());
        let table: &[(Vec<Candidate>, usize)] = &[
            (vec![bare.clone(), covered.clone()], 1),
            (vec![covered.clone(), bare.clone()], 0),
            (vec![covered.clone(), covered_later.clone()], 0),
            (vec![bare.clone(), bare.clone()], 0),
        ];
        for (candidates, want) in table {
            let got = best_match(&input, candidates)
                .map(|c| candidates.iter().position(|x| std::ptr::eq(x, c)).unwrap());
            assert_eq!(got, Some(*want), "{candidates:?}");
        }
        // A cover never outweighs a better score.
        let messiah = {
            let mut c = cand("Dune Messiah", None, &["Frank Herbert"]);
            c.cover_url = covered.cover_url.clone();
            c
        };
        assert_eq!(
            best_match(&input, &[messiah, bare.clone()]).map(|c| c.title.as_str()),
            Some("Dune")
        );
    }

    #[test]
    fn search_titles_drop_brackets() {
        let table = [
            (
                "The Way of Kings (The Stormlight Archive, #1)",
                "The Way of Kings",
            ),
            ("  Dune   Messiah ", "Dune Messiah"),
            ("(untitled)", "(untitled)"),
            ("Sapiens: A Brief History", "Sapiens: A Brief History"),
        ];
        for (raw, want) in table {
            assert_eq!(search_title(raw), want, "{raw}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            any::<String>(),
            proptest::option::of(any::<String>()),
            proptest::collection::vec(any::<String>(), 0..4),
            proptest::collection::vec("[0-9]{13}", 0..3),
        )
            .prop_map(|(title, subtitle, authors, isbns)| Candidate {
                title,
                subtitle,
                authors,
                isbns,
                ..Candidate::default()
            })
    }

    proptest! {
        #[test]
        fn score_is_within_bounds(
            title in any::<String>(),
            author in proptest::option::of(any::<String>()),
            isbn in proptest::option::of("[0-9Xx -]{0,17}"),
            c in candidate(),
        ) {
            let input = BookInput { title, author, isbn };
            let s = score(&input, &c);
            prop_assert!((0.0..=1.0).contains(&s), "{}", s);
        }

        #[test]
        fn score_is_within_bounds_on_wordy_titles(
            title in "[a-zA-Z:()&,' ]{0,300}",
            author in proptest::option::of("[a-zA-Z.,;& ]{0,100}"),
            c_title in "[a-zA-Z:()&,' ]{0,300}",
            c_author in "[a-zA-Z.,;& ]{0,100}",
        ) {
            let input = BookInput { title, author, isbn: None };
            let c = Candidate { title: c_title, authors: vec![c_author], ..Candidate::default() };
            let s = score(&input, &c);
            prop_assert!((0.0..=1.0).contains(&s), "{}", s);
        }

        #[test]
        fn a_record_matches_its_own_title_and_author(
            title in "[A-Za-z]{2,12}( [A-Za-z]{2,12}){0,5}",
            author in "[A-Z][a-z]{1,10} [A-Z][a-z]{1,12}",
        ) {
            let input = BookInput { title: title.clone(), author: Some(author.clone()), isbn: None };
            let c = Candidate { title, authors: vec![author], ..Candidate::default() };
            prop_assert!(score(&input, &c) >= MIN_SCORE);
        }
    }
}
