//! A client's bounded outbound queue, and the flow control built on it.
//!
//! Senders push into a receiver's outbox and never block while doing so.
//! The queue counts the bytes not yet written to the receiver's socket:
//! - over the *soft* limit, [`Outbox::push`] reports [`Pushed::Congested`]
//!   and the sender waits ([`Outbox::until_receiver_keeps_up`], which gives
//!   up after the pause timeout for a receiver that accepts nothing) before
//!   reading more from its own socket, so TCP pushes back on it; a client's
//!   answers to itself wait with [`Outbox::until_uncongested`];
//! - past the *hard* limit the receiver is cut off: its queue is dropped and
//!   the outbox closes with [`CloseReason::SlowConsumer`].
//!
//! A receiver that accepts no bytes at all for the stall timeout is cut off
//! by its writer (see `connection`), which closes the outbox and so releases
//! every sender waiting on it. A stalled client therefore holds a sender back
//! for at most the stall timeout. One that reads, but too slowly, keeps its
//! queue over the soft limit: the outbox notes since when
//! ([`Outbox::congested_for`]), and the hub's sweep cuts it off past the
//! slow timeout, so a slow reader holds its room back for a bounded time.
//!
//! What the queue counts is what the client will be sent: items are
//! already encoded in the client's own wire format, each weighing its
//! length plus [`ITEM_OVERHEAD`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::CloseReason;

/// What one queued item costs besides its bytes: its handle and its slot
/// in the queue. Counted so that a flood of tiny items is bounded too.
pub const ITEM_OVERHEAD: usize = 32;

/// The weight of an item against the queue limits.
pub fn weight(item: &Bytes) -> usize {
    item.len() + ITEM_OVERHEAD
}

/// A millisecond clock for timestamps kept in an atomic, where 0 means
/// "none": only differences between two readings mean anything.
///
/// It reads tokio's clock, which is the system's monotonic clock except in
/// a test that pauses time: there, the flow-control and slow-client timeouts
/// are checked by advancing the clock instead of waiting on it. A paused
/// clock may stand before the first reading (it stops while the process's
/// other tests go on), so readings are offset from the middle of the range
/// rather than saturated at zero.
pub(crate) fn now_millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    millis_since(epoch, tokio::time::Instant::now().into_std())
}

/// The low 32 bits of [`now_millis`], never 0: a moment kept in 4 bytes,
/// whose differences are taken wrapping (exact for 49 days).
fn low_millis() -> u32 {
    (now_millis() as u32).max(1)
}

/// `now` as milliseconds from `epoch`, offset from the middle of the
/// range: never 0, and exact differences on either side of `epoch`.
fn millis_since(epoch: Instant, now: Instant) -> u64 {
    const MIDDLE: u64 = 1 << 62;
    match now.checked_duration_since(epoch) {
        Some(after) => MIDDLE + after.as_millis() as u64,
        None => MIDDLE - epoch.duration_since(now).as_millis() as u64,
    }
}

/// The bytes an outbox may hold before flow control and cut-off set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Above this many queued bytes, senders to this client pause.
    pub soft: usize,
    /// Above this many queued bytes, the client is disconnected.
    pub hard: usize,
    /// Senders stop pausing for a client that has accepted no bytes for
    /// this long: a stalled reader must not hold its room back (its queue
    /// then grows toward the hard limit, or the stall timeout ends it).
    pub pause: Duration,
}

/// What every outbox of a hub shares: the queue limits, and where
/// senders and readers wait for a queue to change. Those waits are few
/// and short (a congested receiver, a client's own answers), so a
/// handful of wait lists serve every client, each outbox waiting on one
/// of `WAIT_LISTS` (64) chosen as it is made: a client holds one byte for
/// them, not a 32-byte `Notify` of its own. A change wakes whoever waits
/// on its list, for this outbox or another; each looks again at what it
/// waits for.
#[derive(Debug)]
pub struct Queues {
    limits: QueueLimits,
    /// The hub's traffic counters, which a client's writer adds to: here,
    /// so that what a writer holds of its client is one pointer.
    counters: Arc<super::counters::Counters>,
    /// The hub itself, for a client's record put away with nothing else
    /// of it (a parked session): 8 bytes a parked UDP peer does not hold.
    hub: std::sync::Weak<super::HubState>,
    changed: [Notify; WAIT_LISTS],
    /// The wait list of the next outbox made, round the lists.
    next: AtomicU8,
}

/// How many wait lists a hub's outboxes share: enough that a wake-up
/// seldom reaches a waiter of another outbox, few enough to cost nothing
/// (2 KiB a hub).
const WAIT_LISTS: usize = 64;

impl Queues {
    /// The wait lists for outboxes held to `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        Queues {
            limits,
            counters: Arc::default(),
            hub: std::sync::Weak::new(),
            changed: std::array::from_fn(|_| Notify::new()),
            next: AtomicU8::new(0),
        }
    }
}

impl Queues {
    /// The wait lists of `hub`, whose traffic is counted in `counters`.
    pub(super) fn of_hub(
        limits: QueueLimits,
        counters: Arc<super::counters::Counters>,
        hub: std::sync::Weak<super::HubState>,
    ) -> Self {
        Queues {
            counters,
            hub,
            ..Queues::new(limits)
        }
    }
}

impl From<QueueLimits> for Arc<Queues> {
    fn from(limits: QueueLimits) -> Self {
        Arc::new(Queues::new(limits))
    }
}

/// What happened to an item given to [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Pushed {
    /// Queued; the receiver keeps up.
    Queued,
    /// Queued, and the queue is over its soft limit: the sender should wait
    /// with [`Outbox::until_receiver_keeps_up`] before producing more.
    Congested,
    /// Not queued: the outbox is closed (or just closed, over its hard limit).
    Closed,
}

/// How and why an outbox was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// Why the client is being disconnected.
    pub reason: CloseReason,
    /// Whether what is already queued is still written (a goodbye) or
    /// dropped (a cut-off).
    pub flush: bool,
}

/// A client's outbound queue. Shared between the senders that push into it
/// and the one writer that drains it to the client's socket.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Bytes pushed and not yet reported written by the writer, including
    /// those the writer has taken but not finished writing.
    pending: AtomicUsize,
    /// Shared by every outbox of a hub: the limits, and the wait lists.
    queues: Arc<Queues>,
    /// Wakes the writer: new items after an empty queue, or a close. The
    /// waker of its last wait, for the client's own task (not a `Notify`,
    /// whose wait is a 64-byte future every idle client's task would
    /// hold); or a shared writer's, for this outbox, registered as it
    /// takes a batch (see [`Outbox::shared`]).
    to_writer: AtomicWaker,
    /// Whether a shared writer drains it, not the client's own task.
    shared_writer: bool,
    /// Which of the [`Queues`]' wait lists wakes senders and readers: the
    /// queue fell below the soft limit, or the outbox closed.
    wait_list: u8,
    /// When the queue went over the soft limit ([`low_millis`]: 4 bytes,
    /// which made room in the client's record for a name of its own), or
    /// 0 if it has drained to half the soft limit since. Senders are let go at the
    /// soft limit, and a reader slower than its senders keeps the queue
    /// hovering there: only a reader that catches up (to half) has stopped
    /// holding its senders back. Written under the queue's lock.
    congested_since: AtomicU32,
    /// Set when the outbox closes: a cheap check for the reader.
    closed: AtomicBool,
    /// Set when the writer is told there is something (new items after an
    /// empty queue, or a close), cleared as it is told: a wake-up given
    /// while it was busy is not lost. Only for a task's own writer (a
    /// shared one takes its batch after registering its waker).
    writer_woken: AtomicBool,
    /// When the client last accepted bytes ([`now_millis`]), or when data
    /// started waiting for it.
    progress: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    /// Taken whole by the writer, so pushed at the end only: a `Vec`, 8
    /// bytes smaller in every client's record than a `VecDeque`.
    items: Vec<Bytes>,
    /// Boxed: a client closes once, and its outbox is memory it holds
    /// every moment before.
    closing: Option<Box<Closing>>,
}

/// What the writer takes from the outbox in one go.
#[derive(Debug)]
pub struct Batch {
    /// Items to write, oldest first.
    pub items: Vec<Bytes>,
    /// Set once the outbox is closed: after writing `items` (empty for a
    /// cut-off), the writer says goodbye and ends.
    pub closing: Option<Closing>,
}

impl Outbox {
    /// The traffic counters of the hub it belongs to.
    pub(super) fn counters(&self) -> &super::counters::Counters {
        &self.queues.counters
    }

    /// The hub it belongs to, while there is one.
    pub(super) fn hub(&self) -> Option<Arc<super::HubState>> {
        self.queues.hub.upgrade()
    }

    /// An empty, open outbox.
    pub fn new(queues: impl Into<Arc<Queues>>) -> Self {
        Outbox::with_writer(queues.into(), false)
    }

    /// An empty, open outbox drained by a writer shared by many clients
    /// (a UDP listener's, which sends each peer's datagrams from its one
    /// socket, so that an idle peer has no task of its own). The writer
    /// is woken through the waker it gives [`Outbox::attach`] and
    /// [`Outbox::take_rearmed`]: one wake-up, after which it takes a batch
    /// and so registers for the next. Nothing is registered once the
    /// outbox is closed: a writer's waker that holds its client's record
    /// (as a UDP peer does) is not held by that record past its end.
    pub fn shared(queues: impl Into<Arc<Queues>>) -> Self {
        Outbox::with_writer(queues.into(), true)
    }

    fn with_writer(queues: Arc<Queues>, shared_writer: bool) -> Self {
        let wait_list = queues.next.fetch_add(1, Ordering::Relaxed) % WAIT_LISTS as u8;
        Outbox {
            queue: Mutex::default(),
            pending: AtomicUsize::new(0),
            queues,
            to_writer: AtomicWaker::new(),
            shared_writer,
            wait_list,
            congested_since: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            writer_woken: AtomicBool::new(false),
            progress: AtomicU64::new(now_millis()),
        }
    }

    /// The wait list that says this outbox changed.
    fn changed(&self) -> &Notify {
        &self.queues.changed[usize::from(self.wait_list)]
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere cannot leave a queue half-updated (every
        // critical section is a single push or swap), so poison is ignored.
        crate::sync::lock(&self.queue)
    }

    /// Queues `item` for the client, or cuts the client off if that would
    /// take its queue past the hard limit.
    pub fn push(&self, item: Bytes) -> Pushed {
        let weight = weight(&item);
        let mut queue = self.lock();
        if queue.closing.is_some() {
            return Pushed::Closed;
        }
        let pending = self.pending.load(Ordering::Acquire) + weight;
        if pending > self.queues.limits.hard {
            self.discard(&mut queue);
            queue.closing = Some(Box::new(Closing {
                reason: CloseReason::SlowConsumer {
                    queued: pending,
                    limit: self.queues.limits.hard,
                },
                flush: false,
            }));
            drop(queue);
            self.wake_all();
            return Pushed::Closed;
        }
        let was_empty = queue.items.is_empty();
        queue.items.push(item);
        if self.pending.fetch_add(weight, Ordering::AcqRel) == 0 {
            // Data starts waiting now: the client's time to take it runs
            // from here.
            self.progress.store(now_millis(), Ordering::Relaxed);
        }
        if was_empty {
            self.wake_writer();
        }
        if pending > self.queues.limits.soft {
            if self.congested_since.load(Ordering::Relaxed) == 0 {
                self.congested_since.store(low_millis(), Ordering::Relaxed);
            }
            drop(queue);
            Pushed::Congested
        } else {
            drop(queue);
            Pushed::Queued
        }
    }

    /// Closes the outbox: nothing more is queued. With `flush`, what is
    /// queued is still written; without, it is dropped. A later close
    /// without flush turns a flushing close into a cut-off, keeping the
    /// first reason; any other later close is ignored.
    pub fn close(&self, reason: CloseReason, flush: bool) {
        let mut queue = self.lock();
        match &mut queue.closing {
            Some(closing) => {
                if flush || !closing.flush {
                    return;
                }
                closing.flush = false;
                self.discard(&mut queue);
            }
            None => {
                queue.closing = Some(Box::new(Closing { reason, flush }));
                if !flush {
                    self.discard(&mut queue);
                }
            }
        }
        drop(queue);
        self.wake_all();
    }

    /// Drops what is queued (a cut-off): its memory is free at once.
    fn discard(&self, queue: &mut Queue) {
        let dropped: usize = queue.items.iter().map(weight).sum();
        queue.items = Vec::new();
        self.pending.fetch_sub(dropped, Ordering::AcqRel);
    }

    fn wake_writer(&self) {
        if !self.shared_writer {
            self.writer_woken.store(true, Ordering::Release);
        }
        self.to_writer.wake();
    }

    fn wake_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_writer();
        self.changed().notify_waiters();
    }

    /// Whether the outbox is closed: the client is leaving, and nothing it
    /// asks for any more is worth doing.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How and why the outbox was closed, if it was.
    pub fn closing(&self) -> Option<Closing> {
        self.lock().closing.as_deref().cloned()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes everything queued, for the writer. Items stay counted as
    /// pending until the writer reports them with [`Outbox::written`].
    pub fn take(&self) -> Batch {
        let mut queue = self.lock();
        Batch {
            items: std::mem::take(&mut queue.items),
            closing: queue.closing.as_deref().cloned(),
        }
    }

    /// [`Outbox::take`] for a shared writer, which `waker` wakes when there
    /// is more (unless the outbox is closed: there is no more then).
    /// Registered before the batch is taken, under the queue's lock, so
    /// that whatever is pushed after it wakes the writer.
    pub fn take_rearmed(&self, waker: &Waker) -> Batch {
        let mut queue = self.lock();
        if queue.closing.is_none() {
            self.to_writer.register(waker);
        }
        Batch {
            items: std::mem::take(&mut queue.items),
            closing: queue.closing.as_deref().cloned(),
        }
    }

    /// Gives a shared writer's `waker` to a new outbox; wakes it at once if
    /// something waits already.
    pub fn attach(&self, waker: &Waker) {
        let queue = self.lock();
        if queue.closing.is_none() {
            self.to_writer.register(waker);
        }
        let waiting = !queue.items.is_empty() || queue.closing.is_some();
        drop(queue);
        if waiting {
            waker.wake_by_ref();
        }
    }

    /// Drops the shared writer's waker, if one is held: the client is gone.
    pub fn detach(&self) {
        drop(self.to_writer.take());
    }

    /// The client accepted bytes: it is making progress.
    pub fn progressed(&self) {
        self.progress.store(now_millis(), Ordering::Relaxed);
    }

    /// The writer wrote items weighing `weight` bytes in all.
    pub fn written(&self, weight: usize) {
        let before = self.pending.fetch_sub(weight, Ordering::AcqRel);
        let after = before.saturating_sub(weight);
        let relieved = self.queues.limits.soft / 2;
        if before > relieved && after <= relieved {
            // Under the lock, so a push going over the limit again cannot
            // have its mark erased.
            let _queue = self.lock();
            if self.pending() <= relieved {
                self.congested_since.store(0, Ordering::Relaxed);
            }
        }
        if before > self.queues.limits.soft && after <= self.queues.limits.soft {
            self.changed().notify_waiters();
        }
    }

    /// How long the queue has been congested: since it went over its soft
    /// limit, without draining to half of it since. That is how long this
    /// client has been holding its senders back.
    pub fn congested_for(&self) -> Duration {
        match self.congested_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(u64::from(low_millis().wrapping_sub(since))),
        }
    }

    /// Waits until there may be something to [`take`](Outbox::take).
    /// Only for an outbox its client's task drains: a shared writer is
    /// woken through its waker (here, this never ends). The wait holds
    /// nothing but this reference.
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_ready(cx))
    }

    /// [`Outbox::ready`] as a poll: the wake-up is taken if one was given,
    /// or the waker is kept for the next.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared_writer {
            return Poll::Pending;
        }
        if self.writer_woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.to_writer.register(cx.waker());
        // A wake-up given before the registration found no waker to wake.
        if self.writer_woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until the queue is at or under its soft limit, or closed: how
    /// a client that does not read its own answers is throttled.
    pub async fn until_uncongested(&self) {
        self.wait_for(|outbox| outbox.pending() <= outbox.queues.limits.soft || outbox.is_closed())
            .await
    }

    /// What a sender to this client waits for: the queue back at or under
    /// its soft limit, or closed, or the client stuck, having accepted no
    /// bytes for the pause timeout. A reader that reads holds its senders
    /// back (and loses nothing); one that has stopped does not hold anyone
    /// back for long: its queue grows toward the hard limit instead, and
    /// the stall timeout ends it.
    pub async fn until_receiver_keeps_up(&self) {
        loop {
            let notified = self.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() <= self.queues.limits.soft || self.is_closed() {
                return;
            }
            let idle = Duration::from_millis(
                now_millis().saturating_sub(self.progress.load(Ordering::Relaxed)),
            );
            let Some(left) = self
                .queues
                .limits
                .pause
                .checked_sub(idle)
                .filter(|d| !d.is_zero())
            else {
                return;
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Waits until the outbox is closed without flush (the client is cut off).
    pub async fn aborted(&self) {
        self.wait_for(|outbox| {
            matches!(
                outbox.lock().closing.as_deref(),
                Some(Closing { flush: false, .. })
            )
        })
        .await
    }

    async fn wait_for(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.changed().notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and
            // the await is not missed.
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// An item weighing `len` bytes against the limits.
    fn item(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len - ITEM_OVERHEAD])
    }

    const LIMITS: QueueLimits = QueueLimits {
        soft: 100,
        hard: 250,
        pause: Duration::from_secs(60),
    };

    /// A shared writer (a UDP listener's) counts its wake-ups.
    #[derive(Default)]
    struct SharedWriter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for SharedWriter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A shared writer is woken once for what waits, registers again as it
    /// takes its batch, and is let go of when the outbox closes: a UDP
    /// peer is its outbox's waker and holds its client's record, and the
    /// record must not keep it past the client's end.
    #[test]
    fn a_shared_writer_is_woken_for_each_batch_and_let_go_of_at_the_close() {
        let outbox = Outbox::shared(LIMITS);
        let writer = Arc::new(SharedWriter::default());
        let waker = Waker::from(writer.clone());
        let woken = || writer.0.load(Ordering::SeqCst);
        assert_eq!(outbox.push(item(33)), Pushed::Queued);
        outbox.attach(&waker);
        assert_eq!(woken(), 1, "what waited before it attached wakes it");
        assert_eq!(outbox.take_rearmed(&waker).items.len(), 1);
        assert_eq!(Arc::strong_count(&writer), 3, "registered for the next");
        assert_eq!(outbox.push(item(33)), Pushed::Queued);
        assert_eq!(outbox.push(item(33)), Pushed::Queued);
        assert_eq!(woken(), 2, "one wake-up for a batch");
        assert_eq!(Arc::strong_count(&writer), 2, "the wake-up took it");
        assert_eq!(outbox.take_rearmed(&waker).items.len(), 2);
        assert!(futures_util::FutureExt::now_or_never(outbox.ready()).is_none());
        outbox.close(CloseReason::ClientClosed, true);
        assert_eq!(woken(), 3, "the close wakes it");
        let batch = outbox.take_rearmed(&waker);
        assert!(batch.closing.is_some());
        assert_eq!(
            Arc::strong_count(&writer),
            2,
            "a closed outbox holds no writer: only the test's waker does"
        );
    }

    /// The writer is told of new items by a flag and its waker, not a
    /// `Notify`: a push while it writes (no waker to wake) still ends its
    /// next wait at once, and a wait with nothing new does not end.
    #[tokio::test]
    async fn a_wake_up_given_while_the_writer_is_busy_is_not_lost() {
        use futures_util::FutureExt;
        let outbox = Outbox::new(LIMITS);
        assert!(
            outbox.ready().now_or_never().is_none(),
            "nothing was pushed"
        );
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        assert!(outbox.ready().now_or_never().is_some(), "the push was lost");
        assert_eq!(outbox.take().items.len(), 1);
        assert!(outbox.ready().now_or_never().is_none(), "woken twice");
        // A writer waiting is woken by a push, and by a close.
        let waiting = tokio::spawn({
            let outbox = Arc::new(outbox);
            let pusher = outbox.clone();
            async move {
                let wait = tokio::spawn(async move { outbox.ready().await });
                tokio::task::yield_now().await;
                pusher.close(CloseReason::ClientClosed, true);
                wait.await
            }
        });
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("a close wakes the writer")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn pushes_past_the_soft_limit_report_congestion() {
        let outbox = Outbox::new(LIMITS);
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        assert_eq!(outbox.push(item(60)), Pushed::Congested);
        assert_eq!(outbox.pending(), 120);
    }

    #[test]
    fn a_push_past_the_hard_limit_cuts_the_client_off_and_drops_its_queue() {
        let outbox = Outbox::new(LIMITS);
        assert_eq!(outbox.push(item(200)), Pushed::Congested);
        assert_eq!(outbox.push(item(60)), Pushed::Closed);
        let batch = outbox.take();
        assert!(batch.items.is_empty());
        let closing = batch.closing.expect("closed");
        assert!(!closing.flush);
        assert_eq!(
            closing.reason,
            CloseReason::SlowConsumer {
                queued: 260,
                limit: 250
            }
        );
        assert_eq!(outbox.push(item(40)), Pushed::Closed);
    }

    #[test]
    fn a_flushing_close_keeps_the_queue_and_a_cut_off_drops_it() {
        let outbox = Outbox::new(LIMITS);
        let _ = outbox.push(item(40));
        outbox.close(CloseReason::Quit, true);
        assert_eq!(outbox.take().items.len(), 1);
        let _ = outbox.push(item(40));
        outbox.close(CloseReason::ServerShutdown, false);
        let closing = outbox.closing().unwrap();
        assert_eq!(closing.reason, CloseReason::Quit);
        assert!(!closing.flush);
    }

    #[tokio::test]
    async fn senders_are_released_when_the_writer_drains_below_the_soft_limit() {
        let outbox = std::sync::Arc::new(Outbox::new(LIMITS));
        let _ = outbox.push(item(150));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.until_receiver_keeps_up().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let batch = outbox.take();
        assert_eq!(batch.items.len(), 1);
        outbox.written(150);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test]
    async fn senders_are_released_when_the_receiver_is_cut_off() {
        let outbox = std::sync::Arc::new(Outbox::new(LIMITS));
        let _ = outbox.push(item(150));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.until_receiver_keeps_up().await }
        });
        // Waiting already, not finding the outbox closed as it starts.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        outbox.close(
            CloseReason::Stalled {
                timeout: std::time::Duration::from_secs(1),
            },
            false,
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .unwrap();
    }

    #[test]
    fn the_limits_are_inclusive_a_queue_at_a_limit_is_within_it() {
        let outbox = Outbox::new(LIMITS);
        // Exactly the soft limit: queued, not congested.
        assert_eq!(outbox.push(item(100)), Pushed::Queued);
        // Exactly the hard limit: congested, not cut off.
        assert_eq!(outbox.push(item(150)), Pushed::Congested);
        assert_eq!(outbox.pending(), 250);
        assert!(!outbox.is_closed());
        // One byte more is past it.
        assert_eq!(outbox.push(item(ITEM_OVERHEAD + 1)), Pushed::Closed);
        assert!(outbox.is_closed());
    }

    #[test]
    fn a_second_flushing_close_changes_nothing_and_a_cut_off_overrides_a_flush() {
        let outbox = Outbox::new(LIMITS);
        let _ = outbox.push(item(50));
        outbox.close(CloseReason::Quit, true);
        assert!(outbox.is_closed());
        outbox.close(CloseReason::ServerShutdown, true);
        let closing = outbox.closing().unwrap();
        assert_eq!((closing.reason, closing.flush), (CloseReason::Quit, true));
        assert_eq!(outbox.pending(), 50, "still to be written");
        outbox.close(CloseReason::ServerShutdown, false);
        let closing = outbox.closing().unwrap();
        assert_eq!((closing.reason, closing.flush), (CloseReason::Quit, false));
        assert_eq!(outbox.pending(), 0, "dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receivers_time_to_take_data_runs_from_when_data_starts_waiting() {
        let outbox = Outbox::new(QueueLimits {
            pause: Duration::from_millis(100),
            ..LIMITS
        });
        // Idle for longer than the pause timeout: that is not stalling.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = outbox.push(item(150));
        tokio::time::timeout(Duration::from_millis(99), outbox.until_receiver_keeps_up())
            .await
            .expect_err("released before the pause timeout, counted from the push");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_takes_bytes_holds_its_senders_for_another_pause() {
        let outbox = Outbox::new(QueueLimits {
            pause: Duration::from_millis(100),
            ..LIMITS
        });
        let _ = outbox.push(item(150));
        tokio::time::advance(Duration::from_millis(80)).await;
        // It accepted some bytes: its senders wait a whole pause from now.
        outbox.progressed();
        tokio::time::timeout(Duration::from_millis(99), outbox.until_receiver_keeps_up())
            .await
            .expect_err("released before a pause from its progress");
    }

    #[tokio::test(start_paused = true)]
    async fn congestion_ends_when_the_queue_drains_to_half_the_soft_limit() {
        let outbox = Outbox::new(LIMITS);
        let _ = outbox.push(item(150));
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(outbox.congested_for(), Duration::from_millis(50));
        // Down to 100, at the soft limit but over half of it: still.
        outbox.written(50);
        assert_eq!(outbox.congested_for(), Duration::from_millis(50));
        // Down to 50, half of it: over.
        outbox.written(50);
        assert_eq!(outbox.congested_for(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_clients_own_answers_wait_until_its_queue_is_back_at_the_soft_limit() {
        use futures_util::FutureExt;
        let outbox = Outbox::new(LIMITS);
        let _ = outbox.push(item(150));
        let waiting = outbox.until_uncongested();
        tokio::pin!(waiting);
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "over the soft limit"
        );
        outbox.written(50);
        assert!(waiting.now_or_never().is_some(), "back at the soft limit");
        let _ = outbox.push(item(100));
        let closing = outbox.until_uncongested();
        tokio::pin!(closing);
        assert!(closing.as_mut().now_or_never().is_none());
        outbox.close(CloseReason::Quit, true);
        assert!(closing.now_or_never().is_some(), "closed");
    }

    #[tokio::test]
    async fn aborted_waits_for_a_cut_off_not_for_a_goodbye() {
        use futures_util::FutureExt;
        let outbox = Outbox::new(LIMITS);
        let aborted = outbox.aborted();
        tokio::pin!(aborted);
        assert!(aborted.as_mut().now_or_never().is_none());
        outbox.close(CloseReason::Quit, true);
        assert!(
            aborted.as_mut().now_or_never().is_none(),
            "a goodbye is written"
        );
        outbox.close(CloseReason::ServerShutdown, false);
        assert!(aborted.now_or_never().is_some());
    }

    #[test]
    fn the_clock_measures_both_sides_of_its_epoch_and_never_reads_zero() {
        let epoch = Instant::now() + Duration::from_secs(10);
        let at = |ms: i64| {
            let offset = Duration::from_millis(ms.unsigned_abs());
            let now = if ms < 0 {
                epoch - offset
            } else {
                epoch + offset
            };
            millis_since(epoch, now)
        };
        assert_eq!(at(0), 1 << 62);
        assert_eq!(at(250) - at(-250), 500);
        assert_eq!(at(-100) - at(-350), 250);
        assert_eq!(at(1500) - at(1000), 500);
        assert!(at(-5000) > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn senders_stop_waiting_for_a_receiver_that_accepts_nothing() {
        let outbox = std::sync::Arc::new(Outbox::new(QueueLimits {
            pause: Duration::from_millis(100),
            ..LIMITS
        }));
        let _ = outbox.push(item(150));
        let waiting = outbox.until_receiver_keeps_up();
        tokio::pin!(waiting);
        // The clock is paused: it moves only to the next timer due. The
        // sender is held for all of the pause timeout but a millisecond ...
        tokio::time::timeout(Duration::from_millis(99), &mut waiting)
            .await
            .expect_err("released before the pause timeout");
        // ... and released when it is over.
        tokio::time::timeout(Duration::from_millis(2), &mut waiting)
            .await
            .expect("still held after the pause timeout");
        assert_eq!(outbox.pending(), 150, "still queued: nothing is lost");
    }
}
