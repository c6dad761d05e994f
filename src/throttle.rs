//! Rate limits: how fast one client may send (messages and bytes per
//! second), and how often one address may open connections.
//!
//! Each limit is a token bucket in its GCRA form: one instant per bucket,
//! the time by which everything let through so far is paid for at the
//! allowed rate. A bucket holds one second's worth ([`BURST`]): a client
//! that was quiet may send that much at once, then no faster than the
//! rate. Being over a limit slows a client down (the server stops reading
//! from it, so TCP holds its sender back); only a client that stays over
//! its limit for the grace period, where one is set, is disconnected.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::moment::Moment;

/// How much a bucket holds: one second's worth of its rate.
pub const BURST: Duration = Duration::from_secs(1);

/// How much a slowed client may send before it is paused again: a tenth of
/// a second's worth, so that a client held at its limit costs ten wake-ups
/// a second, not one per message.
const RESUME: Duration = Duration::from_millis(100);

/// Pauses closer together than this make one spell of being over the
/// limit, for the grace period.
const SPELL_GAP: Duration = BURST;

/// A rate: so many units (messages, bytes, connections) per second, with a
/// burst of one second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(NonZeroU32);

impl Rate {
    /// `per_second` units a second; `None` for 0 (no limit).
    pub fn per_second(per_second: u32) -> Option<Rate> {
        NonZeroU32::new(per_second).map(Rate)
    }

    /// Units allowed a second.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The time `units` take at this rate.
    fn cost(self, units: u64) -> Duration {
        let nanos = u128::from(units) * 1_000_000_000 / u128::from(self.get());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The units that take `time` at this rate.
    fn units(self, time: Duration) -> u64 {
        let units = time.as_nanos() * u128::from(self.get()) / 1_000_000_000;
        u64::try_from(units).unwrap_or(u64::MAX)
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    /// Everything let through is paid for by then; at or before now, the
    /// bucket is full.
    paid_until: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(now: Instant) -> Bucket {
        Bucket { paid_until: now }
    }

    /// The units that may go at `now`.
    pub(crate) fn allowance(&self, rate: Rate, now: Instant) -> u64 {
        let owed = self.paid_until.saturating_duration_since(now);
        rate.units(BURST.saturating_sub(owed))
    }

    /// Takes `units` at `now`, whether or not they were allowed: what is
    /// over the allowance is owed, and waited for by [`Bucket::resumes_at`].
    pub(crate) fn take(&mut self, rate: Rate, units: u64, now: Instant) {
        self.paid_until = self.paid_until.max(now) + rate.cost(units);
    }

    /// When a paused sender may go on: once it may send [`RESUME`]'s worth
    /// (at least one unit).
    pub(crate) fn resumes_at(&self, rate: Rate) -> Instant {
        let resume = RESUME.max(rate.cost(1));
        self.paid_until - BURST.saturating_sub(resume)
    }
}

/// A client's rate limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ClientRates {
    /// Messages (any request, or line, frame or read of raw bytes) a second.
    pub(crate) messages: Option<Rate>,
    /// Bytes read a second.
    pub(crate) bytes: Option<Rate>,
    /// How long a client may stay over a limit before it is disconnected;
    /// zero: never, it is only paced.
    pub(crate) grace: Duration,
}

/// Which of a client's limits holds it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--max-messages-per-second`.
    Messages(Rate),
    /// `--max-bytes-per-second`.
    Bytes(Rate),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Messages(rate) => write!(
                f,
                "{} messages a second (max messages per second)",
                rate.get()
            ),
            Limit::Bytes(rate) => write!(f, "{} bytes a second (max bytes per second)", rate.get()),
        }
    }
}

/// A client's buckets, and how long it has been held back. Held inline as
/// two 8-byte stamps (a `Box` of full-width instants was 64 bytes on the
/// heap for every client that ever sent anything, with the rate limits on
/// by default); the spell is boxed, as few clients are ever held back.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    messages: Stamp,
    bytes: Stamp,
    /// When the current spell of pauses began, and when the last pause
    /// ended.
    spell: Option<Box<(Instant, Instant)>>,
}

/// When a bucket is paid until; `None`: full (as a bucket never taken
/// from is).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<Moment>);

impl Stamp {
    /// The bucket this stamp is, at `now`.
    fn bucket(self, now: Instant) -> Bucket {
        match self.0 {
            None => Bucket::full(now),
            Some(paid_until) => Bucket {
                paid_until: paid_until.instant(),
            },
        }
    }

    /// `bucket`'s stamp.
    fn of(bucket: Bucket) -> Stamp {
        Stamp(Some(Moment::of(bucket.paid_until)))
    }
}

/// What a throttled client is to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wait until then; `first` if this begins a spell (the client is
    /// told, once).
    Pause {
        until: Instant,
        limit: Limit,
        first: bool,
    },
    /// It has been over `limit` for the whole grace period: disconnect it.
    CutOff(Limit),
}

impl Throttle {
    /// How many messages may be handled now (`None`: no message limit).
    pub(crate) fn messages_allowed(&self, rates: &ClientRates, now: Instant) -> Option<u64> {
        let rate = rates.messages?;
        Some(self.messages.bucket(now).allowance(rate, now))
    }

    /// How many bytes may be read now (`None`: no byte limit).
    pub(crate) fn bytes_allowed(&self, rates: &ClientRates, now: Instant) -> Option<u64> {
        let rate = rates.bytes?;
        Some(self.bytes.bucket(now).allowance(rate, now))
    }

    /// Counts `count` messages handled.
    pub(crate) fn took_messages(&mut self, rates: &ClientRates, count: usize, now: Instant) {
        if let Some(rate) = rates.messages {
            let mut bucket = self.messages.bucket(now);
            bucket.take(rate, count as u64, now);
            self.messages = Stamp::of(bucket);
        }
    }

    /// Counts `count` bytes read.
    pub(crate) fn took_bytes(&mut self, rates: &ClientRates, count: usize, now: Instant) {
        if let Some(rate) = rates.bytes {
            let mut bucket = self.bytes.bucket(now);
            bucket.take(rate, count as u64, now);
            self.bytes = Stamp::of(bucket);
        }
    }

    /// Notes the current spell: in the box of an earlier one if there was
    /// one (a client held at its limit is paused ten times a second).
    fn spell_is(&mut self, spell: (Instant, Instant)) {
        match &mut self.spell {
            Some(held) => **held = spell,
            None => self.spell = Some(Box::new(spell)),
        }
    }

    /// The client must wait before its next message (`bytes: false`) or
    /// read (`bytes: true`): for how long, or whether it is cut off.
    pub(crate) fn hold(&mut self, rates: &ClientRates, bytes: bool, now: Instant) -> Verdict {
        let (limit, stamp) = match (bytes, rates.bytes, rates.messages) {
            (true, Some(rate), _) => (Limit::Bytes(rate), self.bytes),
            (false, _, Some(rate)) => (Limit::Messages(rate), self.messages),
            _ => unreachable!("held back by a limit it does not have"),
        };
        let rate = match limit {
            Limit::Messages(rate) | Limit::Bytes(rate) => rate,
        };
        let until = stamp.bucket(now).resumes_at(rate);
        let (began, first) = match self.spell.as_deref() {
            Some(&(began, last)) if now.saturating_duration_since(last) <= SPELL_GAP => {
                (began, false)
            }
            _ => (now, true),
        };
        let cut_off_at = began + rates.grace;
        if !rates.grace.is_zero() && until > cut_off_at {
            // Waiting it out would take past the grace period.
            if now >= cut_off_at {
                return Verdict::CutOff(limit);
            }
            self.spell_is((began, cut_off_at));
            return Verdict::Pause {
                until: cut_off_at,
                limit,
                first,
            };
        }
        self.spell_is((began, until));
        Verdict::Pause {
            until,
            limit,
            first,
        }
    }
}

/// New connections per address: a bucket for each address that connected
/// within the last second or so.
#[derive(Debug)]
pub(crate) struct ConnectionRates {
    rate: Rate,
    /// Each address's bucket, and whether it has been refused since its
    /// bucket was last full.
    buckets: Mutex<HashMap<IpAddr, (Bucket, bool)>>,
}

/// A connection refused for its address's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooFast {
    /// How long until the address may connect again.
    pub(crate) retry_in: Duration,
    /// The first refusal since the address was last within its rate:
    /// worth a log line (the rest of a flood is only counted).
    pub(crate) first: bool,
}

/// Most addresses tracked at once, so that connections from very many
/// addresses (an IPv6 scan, a botnet) cannot grow memory without bound.
/// Buckets are dropped once full again (after about a second); past this
/// many at once, new addresses are let in untracked.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

impl ConnectionRates {
    /// `rate` new connections per address.
    pub(crate) fn new(rate: Rate) -> ConnectionRates {
        ConnectionRates {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Counts a new connection from `ip`; `Err`: too many, and how long
    /// until the next is allowed. Loopback addresses are not limited: they
    /// are the machine itself (its tools, benchmarks, a local proxy that
    /// does not speak the PROXY protocol).
    pub(crate) fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), TooFast> {
        if ip.is_loopback() || ip_v4_mapped_loopback(ip) {
            return Ok(());
        }
        let key = address_key(ip);
        let mut buckets = crate::sync::lock(&self.buckets);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, (bucket, _)| bucket.paid_until > now);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                return Ok(());
            }
        }
        let (bucket, refused) = buckets.entry(key).or_insert((Bucket::full(now), false));
        if bucket.paid_until <= now {
            *refused = false;
        }
        if bucket.allowance(self.rate, now) == 0 {
            let next = bucket.paid_until - BURST.saturating_sub(self.rate.cost(1));
            let first = !std::mem::replace(refused, true);
            return Err(TooFast {
                retry_in: next.saturating_duration_since(now),
                first,
            });
        }
        bucket.take(self.rate, 1, now);
        Ok(())
    }

    /// Forgets addresses whose buckets are full again.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut buckets = crate::sync::lock(&self.buckets);
        buckets.retain(|_, (bucket, _)| bucket.paid_until > now);
    }

    /// The rate allowed per address.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }
}

fn ip_v4_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// What per-address limits (and failed logins) count by: an IPv4 address
/// (also when it comes IPv4-mapped), or an IPv6 /64 (what one subscriber
/// usually holds whole).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> Rate {
        Rate::per_second(n).unwrap()
    }

    #[test]
    fn a_full_bucket_allows_one_seconds_worth_then_the_rate() {
        let now = Instant::now();
        let mut bucket = Bucket::full(now);
        assert_eq!(bucket.allowance(rate(100), now), 100);
        bucket.take(rate(100), 100, now);
        assert_eq!(bucket.allowance(rate(100), now), 0);
        let later = now + Duration::from_millis(250);
        assert_eq!(bucket.allowance(rate(100), later), 25);
        // It never holds more than a second's worth.
        assert_eq!(
            bucket.allowance(rate(100), now + Duration::from_secs(60)),
            100
        );
    }

    #[test]
    fn what_is_over_the_allowance_is_owed() {
        let now = Instant::now();
        let mut bucket = Bucket::full(now);
        bucket.take(rate(10), 30, now);
        // 30 at 10 a second: paid in 3 s; 1 s of that is the burst, and a
        // paused sender goes on at a tenth of a second's worth.
        assert_eq!(
            bucket.resumes_at(rate(10)) - now,
            Duration::from_millis(2100)
        );
        assert_eq!(
            bucket.allowance(rate(10), now + Duration::from_millis(2100)),
            1
        );
    }

    #[test]
    fn a_slow_rate_resumes_after_one_unit_not_a_fraction() {
        let now = Instant::now();
        let mut bucket = Bucket::full(now);
        bucket.take(rate(2), 2, now);
        assert_eq!(bucket.resumes_at(rate(2)) - now, Duration::from_millis(500));
    }

    fn throttle(messages: u32, grace: u64) -> (Throttle, ClientRates, Instant) {
        let rates = ClientRates {
            messages: Rate::per_second(messages),
            bytes: None,
            grace: Duration::from_secs(grace),
        };
        (Throttle::default(), rates, Instant::now())
    }

    #[test]
    fn a_client_held_at_its_limit_is_cut_off_after_the_grace_period() {
        let (mut throttle, rates, start) = throttle(10, 3);
        let mut now = start;
        let mut pauses = 0;
        loop {
            let allowed = throttle.messages_allowed(&rates, now).unwrap();
            if allowed > 0 {
                throttle.took_messages(&rates, allowed as usize, now);
                continue;
            }
            match throttle.hold(&rates, false, now) {
                Verdict::Pause { until, first, .. } => {
                    assert_eq!(first, pauses == 0, "only the first pause begins a spell");
                    pauses += 1;
                    now = until;
                }
                Verdict::CutOff(limit) => {
                    assert_eq!(limit, Limit::Messages(rate(10)));
                    break;
                }
            }
        }
        assert_eq!(now - start, Duration::from_secs(3));
        assert!(pauses >= 20, "paused {pauses} times");
    }

    #[test]
    fn with_no_grace_a_client_held_at_its_limit_is_paced_and_never_cut_off() {
        let (mut throttle, rates, start) = throttle(10, 0);
        let mut now = start;
        let mut sent = 0;
        // An hour of sending flat out: paced to its rate, never cut off.
        while now - start < Duration::from_secs(3600) {
            let allowed = throttle.messages_allowed(&rates, now).unwrap();
            if allowed > 0 {
                throttle.took_messages(&rates, allowed as usize, now);
                sent += allowed;
                continue;
            }
            match throttle.hold(&rates, false, now) {
                Verdict::Pause { until, .. } => {
                    assert!(until > now, "a pause moves time on");
                    now = until;
                }
                Verdict::CutOff(_) => panic!("cut off after {:?}", now - start),
            }
        }
        // A second's burst, then ten a second: no more, and no less.
        assert!((10 * 3600..=10 + 10 * 3600).contains(&sent), "{sent}");
    }

    #[test]
    fn a_client_that_keeps_under_its_limit_between_bursts_starts_a_new_spell() {
        let (mut throttle, rates, now) = throttle(10, 3);
        throttle.took_messages(&rates, 10, now);
        let Verdict::Pause { until, first, .. } = throttle.hold(&rates, false, now) else {
            panic!("over its limit")
        };
        assert!(first);
        // Quiet for a while, then over again: a new spell, not a cut-off.
        let later = until + Duration::from_secs(10);
        let allowed = throttle.messages_allowed(&rates, later).unwrap();
        throttle.took_messages(&rates, allowed as usize, later);
        assert!(matches!(
            throttle.hold(&rates, false, later),
            Verdict::Pause { first: true, .. }
        ));
    }

    #[test]
    fn a_client_holds_its_buckets_inline_and_a_spell_only_once_held_back() {
        let (mut throttle, rates, now) = throttle(10, 3);
        assert_eq!(throttle.messages_allowed(&rates, now), Some(10));
        assert_eq!(throttle.bytes_allowed(&rates, now), None);
        // Taken from within its allowance: owed, in the stamp, nothing boxed.
        throttle.took_messages(&rates, 4, now);
        assert_eq!(throttle.messages_allowed(&rates, now), Some(6));
        assert_eq!(
            throttle.messages_allowed(&rates, now + Duration::from_millis(200)),
            Some(8)
        );
        assert!(throttle.spell.is_none());
        // Over it: held back, and the spell is kept.
        throttle.took_messages(&rates, 6, now);
        assert!(matches!(
            throttle.hold(&rates, false, now),
            Verdict::Pause { first: true, .. }
        ));
        assert!(throttle.spell.is_some());
        // Three stamps' worth: not a pointer to 64 bytes of heap.
        assert_eq!(std::mem::size_of::<Throttle>(), 24);
    }

    #[test]
    fn connections_per_address_are_limited_but_not_from_loopback() {
        let rates = ConnectionRates::new(rate(2));
        let now = Instant::now();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(rates.admit(remote, now).is_ok());
        assert!(rates.admit(remote, now).is_ok());
        let refused = rates.admit(remote, now).unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_millis(500));
        assert!(refused.first);
        assert!(!rates.admit(remote, now).unwrap_err().first);
        assert!(rates.admit(remote, now + refused.retry_in).is_ok());
        // Another address has its own bucket; the machine itself has none.
        assert!(rates.admit("192.0.2.8".parse().unwrap(), now).is_ok());
        for _ in 0..100 {
            assert!(rates.admit("127.0.0.1".parse().unwrap(), now).is_ok());
            assert!(rates.admit("::1".parse().unwrap(), now).is_ok());
        }
        rates.sweep(now + Duration::from_secs(5));
        assert!(rates.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn a_byte_limit_paces_reads_and_names_itself() {
        let rates = ClientRates {
            messages: Rate::per_second(1000),
            bytes: Rate::per_second(1024),
            grace: Duration::ZERO,
        };
        let mut throttle = Throttle::default();
        let now = Instant::now();
        assert_eq!(throttle.bytes_allowed(&rates, now), Some(1024));
        throttle.took_bytes(&rates, 1024, now);
        assert_eq!(throttle.bytes_allowed(&rates, now), Some(0));
        // The messages' bucket is another, still full.
        assert_eq!(throttle.messages_allowed(&rates, now), Some(1000));
        let Verdict::Pause {
            until,
            limit,
            first,
        } = throttle.hold(&rates, true, now)
        else {
            panic!("cut off without a grace")
        };
        assert_eq!(limit, Limit::Bytes(rate(1024)));
        assert!(first);
        // A tenth of a second's worth later it may go on.
        assert_eq!(until - now, Duration::from_millis(100));
        assert_eq!(throttle.bytes_allowed(&rates, until), Some(102));
        assert_eq!(
            limit.to_string(),
            "1024 bytes a second (max bytes per second)"
        );
        assert_eq!(
            Limit::Messages(rate(5)).to_string(),
            "5 messages a second (max messages per second)"
        );
    }

    #[test]
    fn ipv4_mapped_loopback_is_the_machine_itself() {
        let rates = ConnectionRates::new(rate(1));
        let now = Instant::now();
        for _ in 0..10 {
            assert!(rates
                .admit("::ffff:127.0.0.1".parse().unwrap(), now)
                .is_ok());
        }
        // Mapped or not, another address is one address.
        assert!(rates
            .admit("::ffff:192.0.2.9".parse().unwrap(), now)
            .is_ok());
        assert!(rates.admit("192.0.2.9".parse().unwrap(), now).is_err());
    }

    #[test]
    fn an_address_is_forgotten_once_its_bucket_is_full_again_not_before() {
        let rates = ConnectionRates::new(rate(1));
        let now = Instant::now();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        rates.admit(remote, now).unwrap();
        // Paid for a second later: kept until then, gone at that instant.
        rates.sweep(now + Duration::from_millis(999));
        assert_eq!(rates.buckets.lock().unwrap().len(), 1);
        rates.sweep(now + Duration::from_secs(1));
        assert!(rates.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn past_the_most_addresses_tracked_new_ones_are_let_in_untracked() {
        let rates = ConnectionRates::new(rate(1));
        let now = Instant::now();
        let address = |i: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
        for i in 0..MAX_TRACKED_ADDRESSES {
            rates.admit(address(i), now).unwrap();
        }
        // A tracked address is still limited ...
        assert!(rates.admit(address(0), now).is_err());
        // ... while a new one comes in, and again, untracked.
        let new = address(MAX_TRACKED_ADDRESSES);
        assert!(rates.admit(new, now).is_ok());
        assert!(rates.admit(new, now).is_ok());
        assert_eq!(rates.buckets.lock().unwrap().len(), MAX_TRACKED_ADDRESSES);
        // Once the others' buckets are full again, it is tracked (and
        // limited) in their place.
        let later = now + Duration::from_secs(1);
        assert!(rates.admit(new, later).is_ok());
        assert!(rates.admit(new, later).is_err());
        assert_eq!(rates.buckets.lock().unwrap().len(), 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        let rates = ConnectionRates::new(rate(1));
        let now = Instant::now();
        assert!(rates.admit("2001:db8::1".parse().unwrap(), now).is_ok());
        assert!(rates.admit("2001:db8::2".parse().unwrap(), now).is_err());
        assert!(rates.admit("2001:db8:0:1::1".parse().unwrap(), now).is_ok());
    }
}
