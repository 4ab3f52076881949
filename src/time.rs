//! Wall-clock helpers over plain milliseconds, so domain code never asks the runtime for the time.

/// Milliseconds since the Unix epoch, as every domain function receives "now".
pub type Millis = u64;

pub const SECOND_MS: Millis = 1_000;

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision, e.g.
/// `2026-11-22T08:15:30.042Z`.
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms / 1_000;
    let millis = ms % 1_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// algorithm, chosen because it is exact for every date and needs no tables.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 for a civil date; the inverse of `civil_from_days`, used to
/// validate parsed dates by round-tripping them.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// True when `year-month-day` names a real calendar day.
pub fn is_valid_date(year: i64, month: u32, day: u32) -> bool {
    if !(1..=12).contains(&month) || day == 0 || day > 31 {
        return false;
    }
    civil_from_days(days_from_civil(year, month, day)) == (year, month, day)
}

/// The longest `Retry-After` honoured: a provider asking for more is treated as asking for
/// this, so one answer cannot park a job for days.
pub const MAX_RETRY_AFTER_MS: Millis = 10 * 60 * SECOND_MS;

/// The wait an HTTP `Retry-After` value asks for (RFC 9110 §10.2.3): delay-seconds, or an
/// IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT` measured from `now`. Capped at
/// [`MAX_RETRY_AFTER_MS`]; `None` when the value is neither.
pub fn retry_after_ms(value: &str, now: Millis) -> Option<Millis> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        secs.saturating_mul(SECOND_MS)
    } else {
        http_date_ms(value)?.saturating_sub(now)
    };
    Some(wait.min(MAX_RETRY_AFTER_MS))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to epoch milliseconds.
fn http_date_ms(value: &str) -> Option<Millis> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, clock, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let (day, year): (u32, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = clock
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !is_valid_date(year, month, day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(((days * 86_400) + h * 3_600 + m * 60 + sec) * SECOND_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let cases: &[(Millis, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (1_795_306_530_042, "2026-11-22T00:15:30.042Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339(*ms), *want, "{ms}");
        }
    }

    #[test]
    fn validates_calendar_days() {
        let cases: &[(i64, u32, u32, bool)] = &[
            (2024, 2, 29, true),
            (2023, 2, 29, false),
            (1900, 2, 29, false),
            (2000, 2, 29, true),
            (2023, 4, 31, false),
            (2023, 12, 31, true),
            (2023, 13, 1, false),
            (2023, 0, 1, false),
            (2023, 1, 0, false),
        ];
        for (y, m, d, ok) in cases {
            assert_eq!(is_valid_date(*y, *m, *d), *ok, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn retry_after_values() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        let table: &[(&str, Option<Millis>)] = &[
            ("120", Some(120_000)),
            (" 0 ", Some(0)),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(10_000)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("99999999", Some(MAX_RETRY_AFTER_MS)),
            ("Sun, 06 Nov 1995 08:49:37 GMT", Some(MAX_RETRY_AFTER_MS)),
            ("-5", None),
            ("soon", None),
            ("Sun, 31 Feb 1994 08:49:37 GMT", None),
            ("Sunday, 06-Nov-94 08:49:37 GMT", None),
            ("", None),
        ];
        for (value, want) in table {
            assert_eq!(retry_after_ms(value, now), *want, "{value:?}");
        }
    }

    #[test]
    fn day_numbers_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
