//! Per-client rate limits: which bucket a route counts in, whom a request is counted against
//! (an address; an IPv6 client by its /64 and by its /48), and the sliding windows.

use crate::routes::Route;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// Requests counted together (contract sections 6 and 9.6). Aliases share their route's
/// bucket, both scan routes share one, and so do job-state and results reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Scan,
    Enrichment,
    Csv,
    Refresh,
    Upgrade,
    Read,
}

/// Every limit is per minute.
pub const WINDOW_MS: Millis = 60_000;

/// How many times a bucket's limit the /48 of an IPv6 client gets, against its /64's one
/// (contract 9.6: "ten times as generously").
pub const NET48_FACTOR: usize = 10;

const BUCKETS: [Bucket; 6] = [
    Bucket::Scan,
    Bucket::Enrichment,
    Bucket::Csv,
    Bucket::Refresh,
    Bucket::Upgrade,
    Bucket::Read,
];

impl Bucket {
    pub fn for_route(route: &Route) -> Option<Bucket> {
        match route {
            Route::CreateScan | Route::CreateScanBatch => Some(Bucket::Scan),
            Route::CreateEnrichment => Some(Bucket::Enrichment),
            Route::CreateCsvImport => Some(Bucket::Csv),
            Route::TokenRefresh => Some(Bucket::Refresh),
            Route::ProgressSocket => Some(Bucket::Upgrade),
            Route::JobState { .. } | Route::Results { .. } => Some(Bucket::Read),
            Route::Health
            | Route::Console(_)
            | Route::CancelById { .. }
            | Route::CancelByBody
            | Route::CreateSyntheticJob => None,
        }
    }

    /// Requests per minute for one client (an address, or an IPv6 /64).
    pub fn limit(self) -> usize {
        match self {
            Bucket::Scan => 5,
            Bucket::Enrichment | Bucket::Csv | Bucket::Refresh => 10,
            Bucket::Upgrade => 60,
            Bucket::Read => 120,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Scan => "scan",
            Bucket::Enrichment => "enrichment",
            Bucket::Csv => "csv",
            Bucket::Refresh => "refresh",
            Bucket::Upgrade => "upgrade",
            Bucket::Read => "read",
        }
    }

    pub fn parse(text: &str) -> Option<Bucket> {
        BUCKETS.into_iter().find(|b| b.as_str() == text)
    }

    /// Whether the limiter writes this bucket's windows to storage, so that an eviction of
    /// the limiter does not forget them. The creation and refresh buckets are: they allow a
    /// few requests a minute, each worth protecting. Reads and upgrades are kept in memory
    /// only: they sit on the hot path, where a storage write per request would cost more
    /// than the request itself, and a limiter that is in use is not evicted, so what an
    /// eviction forgets is at most one window's allowance.
    pub fn stored(self) -> bool {
        match self {
            Bucket::Scan | Bucket::Enrichment | Bucket::Csv | Bucket::Refresh => true,
            Bucket::Upgrade | Bucket::Read => false,
        }
    }
}

/// One window a request is counted in: a client scope (an address, a /64, a /48) and how
/// many times the bucket's limit it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub name: String,
    pub factor: usize,
}

impl Scope {
    fn new(name: String, factor: usize) -> Self {
        Self { name, factor }
    }
}

/// Whom a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Names the limiter object that holds every window of this client: the IPv4 address,
    /// the /48 of an IPv6 address, or `unknown`. A /48 and all its /64s live in one object,
    /// so one round trip checks both, and a request is counted in both or in neither.
    pub object: String,
    /// The windows a request must fit in, narrowest first.
    pub scopes: Vec<Scope>,
}

/// Whom a request is counted against, from the client address Cloudflare's edge sets in
/// `CF-Connecting-IP`. An IPv6 client is counted by its /64, which one subscriber usually
/// holds whole, and by its /48, ten times as generously, since one holder of a /48 has
/// 65,536 /64s to rotate through. Requests without the header share one bucket.
pub fn client(connecting_ip: Option<&str>) -> Client {
    let single = |name: String| Client {
        object: name.clone(),
        scopes: vec![Scope::new(name, 1)],
    };
    let Some(ip) = connecting_ip.map(str::trim).filter(|ip| !ip.is_empty()) else {
        return single("unknown".to_string());
    };
    match ip.parse::<Ipv6Addr>() {
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => single(v4.to_string()),
            None => {
                let s = v6.segments();
                let net48 = format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]);
                let net64 = format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]);
                Client {
                    object: net48.clone(),
                    scopes: vec![Scope::new(net64, 1), Scope::new(net48, NET48_FACTOR)],
                }
            }
        },
        // IPv4, or anything else kept as given, bounded, so a strange header is still one
        // bucket.
        Err(_) => single(ip.chars().take(64).collect()),
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
        self.room(limit, now)?;
        self.accepted.push(now);
        Ok(())
    }

    /// Forgets what left the window, then says whether one more request fits (as
    /// [`Window::try_acquire`], without recording it).
    fn room(&mut self, limit: usize, now: Millis) -> Result<(), u64> {
        self.accepted.retain(|t| t + WINDOW_MS > now);
        if self.accepted.len() < limit {
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

/// A request over one of its windows: the longest wait among the windows that refused it,
/// and that window's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after_secs: u64,
    pub scope: String,
}

/// Every window one limiter object holds, by bucket and scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    windows: BTreeMap<String, Window>,
}

impl Ledger {
    /// The name of one window: `<bucket>|<scope>`.
    pub fn window_key(bucket: Bucket, scope: &str) -> String {
        format!("{}|{scope}", bucket.as_str())
    }

    /// The bucket a window name belongs to.
    pub fn bucket_of(key: &str) -> Option<Bucket> {
        key.split_once('|')
            .and_then(|(bucket, _)| Bucket::parse(bucket))
    }

    /// Counts one request in `bucket` against all its scopes at once. It is accepted only
    /// when every window has room, and then recorded in each; a request refused by any
    /// window is recorded in none, so a refusal by the /48 costs the /64 nothing and the
    /// other way round. Returns the keys of the windows that changed.
    pub fn try_acquire(
        &mut self,
        bucket: Bucket,
        scopes: &[Scope],
        now: Millis,
    ) -> Result<Vec<String>, Refusal> {
        let mut refusal: Option<Refusal> = None;
        for scope in scopes {
            let key = Self::window_key(bucket, &scope.name);
            let Some(window) = self.windows.get_mut(&key) else {
                continue; // an absent window is empty
            };
            if let Err(secs) = window.room(bucket.limit() * scope.factor, now) {
                if refusal.as_ref().is_none_or(|r| secs > r.retry_after_secs) {
                    refusal = Some(Refusal {
                        retry_after_secs: secs,
                        scope: scope.name.clone(),
                    });
                }
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let mut changed = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let key = Self::window_key(bucket, &scope.name);
            self.windows
                .entry(key.clone())
                .or_default()
                .accepted
                .push(now);
            changed.push(key);
        }
        Ok(changed)
    }

    pub fn window(&self, key: &str) -> Option<&Window> {
        self.windows.get(key)
    }

    /// Puts back a window read from storage.
    pub fn restore(&mut self, key: String, window: Window) {
        self.windows.insert(key, window);
    }

    /// Drops the windows of the buckets `which` selects that are empty at `now`, and returns
    /// their keys.
    pub fn prune(&mut self, now: Millis, which: impl Fn(Bucket) -> bool) -> Vec<String> {
        let gone: Vec<String> = self
            .windows
            .iter()
            .filter(|(k, _)| Self::bucket_of(k).is_some_and(&which))
            .filter(|(_, w)| w.empty_at().is_none_or(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            self.windows.remove(key);
        }
        gone
    }

    /// When every window of the buckets `which` selects will be empty, if any holds anything.
    pub fn empty_at(&self, which: impl Fn(Bucket) -> bool) -> Option<Millis> {
        self.windows
            .iter()
            .filter(|(k, _)| Self::bucket_of(k).is_some_and(&which))
            .filter_map(|(_, w)| w.empty_at())
            .max()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Pipeline;

    #[test]
    fn routes_map_to_their_buckets_and_limits() {
        let id = || "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e".to_string();
        let table = [
            (Route::CreateScan, Some((Bucket::Scan, 5))),
            (Route::CreateScanBatch, Some((Bucket::Scan, 5))),
            (Route::CreateEnrichment, Some((Bucket::Enrichment, 10))),
            (Route::CreateCsvImport, Some((Bucket::Csv, 10))),
            (Route::TokenRefresh, Some((Bucket::Refresh, 10))),
            (Route::ProgressSocket, Some((Bucket::Upgrade, 60))),
            (Route::JobState { job_id: id() }, Some((Bucket::Read, 120))),
            (
                Route::Results {
                    pipeline: Pipeline::CsvImport,
                    job_id: id(),
                },
                Some((Bucket::Read, 120)),
            ),
            (Route::Health, None),
            (Route::CancelById { job_id: id() }, None),
            (Route::CancelByBody, None),
            (Route::CreateSyntheticJob, None),
        ];
        for (route, want) in table {
            let bucket = Bucket::for_route(&route);
            assert_eq!(bucket.map(|b| (b, b.limit())), want, "{route:?}");
            if let Some(b) = bucket {
                assert_eq!(Bucket::parse(b.as_str()), Some(b));
            }
        }
        assert_eq!(Bucket::parse("nope"), None);
    }

    #[test]
    fn clients_and_their_scopes() {
        // (header, limiter object, [(scope, factor)])
        type Row = (
            Option<&'static str>,
            &'static str,
            &'static [(&'static str, usize)],
        );
        let table: &[Row] = &[
            (Some("203.0.113.7"), "203.0.113.7", &[("203.0.113.7", 1)]),
            (Some(" 203.0.113.7 "), "203.0.113.7", &[("203.0.113.7", 1)]),
            (
                Some("2001:db8:1:2:3:4:5:6"),
                "2001:db8:1::/48",
                &[("2001:db8:1:2::/64", 1), ("2001:db8:1::/48", 10)],
            ),
            (
                Some("2001:0db8:0001:0002::9"),
                "2001:db8:1::/48",
                &[("2001:db8:1:2::/64", 1), ("2001:db8:1::/48", 10)],
            ),
            // Another /64 of the same /48: the same object, its own /64 window.
            (
                Some("2001:db8:1:ffff::1"),
                "2001:db8:1::/48",
                &[("2001:db8:1:ffff::/64", 1), ("2001:db8:1::/48", 10)],
            ),
            (
                Some("2001:db8:2::1"),
                "2001:db8:2::/48",
                &[("2001:db8:2:0::/64", 1), ("2001:db8:2::/48", 10)],
            ),
            (
                Some("::ffff:198.51.100.1"),
                "198.51.100.1",
                &[("198.51.100.1", 1)],
            ),
            (
                Some("not an address"),
                "not an address",
                &[("not an address", 1)],
            ),
            (Some(""), "unknown", &[("unknown", 1)]),
            (None, "unknown", &[("unknown", 1)]),
        ];
        for (header, object, scopes) in table {
            let got = client(*header);
            assert_eq!(got.object, *object, "{header:?}");
            let got: Vec<(&str, usize)> = got
                .scopes
                .iter()
                .map(|s| (s.name.as_str(), s.factor))
                .collect();
            assert_eq!(got, *scopes, "{header:?}");
        }
        assert_eq!(client(Some(&"x".repeat(500))).object.len(), 64);
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

    fn v6(net64: u16) -> Vec<Scope> {
        client(Some(&format!("2001:db8:7:{net64:x}::1"))).scopes
    }

    /// How many of `n` requests from the /64 `net64` at `now` are accepted.
    fn accepted(ledger: &mut Ledger, bucket: Bucket, net64: u16, n: usize, now: Millis) -> usize {
        (0..n)
            .filter(|_| ledger.try_acquire(bucket, &v6(net64), now).is_ok())
            .count()
    }

    #[test]
    fn an_ipv6_client_is_counted_per_64_and_ten_times_as_generously_per_48() {
        let mut ledger = Ledger::default();
        let b = Bucket::Enrichment;
        // One /64: its own limit.
        assert_eq!(accepted(&mut ledger, b, 0, 15, 0), 10);
        // Nine more /64s of the /48 bring it to its 100; then it is full for every /64 of
        // it, new or not (the field report: twelve /64s, twelve jobs).
        for net in 1..=9 {
            assert_eq!(accepted(&mut ledger, b, net, 10, 1_000), 10, "/64 #{net}");
        }
        for net in 10..=18 {
            assert_eq!(accepted(&mut ledger, b, net, 1, 2_000), 0, "/64 #{net}");
        }
        let refusal = ledger.try_acquire(b, &v6(99), 2_000).unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                retry_after_secs: 58,
                scope: "2001:db8:7::/48".into()
            }
        );
        // Other buckets and other /48s are untouched.
        assert_eq!(accepted(&mut ledger, Bucket::Csv, 1, 1, 2_000), 1);
        let other = client(Some("2001:db8:8::1")).scopes;
        assert!(ledger.try_acquire(b, &other, 2_000).is_ok());
        // The /48 frees up as its oldest requests (the first /64's, at 0) leave the window.
        assert_eq!(accepted(&mut ledger, b, 10, 10, 60_000), 10);
    }

    #[test]
    fn a_request_refused_by_one_window_is_counted_in_none() {
        let b = Bucket::Scan; // 5 per /64, 50 per /48
        let mut ledger = Ledger::default();
        assert_eq!(accepted(&mut ledger, b, 0, 5, 0), 5);
        // Refused by the /64: the /48 is not charged for them.
        assert_eq!(accepted(&mut ledger, b, 0, 100, 1_000), 0);
        let net48 = Ledger::window_key(b, "2001:db8:7::/48");
        assert_eq!(ledger.window(&net48).unwrap().accepted.len(), 5);
        let refusal = ledger.try_acquire(b, &v6(0), 1_000).unwrap_err();
        assert_eq!(refusal.scope, "2001:db8:7:0::/64");
        assert_eq!(refusal.retry_after_secs, 59);
        // Fill the /48 from other /64s; a fresh /64 refused by the /48 keeps its allowance.
        for net in 1..=9 {
            assert_eq!(accepted(&mut ledger, b, net, 5, 2_000), 5);
        }
        assert_eq!(accepted(&mut ledger, b, 42, 3, 3_000), 0);
        let net64 = Ledger::window_key(b, "2001:db8:7:42::/64");
        assert_eq!(ledger.window(&net64), None, "nothing recorded for the /64");
        // Both windows full: the longer wait is the one reported, the /64's (its oldest
        // request is from 2 s, the /48's from 0 s).
        let refusal = ledger.try_acquire(b, &v6(1), 3_000).unwrap_err();
        assert_eq!(
            (refusal.retry_after_secs, refusal.scope.as_str()),
            (59, "2001:db8:7:1::/64")
        );
        let refusal = ledger.try_acquire(b, &v6(42), 3_000).unwrap_err();
        assert_eq!(
            (refusal.retry_after_secs, refusal.scope.as_str()),
            (57, "2001:db8:7::/48")
        );
    }

    #[test]
    fn only_creation_and_refresh_windows_are_stored() {
        let table = [
            (Bucket::Scan, true),
            (Bucket::Enrichment, true),
            (Bucket::Csv, true),
            (Bucket::Refresh, true),
            (Bucket::Upgrade, false),
            (Bucket::Read, false),
        ];
        for (bucket, stored) in table {
            assert_eq!(bucket.stored(), stored, "{bucket:?}");
            let key = Ledger::window_key(bucket, "2001:db8::/48");
            assert_eq!(Ledger::bucket_of(&key), Some(bucket));
        }
        assert_eq!(Ledger::bucket_of("nope|x"), None);
        assert_eq!(Ledger::bucket_of("read"), None);
    }

    #[test]
    fn pruning_forgets_only_empty_windows_of_the_buckets_asked() {
        let mut ledger = Ledger::default();
        let v4 = client(Some("192.0.2.1")).scopes;
        let any = |_: Bucket| true;
        ledger.try_acquire(Bucket::Read, &v4, 0).unwrap();
        ledger.try_acquire(Bucket::Csv, &v4, 10_000).unwrap();
        ledger.try_acquire(Bucket::Upgrade, &v4, 30_000).unwrap();
        assert_eq!(ledger.empty_at(any), Some(90_000));
        assert_eq!(ledger.empty_at(Bucket::stored), Some(70_000));
        assert_eq!(ledger.prune(59_999, any), Vec::<String>::new());
        assert_eq!(
            ledger.prune(60_000, any),
            vec!["read|192.0.2.1".to_string()]
        );
        assert_eq!(ledger.prune(80_000, |b| !b.stored()), Vec::<String>::new());
        assert_eq!(
            ledger.prune(80_000, Bucket::stored),
            vec!["csv|192.0.2.1".to_string()]
        );
        assert_eq!(ledger.empty_at(Bucket::stored), None);
        assert!(!ledger.is_empty());
        assert_eq!(
            ledger.prune(90_000, any),
            vec!["upgrade|192.0.2.1".to_string()]
        );
        assert!(ledger.is_empty());
        assert_eq!(ledger.empty_at(any), None);
    }
}
