//! The read side of a connection: reads what the client sends (within its
//! rate limits and timeouts), decodes it, lets the connection's phase take
//! what is its own, and hands the rest to the hub.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{timeout_at, Instant};

use crate::moment::Moment;

use super::phase::{self, Phase, Taken};
use super::Timeouts;
use crate::hub::{Body, CloseReason, Pushed, RoomName, Session};
use crate::protocol::{apply, ErrorCode, Input, Protocol, ProtocolError, Reply, Request};
use crate::throttle::{ClientRates, Throttle, Verdict};

/// Size of the per-thread buffer every read lands in before its bytes are
/// moved to the connection's own buffer.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Idle connections hold no read buffer of their own: reads land here,
    /// and only the bytes actually read are copied into the connection.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

enum Step {
    Continue,
    /// Stop reading; close the outbox for this reason, flushing or not.
    Stop(CloseReason, bool),
}

/// What the read side keeps between reads: all of it lives as long as
/// the connection (in its future, or resting with a UDP peer). Borrowed
/// by the read side: taken by value and given back, it was held twice by
/// the connection's future (1,200 bytes, not 992).
pub(super) struct Reading<D> {
    throttle: Throttle,
    /// The last read was made with no bytes allowed: if it brought any,
    /// the client is pushing past its limit.
    read_at_limit: bool,
    decoder: D,
    buf: BytesMut,
    /// Set once the client's input has ended: what was read before the
    /// end is still handled (a one-shot client's last line often has no
    /// newline), then the connection closes for this reason. Boxed: a
    /// connection ends once.
    ended: Option<Box<CloseReason>>,
    /// When the client started the line it has not finished yet.
    line_started: Option<Moment>,
    /// The input paused for the gap that ends a device's packet.
    paused: bool,
    /// Where the connection stands before it is simply served.
    phase: Option<Box<Phase>>,
    /// Whether the client's arrival has been waited for (see [`read_side`]).
    arrived: bool,
}

impl<D> Reading<D> {
    pub(super) fn new(decoder: D, phase: Option<Box<Phase>>) -> Self {
        Reading {
            throttle: Throttle::default(),
            read_at_limit: false,
            decoder,
            buf: BytesMut::new(),
            ended: None,
            line_started: None,
            paused: false,
            phase,
            arrived: false,
        }
    }
}

/// What the read side keeps while its connection rests (a UDP peer
/// between datagrams): at rest ([`Stopped::Idle`]) there is no phase, no
/// unfinished input and no pause, so all that lasts is the rate limit's
/// buckets and the decoder. 56 bytes fewer than a [`Reading`].
pub(super) struct ParkedReading<D> {
    throttle: Throttle,
    decoder: D,
    arrived: bool,
}

impl<D> Reading<D> {
    /// Puts the read side away, once it stopped [`Stopped::Idle`].
    pub(super) fn park(self) -> ParkedReading<D> {
        debug_assert!(
            self.phase.is_none() && self.buf.is_empty() && self.ended.is_none() && !self.paused,
            "only a read side at rest is parked"
        );
        ParkedReading {
            throttle: self.throttle,
            decoder: self.decoder,
            arrived: self.arrived,
        }
    }
}

impl<D> ParkedReading<D> {
    /// The read side again, as it was parked.
    pub(super) fn resume(self) -> Reading<D> {
        Reading {
            throttle: self.throttle,
            read_at_limit: false,
            decoder: self.decoder,
            buf: BytesMut::new(),
            ended: None,
            line_started: None,
            paused: false,
            phase: None,
            arrived: self.arrived,
        }
    }
}

/// How the read side stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stopped {
    /// The connection ends: the outbox is closed, saying why.
    Closed,
    /// Nothing to read now, and nothing to wait for but input: the
    /// caller may put the connection away until more comes (only when
    /// asked to, by `park`).
    Idle,
}

/// Reads and handles the client's input until it leaves, then closes the
/// outbox saying why. With `park`, it returns [`Stopped::Idle`] instead
/// of waiting for input, when there is nothing else to wait for (no
/// phase's deadline, no unfinished line, no rate limit's pause).
///
/// Each piece of input is one unit of work, and the connection gives way
/// to others when tokio's cooperative budget says so: a client with a
/// backlog of cheap requests cannot keep a worker thread to itself. Once
/// the outbox is closed (the client is being cut off or the server is
/// shutting down), nothing more it sent is done.
///
/// Not an `async fn`: one copies its arguments into its body, and this
/// future is held by every idle connection.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(super) fn read_side<'a, P: Protocol, R: AsyncRead + Unpin + 'a>(
    protocol: &'a P,
    session: &'a mut Session,
    mut reader: R,
    limits: &'a Timeouts,
    state: &'a mut Reading<P::Decoder>,
    park: bool,
) -> impl std::future::Future<Output = Stopped> + 'a {
    async move {
        // A new client's arrival is news to its room: wait like for anything
        // else it causes.
        if !state.arrived {
            state.arrived = true;
            Box::pin(session.until_receivers_keep_up()).await;
        }
        let (reason, flush) = 'connection: loop {
            // What was read is handled even after the client hung up.
            {
                // Scoped: nothing of it is kept beside the wait for input.
                let mut held = None;
                loop {
                    // The clock is read only for a limit there is.
                    let now = limits.rates.messages.map(|_| Instant::now());
                    // Scoped: compared by reference, it would be kept
                    // across the await below.
                    let (most, held_back) = {
                        let allowed =
                            now.and_then(|now| state.throttle.messages_allowed(&limits.rates, now));
                        let most = allowed.map_or(MAX_BATCH, |n| (n as usize).clamp(1, MAX_BATCH));
                        (most, allowed == Some(0))
                    };
                    let eof = state.ended.is_some();
                    let Some(work) = next_work(
                        protocol,
                        &mut state.decoder,
                        &mut state.buf,
                        eof || state.paused,
                        &mut held,
                        most,
                    ) else {
                        break;
                    };
                    // A line was finished: what is left is a new one.
                    state.line_started = None;
                    if session.outbox().is_closed() {
                        return Stopped::Closed;
                    }
                    // One await in this loop: what lives across it is not
                    // kept beside the wait for input.
                    let working = work_on(
                        protocol,
                        session,
                        state,
                        &limits.rates,
                        work,
                        held_back,
                        now,
                    );
                    if let Step::Stop(reason, flush) = Box::pin(working).await {
                        break 'connection (reason, flush);
                    }
                }
            }
            if let Some(reason) = state.ended.take() {
                break (*reason, true);
            }
            state.paused = false;
            if state.buf.is_empty() {
                // Give the memory back while the client is quiet.
                state.buf = BytesMut::new();
                state.line_started = None;
            } else if state.line_started.is_none() {
                // The line timeout runs for the line left unfinished, from
                // when it was first seen unfinished: a fast sender whose reads
                // all end mid-line finishes each of its lines in time.
                state.line_started = Some(Moment::of(Instant::now()));
            }
            session.set_input_held(state.buf.capacity());
            if state.read_at_limit {
                match Box::pin(slow_down(
                    protocol,
                    session,
                    &mut state.throttle,
                    &limits.rates,
                    true,
                ))
                .await
                {
                    // The time held back is not the client's to finish its line in.
                    Ok(paused) => {
                        state.line_started = state
                            .line_started
                            .map(|at| Moment::of(at.instant() + paused));
                    }
                    Err(reason) => break (reason, true),
                }
            }
            let most = {
                let allowed = limits
                    .rates
                    .bytes
                    .and_then(|_| state.throttle.bytes_allowed(&limits.rates, Instant::now()));
                state.read_at_limit = allowed == Some(0);
                allowed.map_or(READ_CHUNK, |n| (n as usize).clamp(1, READ_CHUNK))
            };
            // Nothing to wait for but input: if none is there, the caller may
            // put the connection away (its read of nothing wakes nobody: the
            // peer's next datagram resumes it).
            let read =
                if park && state.phase.is_none() && state.buf.is_empty() && !state.read_at_limit {
                    match read_some(&mut reader, &mut state.buf, most).now_or_never() {
                        Some(read) => Ok(read),
                        None => return Stopped::Idle,
                    }
                } else {
                    let until = state.phase.as_deref().map(Phase::deadline);
                    let line_timeout = limits.line.zip(state.line_started.map(Moment::instant));
                    let gap = protocol
                        .gap()
                        .filter(|_| !state.buf.is_empty())
                        .map(|limit| Deadline {
                            at: Instant::now() + limit,
                            limit,
                            why: Why::Gap,
                        });
                    match Deadline::next(limits.idle, line_timeout, [until, gap]) {
                        // Boxed, with the deadline: a timer is memory an idle
                        // client holds, when configured.
                        Some(deadline) => {
                            let read = read_some(&mut reader, &mut state.buf, most);
                            Box::pin(
                                timeout_at(deadline.at, read)
                                    .map(move |read| read.map_err(|_| deadline)),
                            )
                            .await
                        }
                        None => Ok(read_some(&mut reader, &mut state.buf, most).await),
                    }
                };
            match read {
                Ok(Ok(0)) => state.ended = Some(Box::new(CloseReason::ClientClosed)),
                Ok(Ok(read)) => {
                    if limits.rates.bytes.is_some() {
                        state
                            .throttle
                            .took_bytes(&limits.rates, read, Instant::now());
                    }
                    session.received(read);
                    session.set_input_held(state.buf.capacity());
                }
                // A reset (a client closing with the server's words unread)
                // ends its input as a close does: what came before it counts.
                Ok(Err(e)) => {
                    state.ended = Some(Box::new(CloseReason::ReadFailed(e.to_string().into())))
                }
                // A pause: what the device sent before it is a packet.
                Err(Deadline { why: Why::Gap, .. }) => state.paused = true,
                // Nothing came in the arrival window: the client is announced.
                Err(Deadline {
                    why: Why::Arrival, ..
                }) => {
                    state.phase = None;
                    session.announce_arrival();
                }
                Err(Deadline {
                    why: Why::Register,
                    limit,
                    ..
                }) => {
                    let reason = match state.phase.take() {
                        Some(phase) => phase.not_registered(limit),
                        None => CloseReason::NotRegistered { grace: limit },
                    };
                    break (reason, true);
                }
                Err(deadline) => break (deadline.reason(), true),
            }
        };
        session.close(reason, flush);
        Stopped::Closed
    }
}

/// Does one piece of the client's work: holds it back first if the client
/// is over its message rate (`held_back`), lets the connection's phase
/// take what is its own, and hands the rest to the hub. One future for
/// all of it, boxed by the read side while it runs: none of it is memory
/// an idle client holds.
async fn work_on<P: Protocol>(
    protocol: &P,
    session: &mut Session,
    state: &mut Reading<P::Decoder>,
    rates: &ClientRates,
    work: Work,
    held_back: bool,
    now: Option<Instant>,
) -> Step {
    if held_back {
        let slowing = slow_down(protocol, session, &mut state.throttle, rates, false);
        if let Err(reason) = Box::pin(slowing).await {
            return Step::Stop(reason, true);
        }
    }
    if let Some(now) = now {
        // Paid from when it was allowed: after a pause, the bucket is
        // already paid past `now`.
        state.throttle.took_messages(rates, work.messages(), now);
    }
    // A phase takes what is its own (boxed: once a connection is served,
    // it has none, and this costs nothing).
    let work = match &state.phase {
        None => work,
        Some(_) => match Box::pin(phase::take(&mut state.phase, protocol, session, work)).await {
            Taken::Serve(work) => work,
            Taken::Done => {
                tokio::task::coop::consume_budget().await;
                return Step::Continue;
            }
            Taken::Close(reason) => return Step::Stop(reason, true),
        },
    };
    let step = handle(protocol, session, work).await;
    // A client with much input lets the others on its thread run.
    tokio::task::coop::consume_budget().await;
    step
}

/// Most messages relayed as one delivery.
const MAX_BATCH: usize = 1024;

/// Holds a client over its rate limit back (messages, or `bytes`) until
/// it may go on; returns how long it was held. `Err`: it has been over its
/// limit for the whole grace period, and is disconnected.
async fn slow_down<P: Protocol>(
    protocol: &P,
    session: &Session,
    throttle: &mut Throttle,
    rates: &ClientRates,
    bytes: bool,
) -> Result<Duration, CloseReason> {
    let now = Instant::now();
    match throttle.hold(rates, bytes, now) {
        Verdict::CutOff(limit) => Err(CloseReason::RateLimited {
            limit,
            grace: rates.grace,
        }),
        Verdict::Pause {
            until,
            limit,
            first,
        } => {
            if first {
                tracing::info!(name = %session.name(), client = %session.id(), "slowing a client down: over {limit}");
                let then = match rates.grace {
                    grace if grace.is_zero() => {
                        "the server reads from you at that pace; nothing you sent is lost"
                            .to_owned()
                    }
                    grace => format!(
                        "keep it up for {} and you are disconnected (rate limit grace)",
                        crate::units::format_duration(grace)
                    ),
                };
                let notice = ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!("slowed down: you send faster than {limit}; {then}"),
                );
                // Nothing, for raw clients: their bytes are never mixed
                // with the server's words.
                let notice = protocol.error(&notice, &None);
                if !notice.is_empty() {
                    let _ = session.reply(notice);
                }
            }
            tokio::time::sleep_until(until).await;
            Ok(until - now)
        }
    }
}

/// What to do next with a client's input.
pub(super) enum Work {
    /// A run of messages to one room, in order: relayed as one delivery.
    Say(Option<RoomName>, Vec<Body>),
    /// Anything else, one at a time.
    One(Input),
}

impl Work {
    /// How many messages it is, for the rate limit.
    fn messages(&self) -> usize {
        match self {
            Work::Say(_, bodies) => bodies.len(),
            Work::One(_) => 1,
        }
    }
}

/// Takes the next piece of work from what has been read. Consecutive
/// messages to the same room (as one read of a fast sender holds many)
/// become one [`Work::Say`]; `held` keeps an input read past the run.
fn next_work<P: Protocol>(
    protocol: &P,
    decoder: &mut P::Decoder,
    buf: &mut BytesMut,
    eof: bool,
    held: &mut Option<Box<Input>>,
    most: usize,
) -> Option<Work> {
    let first = held
        .take()
        .map(|input| *input)
        .or_else(|| protocol.decode(decoder, buf, eof))?;
    let (room, body) = match first {
        Input::Request {
            request: Request::Say { room, body },
            tag: None,
        } => (room, body),
        other => return Some(Work::One(other)),
    };
    // A message of several lines (JSON text, a raw chunk) goes alone: text
    // clients are shown each of its lines with a prefix, and a batch of
    // many such would cost them more than its size suggests.
    let multiline = |body: &Body| memchr::memchr(b'\n', &body.bytes).is_some();
    if multiline(&body) {
        return Some(Work::Say(room, vec![body]));
    }
    let mut bodies = vec![body];
    while bodies.len() < most {
        match protocol.decode(decoder, buf, eof) {
            Some(Input::Request {
                request:
                    Request::Say {
                        room: next_room,
                        body,
                    },
                tag: None,
            }) if next_room == room && !multiline(&body) => bodies.push(body),
            Some(other) => {
                *held = Some(Box::new(other));
                break;
            }
            None => break,
        }
    }
    Some(Work::Say(room, bodies))
}

async fn handle<P: Protocol>(protocol: &P, session: &mut Session, work: Work) -> Step {
    let input = match work {
        Work::Say(room, bodies) => {
            let count = bodies.len();
            let answer = match session.say_all(room.as_ref(), bodies).await {
                Ok(()) => protocol.reply(&Reply::Sent, &None),
                Err(error) => protocol.error(&error.into(), &None),
            };
            // One answer (an ack, or the error) per message.
            for _ in 0..count {
                answer_client(session, answer.clone()).await;
            }
            return Step::Continue;
        }
        Work::One(input) => input,
    };
    let (outcome, tag) = match input {
        Input::Request { request, tag } => (apply(session, request).await, tag),
        Input::Invalid { error, tag } => (Err(error), tag),
        Input::Refused(why) => return Step::Stop(CloseReason::Refused(why.into()), true),
    };
    let answer = match &outcome {
        Ok(Reply::Quit) => return Step::Stop(CloseReason::Quit, true),
        Ok(reply) => protocol.reply(reply, &tag),
        Err(error) => {
            tracing::debug!(name = %session.name(), code = error.code, "request refused: {}", error.message);
            protocol.error(error, &tag)
        }
    };
    answer_client(session, answer).await;
    Step::Continue
}

/// Queues an answer for the client. A client that asks and never reads its
/// answers is throttled like any other slow reader.
pub(super) async fn answer_client(session: &Session, answer: Bytes) {
    if !answer.is_empty() && session.reply(answer) == Pushed::Congested {
        session.outbox().until_uncongested().await;
    }
}

/// When the next read must have come by, and which limit says so.
#[derive(Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) limit: Duration,
    pub(super) why: Why,
}

/// Which limit a deadline is.
#[derive(Clone, Copy)]
pub(super) enum Why {
    Idle,
    Line,
    Auth,
    Expired,
    /// A device's time to register.
    Register,
    /// A device's pause that ends a packet: not a limit.
    Gap,
    /// The end of a new client's arrival window: not a limit.
    Arrival,
}

impl Deadline {
    /// The earliest of: the idle timeout from now, the line timeout of a
    /// line started at `line.1`, and `others` (authentication's deadline,
    /// or when the credentials expire; a device's time to register; the
    /// gap that ends its packet).
    fn next(
        idle: Option<Duration>,
        line: Option<(Duration, Instant)>,
        others: [Option<Deadline>; 2],
    ) -> Option<Deadline> {
        let idle = idle.map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
            why: Why::Idle,
        });
        let line = line.map(|(limit, started)| Deadline {
            at: started + limit,
            limit,
            why: Why::Line,
        });
        [idle, line]
            .into_iter()
            .chain(others)
            .flatten()
            .min_by_key(|d| d.at)
    }

    fn reason(self) -> CloseReason {
        let timeout = self.limit;
        match self.why {
            Why::Idle => CloseReason::Idle { timeout },
            Why::Line => CloseReason::LineTimeout { timeout },
            Why::Auth => CloseReason::AuthTimeout { timeout },
            Why::Expired => CloseReason::CredentialsExpired,
            Why::Register => CloseReason::NotRegistered { grace: timeout },
            Why::Gap | Why::Arrival => unreachable!("not a limit"),
        }
    }
}

/// Reads what is available, `most` bytes at most, into `buf`, through the
/// thread's scratch buffer. Not an `async fn`: its wait is held by every
/// idle connection, and would hold its arguments twice.
/// `buf` grows by an eighth at a time beyond what it must hold, not by
/// doubling: an unfinished line costs little more than its length.
fn read_some<'b, R: AsyncRead + Unpin>(
    reader: &'b mut R,
    buf: &'b mut BytesMut,
    most: usize,
) -> impl std::future::Future<Output = std::io::Result<usize>> + 'b {
    std::future::poll_fn(move |cx| {
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read_buf = ReadBuf::new(&mut scratch[..most]);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut read_buf))?;
            let read = read_buf.filled();
            if buf.capacity() - buf.len() < read.len() {
                let needed = buf.len() + read.len();
                let mut grown = BytesMut::with_capacity(needed + needed / 8);
                grown.extend_from_slice(buf);
                *buf = grown;
            }
            buf.extend_from_slice(read);
            Poll::Ready(Ok(read.len()))
        })
    })
}
