//! The receive loop every bench connection runs, whatever the relay.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::payload::{self, PROBE};
use super::tally::Tally;
use super::BenchState;

/// Reads a connection until the bench stops it, finding each payload of
/// `size` bytes in whatever the relay wrapped it in, and tallies it. `own`:
/// this client's publisher id, whose messages it does not count.
pub(super) async fn receive<R: AsyncRead + Unpin>(
    mut reader: R,
    own: Option<u32>,
    publishers: usize,
    size: usize,
    shared: Arc<BenchState>,
) -> Tally {
    let mut tally = Tally::new(publishers);
    let finder = payload::finder();
    let mut per_publisher = vec![0u64; publishers];
    let mut heard_probe = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer is not a bench payload.
            filled = 0;
            tally.garbled += 1;
        }
        let read = tokio::select! {
            read = reader.read(&mut buf[filled..]) => read,
            _ = shared.stop.cancelled() => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        filled += n;
        // One clock reading per read: everything in it arrived together.
        let now = shared.clock.now_ns();
        let window = shared.window();
        let measuring = window.contains(&now);
        let mut start = 0;
        let mut got = 0u64;
        // Runs of equal latency (a batch stamped at once, read at once) are
        // recorded as one histogram update.
        let mut run = (0u64, 0u64);
        for end in memchr::memchr_iter(b'\n', &buf[..filled]) {
            let line = &buf[start..end];
            start = end + 1;
            let Some(stamp) = payload::find(line, size, &finder) else {
                if finder.find(line).is_some() {
                    tally.garbled += 1;
                }
                continue;
            };
            if stamp.publisher == PROBE {
                if !heard_probe {
                    heard_probe = true;
                    shared.ready.fetch_add(1, Ordering::SeqCst);
                }
                continue;
            }
            let p = stamp.publisher as usize;
            if Some(stamp.publisher) == own || p >= publishers {
                continue;
            }
            tally.sequences[p].observe(stamp.seq);
            per_publisher[p] += 1;
            got += 1;
            if measuring {
                tally.deliveries_in_window += 1;
                if window.contains(&stamp.sent_ns) {
                    let latency = now.saturating_sub(stamp.sent_ns).max(1);
                    if latency != run.0 && run.1 > 0 {
                        record(&mut tally, run);
                        run.1 = 0;
                    }
                    run = (latency, run.1 + 1);
                }
            }
        }
        if run.1 > 0 {
            record(&mut tally, run);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if got > 0 {
            for (p, count) in per_publisher.iter_mut().enumerate() {
                if *count > 0 {
                    shared.delivered[p].fetch_add(*count, Ordering::Relaxed);
                    *count = 0;
                }
            }
            shared.progress.delivered.fetch_add(got, Ordering::Relaxed);
            shared.caught_up.notify_waiters();
        }
    }
    tally
}

fn record(tally: &mut Tally, (latency, count): (u64, u64)) {
    tally.latency.saturating_record_n(latency, count);
}
