//! What one receiver saw: per-publisher sequence checks (lost, duplicated,
//! reordered) and a latency histogram.

use hdrhistogram::Histogram;

/// Checks one publisher's sequence numbers as one receiver sees them.
///
/// Numbers should arrive as 0, 1, 2, ... A number past the next expected
/// opens a gap (possibly lost messages); one below it is either a late
/// arrival filling a gap (reordered) or a repeat (duplicated). Messages
/// still missing at the end are lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence {
    next: u64,
    open_gaps: u64,
    /// Distinct messages received.
    pub unique: u64,
    /// Messages received more than once.
    pub duplicated: u64,
    /// Messages received after a later one.
    pub reordered: u64,
}

impl Sequence {
    /// Records the arrival of message `seq`.
    pub fn observe(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
        } else if seq > self.next {
            self.open_gaps += seq - self.next;
            self.next = seq + 1;
            self.unique += 1;
        } else if self.open_gaps > 0 {
            // Below the high-water mark: assume it fills a gap. (A repeat
            // while gaps are open is counted as a late arrival; exact
            // accounting would need a set per publisher.)
            self.open_gaps -= 1;
            self.reordered += 1;
            self.unique += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Messages of the `sent` that never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }
}

/// Everything one receiver measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// One sequence check per publisher, indexed by publisher id.
    pub sequences: Vec<Sequence>,
    /// Latencies in nanoseconds of messages sent inside the measured window.
    pub latency: Histogram<u64>,
    /// Deliveries received inside the measured window.
    pub deliveries_in_window: u64,
    /// Payloads that could not be read (e.g. interleaved by the relay).
    pub garbled: u64,
}

impl Tally {
    /// An empty tally for `publishers` publishers.
    pub fn new(publishers: usize) -> Self {
        Tally {
            sequences: vec![Sequence::default(); publishers],
            // 1 ns to 1 hour at 3 significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds"),
            deliveries_in_window: 0,
            garbled: 0,
        }
    }

    /// Adds another receiver's tally to this one (sequences are kept per
    /// receiver by the caller; only counts and latencies merge).
    pub fn merge_counts(&mut self, other: &Tally) {
        self.latency.add(&other.latency).expect("same bounds");
        self.deliveries_in_window += other.deliveries_in_window;
        self.garbled += other.garbled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> Sequence {
        let mut s = Sequence::default();
        for &seq in seqs {
            s.observe(seq);
        }
        s
    }

    #[test]
    fn an_orderly_stream_loses_nothing() {
        let s = run(&[0, 1, 2, 3]);
        assert_eq!((s.lost(4), s.duplicated, s.reordered), (0, 0, 0));
    }

    #[test]
    fn missing_messages_are_lost() {
        let s = run(&[0, 2, 5]);
        assert_eq!(s.lost(6), 3);
        assert_eq!(
            run(&[0, 1]).lost(4),
            2,
            "the tail that never came is lost too"
        );
    }

    #[test]
    fn late_messages_are_reordered_not_lost() {
        let s = run(&[0, 2, 1, 3]);
        assert_eq!((s.lost(4), s.reordered, s.duplicated), (0, 1, 0));
    }

    #[test]
    fn repeats_are_duplicates() {
        let s = run(&[0, 1, 1, 2, 0]);
        assert_eq!((s.lost(3), s.duplicated, s.reordered), (0, 2, 0));
    }
}
