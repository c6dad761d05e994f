//! Failed attempts per address: a few are free, then each costs a
//! growing wait, and a burst bans the address for a while.
//!
//! Failures are counted per IPv4 address, and per /64 for IPv6 (one
//! machine usually holds a whole /64, and picking a new address in it is
//! free). The count is a leaky bucket: one failure is forgotten every
//! [`FORGET_ONE_EVERY`], so a person who mistypes now and then never
//! notices, while a guesser is slowed to about one try a minute and
//! banned if it pushes harder.
//!
//! The [`Authenticator`](super::Authenticator) consults the guard on each
//! attempt; the accept loop should call [`Guard::check`] to refuse a
//! banned address before doing any work for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::AuthError;
use crate::throttle::address_key;

/// Failures an address may make before its attempts are slowed: enough
/// for a person to mistype a password, or to try an old one, twice.
pub const FREE_FAILURES: u32 = 3;

/// How often one failure of an address is forgotten. Slower than a
/// person retries, so bursts add up; fast enough that an occasional
/// typo is forgotten within minutes.
pub const FORGET_ONE_EVERY: Duration = Duration::from_secs(60);

/// The wait after the first failure past [`FREE_FAILURES`]; it doubles
/// with each further failure (1 s, 2 s, 4 s, ...).
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// The longest wait between attempts: long enough to make guessing
/// pointless, short enough for a person who got it wrong a few times.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Failures (not yet forgotten) that get an address banned: three past
/// the free ones need over a minute of waits, so reaching this takes a
/// program hammering, not a person.
pub const BAN_AFTER: u32 = 10;

/// How long a banned address is refused: long enough that an attacker's
/// budget of guesses drops to about ten per ten minutes.
pub const BAN_FOR: Duration = Duration::from_secs(10 * 60);

/// Most addresses tracked at once, so that failures from very many
/// addresses (an IPv6 scan, a botnet) cannot grow memory without bound;
/// at about 64 bytes each, 4 MiB. Past it, addresses with nothing left
/// to remember are dropped, then the least recently seen.
pub const MAX_TRACKED: usize = 65_536;

/// The limits of a [`Guard`]; [`GuardPolicy::default`] has the constants
/// of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    /// See [`FREE_FAILURES`].
    pub free_failures: u32,
    /// See [`FORGET_ONE_EVERY`].
    pub forget_one_every: Duration,
    /// See [`BACKOFF_BASE`].
    pub backoff_base: Duration,
    /// See [`MAX_BACKOFF`].
    pub max_backoff: Duration,
    /// See [`BAN_AFTER`].
    pub ban_after: u32,
    /// See [`BAN_FOR`].
    pub ban_for: Duration,
    /// See [`MAX_TRACKED`].
    pub max_tracked: usize,
}

impl GuardPolicy {
    /// `attempts` failures a minute and no more, and no ban: the admin
    /// login's limit (`--admin-login-attempts`). The first `attempts`
    /// failures in a row are answered at once; the last of them makes the
    /// address wait a share of the minute (a failure is forgotten every
    /// minute / `attempts`), and each further one twice as long, up to a
    /// minute.
    pub fn per_minute(attempts: u32) -> Self {
        let attempts = attempts.max(1);
        let share = Duration::from_secs(60) / attempts;
        GuardPolicy {
            free_failures: attempts - 1,
            forget_one_every: share,
            backoff_base: share,
            max_backoff: Duration::from_secs(60),
            ban_after: u32::MAX,
            ban_for: Duration::ZERO,
            max_tracked: 10_000,
        }
    }
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            free_failures: FREE_FAILURES,
            forget_one_every: FORGET_ONE_EVERY,
            backoff_base: BACKOFF_BASE,
            max_backoff: MAX_BACKOFF,
            ban_after: BAN_AFTER,
            ban_for: BAN_FOR,
            max_tracked: MAX_TRACKED,
        }
    }
}

/// What is remembered of one address.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Failures not yet forgotten.
    failures: u32,
    /// Up to when forgetting has been counted.
    forgotten_to: Instant,
    /// No attempt before this (the back-off).
    not_before: Instant,
    /// Refused until this, if banned.
    banned_until: Option<Instant>,
    /// The last failure, for evicting the oldest.
    last_failure: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            failures: 0,
            forgotten_to: now,
            not_before: now,
            banned_until: None,
            last_failure: now,
        }
    }

    /// Forgets the failures whose time has come.
    fn forget(&mut self, now: Instant, every: Duration) {
        if self.failures == 0 {
            self.forgotten_to = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.forgotten_to);
        let periods =
            (elapsed.as_nanos() / every.as_nanos().max(1)).min(u128::from(u32::MAX)) as u32;
        self.failures = self.failures.saturating_sub(periods);
        self.forgotten_to = if self.failures == 0 {
            now
        } else {
            self.forgotten_to + every * periods
        };
    }

    /// Whether the record still holds anything worth keeping at `now`.
    fn matters(&self, now: Instant) -> bool {
        self.failures > 0 || self.not_before > now || self.banned_until.is_some_and(|t| t > now)
    }
}

/// Counts failed attempts per address and says when an address must
/// wait or is refused. One per server, shared by every listener and kept
/// across reloads of the credentials. Cheap to call: a lock and a hash
/// lookup.
#[derive(Debug)]
pub struct Guard {
    policy: GuardPolicy,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(GuardPolicy::default())
    }
}

impl Guard {
    /// A guard with these limits.
    pub fn new(policy: GuardPolicy) -> Self {
        Guard {
            policy,
            records: Mutex::default(),
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<IpAddr, Record>> {
        crate::sync::lock(&self.records)
    }

    /// For the accept loop: `Err(Banned)` if `ip` is banned, so the
    /// connection can be told why and closed before any other work.
    pub fn check(&self, ip: IpAddr) -> Result<(), AuthError> {
        let now = Instant::now();
        match self
            .records()
            .get(&address_key(ip))
            .and_then(|r| r.banned_until)
        {
            Some(until) if until > now => Err(AuthError::Banned {
                retry_in: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Before an attempt: `Err(Banned)` if `ip` is banned, `Err(Throttled)`
    /// if its back-off is not over (the attempt is then not tried at all,
    /// so parallel connections gain nothing).
    pub fn ready(&self, ip: IpAddr) -> Result<(), AuthError> {
        self.check(ip)?;
        let now = Instant::now();
        match self.records().get(&address_key(ip)) {
            Some(record) if record.not_before > now => Err(AuthError::Throttled {
                retry_in: record.not_before - now,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt from `ip`, and returns how long the
    /// connection should wait before answering it (zero for the first
    /// [`FREE_FAILURES`]); until then, other attempts from the address
    /// are [`AuthError::Throttled`]. Bans the address, and logs it,
    /// when the failures reach [`BAN_AFTER`].
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let policy = &self.policy;
        let now = Instant::now();
        let key = address_key(ip);
        let mut records = self.records();
        if !records.contains_key(&key) && records.len() >= policy.max_tracked {
            make_room(&mut records, now, policy);
        }
        let record = records.entry(key).or_insert_with(|| Record::new(now));
        record.forget(now, policy.forget_one_every);
        if record.banned_until.is_some_and(|until| until <= now) {
            record.banned_until = None;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures >= policy.ban_after {
            let failures = record.failures;
            record.banned_until = Some(now + policy.ban_for);
            // The ban is the penalty: the count starts over after it.
            record.failures = 0;
            record.not_before = now;
            if key == ip {
                warn!(%ip, failures, ban_secs = policy.ban_for.as_secs(), "too many failed logins: address banned");
            } else {
                warn!(%ip, prefix = %key, failures, ban_secs = policy.ban_for.as_secs(), "too many failed logins: IPv6 /64 banned");
            }
            return Duration::ZERO;
        }
        let wait = backoff(policy, record.failures);
        record.not_before = now + wait;
        wait
    }

    /// How many addresses are remembered now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.records().len()
    }
}

/// The wait after `failures` failures.
fn backoff(policy: &GuardPolicy, failures: u32) -> Duration {
    if failures <= policy.free_failures {
        return Duration::ZERO;
    }
    let doublings = (failures - policy.free_failures - 1).min(31);
    policy
        .backoff_base
        .saturating_mul(1 << doublings)
        .min(policy.max_backoff)
}

/// Makes room for one more record: drops those with nothing left to
/// remember, then, if that freed too little, the sixteenth least recently
/// seen (so the next few thousand new addresses do not each pay a scan).
fn make_room(records: &mut HashMap<IpAddr, Record>, now: Instant, policy: &GuardPolicy) {
    let max = policy.max_tracked;
    records.retain(|_, record| {
        record.forget(now, policy.forget_one_every);
        record.matters(now)
    });
    if records.len() < max {
        return;
    }
    let evict = (max / 16).max(1);
    let mut ages: Vec<(Instant, IpAddr)> = records
        .iter()
        .map(|(ip, record)| (record.last_failure, *ip))
        .collect();
    ages.select_nth_unstable(evict - 1);
    for (_, ip) in &ages[..evict] {
        records.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_failures_are_free_then_each_waits_twice_as_long() {
        let guard = Guard::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.failed(IP), Duration::ZERO);
            assert_eq!(guard.ready(IP), Ok(()));
        }
        assert_eq!(guard.failed(IP), secs(1));
        assert_eq!(
            guard.ready(IP),
            Err(AuthError::Throttled { retry_in: secs(1) })
        );
        advance(secs(1)).await;
        assert_eq!(guard.ready(IP), Ok(()));
        assert_eq!(guard.failed(IP), secs(2));
        advance(secs(2)).await;
        assert_eq!(guard.failed(IP), secs(4));
        advance(secs(4)).await;
        assert_eq!(guard.failed(IP), secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_per_minute_answers_that_many_then_waits_and_never_bans() {
        let guard = Guard::new(GuardPolicy::per_minute(3));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(guard.ready(ip), Ok(()));
            assert_eq!(guard.failed(ip), Duration::ZERO);
        }
        assert_eq!(guard.ready(ip), Ok(()));
        // The third is answered, and the address waits a third of a minute.
        assert_eq!(guard.failed(ip), Duration::from_secs(20));
        assert!(matches!(guard.ready(ip), Err(AuthError::Throttled { .. })));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(guard.ready(ip), Ok(()));
        // A guesser that tries again as soon as it may gets three tries a
        // minute, waits a minute at most, and is never banned.
        let started = Instant::now();
        let mut tries = 0;
        while started.elapsed() < Duration::from_secs(600) {
            match guard.ready(ip) {
                Ok(()) => {
                    tries += 1;
                    let wait = guard.failed(ip);
                    assert!(wait <= Duration::from_secs(60), "{wait:?}");
                }
                Err(AuthError::Throttled { retry_in }) => tokio::time::advance(retry_in).await,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!((29..=31).contains(&tries), "{tries} tries in 10 minutes");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_capped() {
        let policy = GuardPolicy {
            ban_after: 100,
            ..GuardPolicy::default()
        };
        let guard = Guard::new(policy);
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = guard.failed(IP);
        }
        assert_eq!(last, MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_failures_bans_the_address_for_a_while() {
        let guard = Guard::default();
        for _ in 0..BAN_AFTER - 1 {
            guard.failed(IP);
        }
        assert_eq!(guard.check(IP), Ok(()), "not banned yet, only slowed");
        assert_eq!(guard.failed(IP), Duration::ZERO);
        assert_eq!(
            guard.check(IP),
            Err(AuthError::Banned { retry_in: BAN_FOR })
        );
        assert_eq!(
            guard.ready(IP),
            Err(AuthError::Banned { retry_in: BAN_FOR })
        );
        assert_eq!(
            guard.check(OTHER),
            Ok(()),
            "other addresses are not touched"
        );
        advance(BAN_FOR - secs(1)).await;
        assert_eq!(
            guard.check(IP),
            Err(AuthError::Banned { retry_in: secs(1) })
        );
        advance(secs(1)).await;
        assert_eq!(guard.check(IP), Ok(()));
        assert_eq!(guard.ready(IP), Ok(()));
        assert_eq!(guard.failed(IP), Duration::ZERO, "the count started over");
    }

    #[test]
    fn a_ban_lasts_ten_minutes() {
        assert_eq!(BAN_FOR, secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn failing_again_while_banned_keeps_the_ban() {
        let guard = Guard::default();
        for _ in 0..BAN_AFTER {
            guard.failed(IP);
        }
        advance(secs(60)).await;
        guard.failed(IP);
        assert_eq!(
            guard.check(IP),
            Err(AuthError::Banned {
                retry_in: BAN_FOR - secs(60)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_guard_keeps_counting_an_address_it_tracks() {
        let guard = Guard::new(GuardPolicy {
            max_tracked: 4,
            ..GuardPolicy::default()
        });
        // IP is the oldest of four, one failure from a ban.
        for _ in 0..BAN_AFTER - 1 {
            guard.failed(IP);
        }
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..3 {
            advance(Duration::from_millis(1)).await;
            guard.failed(ip(i));
        }
        assert_eq!(guard.tracked(), 4);
        guard.failed(IP);
        assert!(
            guard.check(IP).is_err(),
            "its count was kept, and banned it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_guard_forgets_the_sixteenth_least_recently_seen() {
        let guard = Guard::new(GuardPolicy {
            max_tracked: 32,
            ..GuardPolicy::default()
        });
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..32 {
            advance(Duration::from_millis(1)).await;
            guard.failed(ip(i));
        }
        advance(Duration::from_millis(1)).await;
        guard.failed(ip(100));
        // Two (32 / 16) went, the two oldest, and the new one came in.
        assert_eq!(guard.tracked(), 31);
        let records = guard.records();
        assert!(!records.contains_key(&ip(0)) && !records.contains_key(&ip(1)));
        assert!(records.contains_key(&ip(2)) && records.contains_key(&ip(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_matters_until_its_wait_or_ban_is_over_and_not_at_that_instant() {
        let now = Instant::now();
        let mut record = Record::new(now);
        record.not_before = now + secs(1);
        assert!(record.matters(now));
        assert!(!record.matters(now + secs(1)));
        let mut record = Record::new(now);
        record.banned_until = Some(now + secs(1));
        assert!(record.matters(now));
        assert!(!record.matters(now + secs(1)));
        assert!(!Record::new(now).matters(now));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_forgotten_one_a_minute() {
        let guard = Guard::default();
        for _ in 0..FREE_FAILURES + 1 {
            guard.failed(IP);
        }
        advance(FORGET_ONE_EVERY * 2).await;
        // Two forgotten: this is the third not yet forgotten, still free.
        assert_eq!(guard.failed(IP), Duration::ZERO);
        assert_eq!(guard.failed(IP), secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_person_who_mistypes_now_and_then_is_never_slowed() {
        let guard = Guard::default();
        for _ in 0..100 {
            assert_eq!(guard.failed(IP), Duration::ZERO);
            advance(FORGET_ONE_EVERY).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_guesser_that_waits_out_each_backoff_is_still_banned() {
        let guard = Guard::default();
        let mut attempts = 0;
        while guard.check(IP).is_ok() {
            let wait = guard.failed(IP);
            advance(wait).await;
            attempts += 1;
            assert!(attempts < 20, "never banned");
        }
        assert_eq!(attempts, BAN_AFTER + 1, "one failure forgotten on the way");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_network_counts_as_one_address() {
        let guard = Guard::default();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for i in 0..BAN_AFTER {
            guard.failed(if i % 2 == 0 { a } else { b });
        }
        assert!(guard.check(a).is_err());
        assert!(guard.check(b).is_err());
        assert_eq!(guard.check(elsewhere), Ok(()));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        for _ in 0..BAN_AFTER {
            guard.failed(mapped);
        }
        assert!(
            guard.check(IP).is_err(),
            "an IPv4-mapped address is the IPv4 one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_by_forgetting_the_oldest_addresses() {
        let guard = Guard::new(GuardPolicy {
            max_tracked: 32,
            ..GuardPolicy::default()
        });
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for _ in 0..BAN_AFTER {
            guard.failed(ip(0));
        }
        for i in 1..1_000 {
            advance(Duration::from_millis(1)).await;
            guard.failed(ip(i));
            assert!(guard.tracked() <= 32);
        }
        assert_eq!(guard.check(ip(0)), Ok(()), "the oldest was forgotten");
        assert!(guard.tracked() > 16);
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_with_nothing_to_remember_make_room_first() {
        let guard = Guard::new(GuardPolicy {
            max_tracked: 4,
            ..GuardPolicy::default()
        });
        for _ in 0..BAN_AFTER {
            guard.failed(IP);
        }
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..3 {
            guard.failed(ip(i));
        }
        advance(FORGET_ONE_EVERY).await;
        guard.failed(ip(100));
        assert!(guard.check(IP).is_err(), "the banned address was kept");
        assert_eq!(guard.tracked(), 2);
    }
}
