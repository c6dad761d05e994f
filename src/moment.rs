//! Instants in 8 bytes, for what every client keeps: a `std` instant is
//! 16, and an `Option` of one 16 too; a [`Moment`] and an `Option` of one
//! are 8. (tokio's instants: a paused clock in tests moves them too.)

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;

/// An instant, as nanoseconds after the process's [`epoch`] (585 years of
/// them fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(NonZeroU64);

/// What moments count from: a day before the first one was needed, so that
/// every instant a moment is made of comes after it.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

impl Moment {
    /// `at`, to the nanosecond.
    pub(crate) fn of(at: Instant) -> Moment {
        let nanos = at.saturating_duration_since(epoch()).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Moment(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    /// The instant this moment is.
    pub(crate) fn instant(self) -> Instant {
        epoch() + Duration::from_nanos(self.0.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_the_instant_it_was_made_of() {
        let now = Instant::now();
        for at in [
            now,
            now + Duration::from_millis(1),
            now + Duration::from_secs(3_600),
        ] {
            assert_eq!(Moment::of(at).instant(), at);
        }
        assert!(Moment::of(now) < Moment::of(now + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Moment>>(), 8);
    }
}
