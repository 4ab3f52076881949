//! Per-client rate limits on job creation and token refresh: which bucket, and a sliding window.

use crate::routes::Route;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// Requests counted together (contract section 6). Aliases share their route's bucket, and
/// both scan routes share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Scan,
    Enrichment,
    Csv,
    Refresh,
}

/// Every limit is per minute.
pub const WINDOW_MS: Millis = 60_000;

impl Bucket {
    pub fn for_route(route: &Route) -> Option<Bucket> {
        match route {
            Route::CreateScan | Route::CreateScanBatch => Some(Bucket::Scan),
            Route::CreateEnrichment => Some(Bucket::Enrichment),
            Route::CreateCsvImport => Some(Bucket::Csv),
            Route::TokenRefresh => Some(Bucket::Refresh),
            _ => None,
        }
    }

    pub fn limit(self) -> usize {
        match self {
            Bucket::Scan => 5,
            Bucket::Enrichment | Bucket::Csv | Bucket::Refresh => 10,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Scan => "scan",
            Bucket::Enrichment => "enrichment",
            Bucket::Csv => "csv",
            Bucket::Refresh => "refresh",
        }
    }

    pub fn parse(text: &str) -> Option<Bucket> {
        [
            Bucket::Scan,
            Bucket::Enrichment,
            Bucket::Csv,
            Bucket::Refresh,
        ]
        .into_iter()
        .find(|b| b.as_str() == text)
    }
}

/// Who a request is counted against: the client address Cloudflare's edge sets in
/// `CF-Connecting-IP`. An IPv6 client is counted by its /64, which one subscriber usually
/// holds whole, so rotating addresses within it gains nothing. Requests without the header
/// share one bucket.
pub fn client_key(connecting_ip: Option<&str>) -> String {
    let Some(ip) = connecting_ip.map(str::trim).filter(|ip| !ip.is_empty()) else {
        return "unknown".to_string();
    };
    match ip.parse::<Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        // Anything else is kept as given, bounded, so a strange header is still one bucket.
        Err(_) => ip.chars().take(64).collect(),
    }
}

/// A sliding-window log of the requests accepted in the last minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    accepted: Vec<Millis>,
}

impl Window {
    /// Accepts a request if fewer than `limit` were accepted in the window before `now`;
    /// otherwise says in how many whole seconds (at least 1) the oldest one leaves it. A
    /// refused request is not recorded, so refusals never extend the wait.
    pub fn try_acquire(&mut self, limit: usize, now: Millis) -> Result<(), u64> {
        self.accepted.retain(|t| t + WINDOW_MS > now);
        if self.accepted.len() < limit {
            self.accepted.push(now);
            return Ok(());
        }
        let oldest = self.accepted.iter().min().copied().unwrap_or(now);
        Err((oldest + WINDOW_MS)
            .saturating_sub(now)
            .div_ceil(1_000)
            .max(1))
    }

    /// When the window will be empty again, if anything is in it.
    pub fn empty_at(&self) -> Option<Millis> {
        self.accepted.iter().max().map(|t| t + WINDOW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_buckets_and_limits() {
        let table = [
            (Route::CreateScan, Some(Bucket::Scan), 5),
            (Route::CreateScanBatch, Some(Bucket::Scan), 5),
            (Route::CreateEnrichment, Some(Bucket::Enrichment), 10),
            (Route::CreateCsvImport, Some(Bucket::Csv), 10),
            (Route::TokenRefresh, Some(Bucket::Refresh), 10),
        ];
        for (route, bucket, limit) in table {
            assert_eq!(Bucket::for_route(&route), bucket);
            assert_eq!(bucket.unwrap().limit(), limit);
            assert_eq!(Bucket::parse(bucket.unwrap().as_str()), bucket);
        }
        assert_eq!(Bucket::for_route(&Route::Health), None);
        assert_eq!(Bucket::for_route(&Route::ProgressSocket), None);
    }

    #[test]
    fn client_keys() {
        let table: &[(Option<&str>, &str)] = &[
            (Some("203.0.113.7"), "203.0.113.7"),
            (Some(" 203.0.113.7 "), "203.0.113.7"),
            (Some("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"),
            (Some("2001:0db8:0001:0002::9"), "2001:db8:1:2::/64"),
            (Some("::ffff:198.51.100.1"), "198.51.100.1"),
            (Some(""), "unknown"),
            (None, "unknown"),
        ];
        for (header, key) in table {
            assert_eq!(client_key(*header), *key, "{header:?}");
        }
        assert_eq!(client_key(Some(&"x".repeat(500))).len(), 64);
    }

    #[test]
    fn the_window_slides_and_reports_whole_seconds() {
        let mut w = Window::default();
        for i in 0..5 {
            assert_eq!(w.try_acquire(5, 1_000 + i * 100), Ok(()));
        }
        // Full: the oldest (t=1000) leaves at 61000.
        assert_eq!(w.try_acquire(5, 2_000), Err(59));
        assert_eq!(w.try_acquire(5, 60_500), Err(1), "never 0");
        assert_eq!(w.try_acquire(5, 61_000), Ok(()), "the oldest has left");
        assert_eq!(w.try_acquire(5, 61_001), Err(1));
        assert_eq!(w.empty_at(), Some(121_000));
    }

    #[test]
    fn refusals_do_not_extend_the_wait() {
        let mut w = Window::default();
        assert_eq!(w.try_acquire(1, 0), Ok(()));
        for now in (1_000..59_000).step_by(1_000) {
            assert!(w.try_acquire(1, now).is_err());
        }
        assert_eq!(w.try_acquire(1, 60_000), Ok(()));
    }
}
