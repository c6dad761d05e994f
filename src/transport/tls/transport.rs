//! The server's side of a TLS connection (a `tls://`, `json+tls://` or
//! `raw+tls://` client, or one of `--http https://`), on rustls's
//! unbuffered API: neither rustls nor the connection keeps a buffer while
//! the client is idle.
//!
//! What the client sends is read into a per-thread buffer and decrypted
//! from there; only the part of a record a read cut short is kept (in
//! [`Session::received`]) until the rest comes. What the server sends is
//! encrypted into a per-thread buffer and written from there; only what
//! the socket would not take yet is kept. rustls's buffered connection
//! (tokio-rustls) kept a 4 KiB read buffer for the client's whole life:
//! 40 MB for 10,000 idle clients.
//!
//! Once a TLS 1.3 handshake is done, rustls hands the session's keys over
//! and its connection is dropped: the records are protected in
//! `records.rs` ([`Records`]), so an idle client keeps its keys and
//! rustls's kernel connection (about 1 KB), not rustls's connection
//! (about 3.3 KB). A TLS 1.2 session stays with rustls.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::records::{Opened, Records, MAX_FRAGMENT};
use super::HandshakeError;
use crate::hub::InputGauge;
use crate::transport::{write_now, Farewell, Transport};

/// Most read from the socket at a time: two whole records.
const READ_CHUNK: usize = 36 * 1024;

/// Most plaintext encrypted by one write: four whole records.
const WRITE_CHUNK: usize = 64 * 1024;

/// Most TLS bytes kept unprocessed: a handshake message may span records
/// (rustls takes one of up to 64 KiB), and a read may bring more behind
/// it. What is kept counts against the memory budget too.
const MAX_RECEIVED: usize = 64 * 1024 + READ_CHUNK;

/// Overhead of one record beyond its data, at most: header, explicit
/// nonce (TLS 1.2), content type (TLS 1.3) and tag.
const RECORD_OVERHEAD: usize = 5 + 8 + 1 + 16;

thread_local! {
    /// Where every read from a TLS client's socket lands.
    static RECEIVED: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
    /// What a vectored write's slices are gathered into, to be encrypted
    /// as few records.
    static GATHERED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where a write's records are encrypted to, before the socket.
    static ENCRYPTED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs the server side of a handshake, within `limit`. A client that
/// fails it is sent rustls's alert before its connection is closed.
/// Returns the session, and the certificate the client presented (with
/// a client CA, it must).
pub(crate) async fn handshake(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(TlsTransport, Option<Vec<u8>>), HandshakeError> {
    let extractable = config.enable_secret_extraction;
    let tls = UnbufferedServerConnection::new(config)
        .map_err(|error| HandshakeError::Failed(io::Error::other(error)))?;
    let mut session = Session {
        tcp,
        tls: Phase::Rustls(Box::new(tls)),
        received: Vec::new(),
        plain: Vec::new(),
        taken: 0,
        unsent: Vec::new(),
        sent: 0,
        ended: false,
        said_goodbye: false,
        failed: false,
        gauge: None,
    };
    match tokio::time::timeout(limit, poll_fn(|cx| session.poll_handshake(cx))).await {
        Ok(Ok(())) => {
            let tls = match session.tls {
                Phase::Rustls(tls) => tls,
                // A session is rustls's until its handshake is done.
                Phase::Records(_) => {
                    return Err(HandshakeError::Failed(io::Error::other(
                        "the TLS session was taken over during its handshake",
                    )))
                }
            };
            let certificate = tls
                .peer_certificates()
                .and_then(|chain| Some(chain.first()?.to_vec()));
            session.tls = match extractable {
                true => Phase::after_handshake(tls).map_err(|error| {
                    HandshakeError::Failed(io::Error::other(format!(
                        "cannot take the TLS session over from rustls: {error}"
                    )))
                })?,
                false => Phase::Rustls(tls),
            };
            let transport = TlsTransport {
                session: Mutex::new(session),
            };
            Ok((transport, certificate))
        }
        Ok(Err(error)) => {
            let _ =
                tokio::time::timeout(super::LINGER_TIME, poll_fn(|cx| session.poll_send(cx))).await;
            super::linger(session.tcp).await;
            Err(HandshakeError::Failed(error))
        }
        Err(_) => Err(HandshakeError::TimedOut(limit)),
    }
}

/// A client over TLS. rustls's state is one object for both directions,
/// so the two halves share it behind a lock that is held for one poll at
/// a time, never across an await: reading and writing are polled by the
/// same task, so the lock is never contended.
pub(crate) struct TlsTransport {
    session: Mutex<Session>,
}

impl TlsTransport {
    /// The session, through exclusive access: no lock taken.
    fn session(self: Pin<&mut Self>) -> &mut Session {
        let this = self.get_mut();
        this.session
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Who protects a session's records.
enum Phase {
    /// rustls: during the handshake, and for a TLS 1.2 session's life.
    Rustls(Box<UnbufferedServerConnection>),
    /// A TLS 1.3 session after its handshake.
    Records(Box<Records>),
}

impl Phase {
    /// What protects the records once the handshake is done.
    fn after_handshake(tls: Box<UnbufferedServerConnection>) -> Result<Phase, rustls::Error> {
        Ok(match Records::take_over(tls)? {
            Ok(records) => Phase::Records(Box::new(records)),
            Err(tls) => Phase::Rustls(tls),
        })
    }

    fn is_handshaking(&self) -> bool {
        match self {
            Phase::Rustls(tls) => tls.is_handshaking(),
            Phase::Records(_) => false,
        }
    }
}

/// One TLS connection: the socket, rustls's state and the few bytes in
/// flight between them.
struct Session {
    tcp: TcpStream,
    tls: Phase,
    /// TLS bytes received and not processed yet: a record the last read
    /// cut short. Unallocated between records.
    received: Vec<u8>,
    /// Decrypted data not read yet: `plain[taken..]`.
    plain: Vec<u8>,
    taken: usize,
    /// TLS bytes the socket has not taken yet: `unsent[sent..]`.
    unsent: Vec<u8>,
    sent: usize,
    /// The client's side ended: its close_notify, or the socket's end.
    ended: bool,
    /// Our close_notify went out (or could not be made).
    said_goodbye: bool,
    /// rustls failed: it is not asked again (it would process what
    /// failed again).
    failed: bool,
    /// Where the bytes held of what the client sent (`received` and
    /// `plain`) are reported: they count against the memory budget.
    gauge: Option<InputGauge>,
}

/// Where rustls stopped processing what was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It needs more from the client.
    Receive,
    /// Application data may be sent (the handshake is done).
    Traffic,
    /// Both sides sent close_notify.
    Closed,
}

/// What rustls is asked to encrypt once it may send application data.
enum Job<'a> {
    /// Nothing: only process what was received.
    None,
    /// Application data, into a buffer.
    Encrypt(&'a [u8], &'a mut Vec<u8>),
    /// The close_notify alert, into `unsent`.
    CloseNotify,
}

/// Runs rustls over `buf`, the bytes received and not processed yet,
/// until it needs more, doing `job` once it may send: decrypted data
/// joins `out.plain`, handshake records and alerts join `out.unsent`.
/// Returns how many bytes of `buf` it used up, and where it stopped. On
/// an error, the alert rustls makes of it joins `out.unsent`.
fn process(
    tls: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    out: &mut Opened<'_>,
    mut job: Job<'_>,
) -> (usize, Result<Stop, rustls::Error>) {
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(&mut buf[used..]);
        let stop = match state {
            Err(error) => {
                used += discard;
                queue_alert(tls, &mut buf[used..], out);
                return (used, Err(error));
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            out.plain.extend_from_slice(record.payload);
                        }
                        Err(error) => return (used + discard, Err(error)),
                    }
                }
                None
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(out.unsent, |room| encode.encode(room));
                None
            }
            // What was encoded is sent, in order, before anything after it.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                None
            }
            Ok(ConnectionState::PeerClosed) => {
                *out.ended = true;
                None
            }
            Ok(ConnectionState::Closed) => Some(Stop::Closed),
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                let done = match std::mem::replace(&mut job, Job::None) {
                    Job::None => Ok(()),
                    Job::Encrypt(data, into) => {
                        encrypt_into(into, data.len(), |room| traffic.encrypt(data, room))
                    }
                    Job::CloseNotify => {
                        encrypt_into(out.unsent, 64, |room| traffic.queue_close_notify(room))
                    }
                };
                if let Err(error) = done {
                    return (used + discard, Err(error));
                }
                Some(Stop::Traffic)
            }
            // Early data is not accepted (rustls's default): none comes.
            Ok(ConnectionState::ReadEarlyData(mut early)) => {
                while let Some(Ok(record)) = early.next_record() {
                    discard += record.discard;
                }
                None
            }
            Ok(ConnectionState::BlockedHandshake) | Ok(_) => Some(Stop::Receive),
        };
        used += discard;
        if let Some(stop) = stop {
            return (used, Ok(stop));
        }
    }
}

/// After rustls failed: the alert it queued for the client joins
/// `out.unsent`. `buf` is what was received after the failure. rustls is
/// asked only while it has something queued: asked again, it would
/// process the bytes that failed again (and alert twice).
fn queue_alert(tls: &mut UnbufferedServerConnection, buf: &mut [u8], out: &mut Opened<'_>) {
    let mut used = 0;
    while tls.wants_write() {
        let UnbufferedStatus { discard, state } = tls.process_tls_records(&mut buf[used..]);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(out.unsent, |room| encode.encode(room));
            }
            _ => return,
        }
        used += discard;
    }
}

/// Appends what `encode` writes to `into`, growing it as needed.
fn encode_into(
    into: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) {
    let start = into.len();
    let mut room = 512;
    loop {
        into.resize(start + room, 0);
        match encode(&mut into[start..]) {
            Ok(written) => {
                into.truncate(start + written);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(EncodeError::AlreadyEncoded) => {
                into.truncate(start);
                return;
            }
        }
    }
}

/// Appends the records `encrypt` writes of `len` bytes of data to `into`,
/// growing it as needed.
fn encrypt_into(
    into: &mut Vec<u8>,
    len: usize,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), rustls::Error> {
    let start = into.len();
    let mut room = len + (len / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
    loop {
        into.resize(start + room, 0);
        match encrypt(&mut into[start..]) {
            Ok(written) => {
                into.truncate(start + written);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            Err(error) => {
                into.truncate(start);
                return Err(rustls::Error::General(error.to_string()));
            }
        }
    }
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Processes `buf` as [`process`] does, with whatever protects the
/// session's records now.
fn process_phase(
    tls: &mut Phase,
    buf: &mut [u8],
    out: &mut Opened<'_>,
    job: Job<'_>,
) -> (usize, io::Result<Stop>) {
    match tls {
        Phase::Rustls(tls) => {
            let (used, stop) = process(tls, buf, out, job);
            (used, stop.map_err(invalid))
        }
        Phase::Records(records) => {
            let (used, opened) = records.open(buf, out);
            let done = opened.and_then(|()| match job {
                Job::None => Ok(()),
                Job::Encrypt(data, into) => records.seal_data(data, into),
                Job::CloseNotify => records.seal_close_notify(out.unsent),
            });
            (used, done.map(|()| Stop::Traffic).map_err(invalid))
        }
    }
}

impl Session {
    /// Runs `process` over what is kept of earlier reads.
    fn process_kept(&mut self, job: Job<'_>) -> io::Result<Stop> {
        self.process_with(None, job)
    }

    /// Runs `process` over what is kept of earlier reads followed by
    /// `fresh` (just read, in the thread's buffer), keeping what it leaves.
    fn process_with(&mut self, fresh: Option<&mut [u8]>, job: Job<'_>) -> io::Result<Stop> {
        if self.failed {
            return Err(invalid("the TLS session failed"));
        }
        let Session {
            tls,
            received,
            plain,
            unsent,
            ended,
            failed,
            ..
        } = self;
        let mut out = Opened {
            plain,
            unsent,
            ended,
        };
        let stop = match fresh {
            // Nothing kept: processed where it was read, the rest kept.
            Some(fresh) if received.is_empty() => {
                let (used, stop) = process_phase(tls, fresh, &mut out, job);
                received.extend_from_slice(&fresh[used..]);
                stop
            }
            fresh => {
                if let Some(fresh) = fresh {
                    received.extend_from_slice(fresh);
                }
                let (used, stop) = process_phase(tls, received, &mut out, job);
                received.drain(..used);
                if received.is_empty() {
                    *received = Vec::new();
                }
                stop
            }
        };
        *failed = stop.is_err();
        stop
    }

    /// Reads what the client sent and processes it, with what an earlier
    /// read left unfinished.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Stop>> {
        RECEIVED.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read_buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read_buf))?;
            let read = read_buf.filled().len();
            if read == 0 {
                // An end without close_notify: to the relay, an ordinary
                // close (a line or raw chunk already relayed is whole).
                self.ended = true;
                return Poll::Ready(Ok(Stop::Receive));
            }
            let stop = self.process_with(Some(&mut scratch[..read]), Job::None);
            self.report_held();
            let stop = stop?;
            if self.received.len() > MAX_RECEIVED {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "sent a TLS message over {} KiB, the most a client may",
                        MAX_RECEIVED / 1024
                    ),
                )));
            }
            Poll::Ready(Ok(stop))
        })
    }

    /// Writes what is waiting to be sent, as far as the socket takes it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.unsent.len() {
            let written =
                ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.unsent[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        if self.unsent.capacity() > 0 {
            self.unsent = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Answers the client's handshake until it is done.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // What rustls has to say goes out before it waits for more.
            ready!(self.poll_send(cx))?;
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during the handshake",
                )));
            }
            if ready!(self.poll_receive(cx))? == Stop::Closed {
                self.ended = true;
            }
        }
    }

    /// Moves decrypted data into `buf`; whether there was any.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let left = &self.plain[self.taken..];
        if left.is_empty() {
            return false;
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.taken += n;
        if self.taken == self.plain.len() {
            self.plain = Vec::new();
            self.taken = 0;
        }
        self.report_held();
        true
    }

    /// Reports the bytes held of what the client sent.
    fn report_held(&self) {
        if let Some(gauge) = &self.gauge {
            gauge.set(self.received.len() + self.plain.len() - self.taken);
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.take_plain(buf) || self.ended {
                return Poll::Ready(Ok(()));
            }
            let stop = ready!(self.poll_receive(cx))?;
            if stop == Stop::Closed {
                self.ended = true;
            }
            // What processing made to send (an alert, a key update) goes
            // now, as far as the socket takes it.
            if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
        }
    }

    /// Encrypts some of `slices` (whole records of up to
    /// [`WRITE_CHUNK`] bytes) and writes them, as far as the socket takes
    /// them now; the rest of the records is kept and goes first next time.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_send(cx))?;
        let mut slices = slices.iter().filter(|slice| !slice.is_empty()).peekable();
        let Some(first) = slices.next() else {
            return Poll::Ready(Ok(0));
        };
        if slices.peek().is_none() || first.len() >= WRITE_CHUNK {
            let data = &first[..first.len().min(WRITE_CHUNK)];
            return Poll::Ready(self.encrypt_and_send(cx, data).map(|()| data.len()));
        }
        // Several: gathered, to be sent as few records as they fill.
        GATHERED.with(|gathered| {
            let mut gathered = gathered.borrow_mut();
            gathered.clear();
            for slice in std::iter::once(first).chain(slices) {
                let room = WRITE_CHUNK - gathered.len();
                if room == 0 {
                    break;
                }
                gathered.extend_from_slice(&slice[..slice.len().min(room)]);
            }
            Poll::Ready(
                self.encrypt_and_send(cx, &gathered)
                    .map(|()| gathered.len()),
            )
        })
    }

    /// Encrypts `data` and writes it, as far as the socket takes it now.
    fn encrypt_and_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<()> {
        ENCRYPTED.with(|encrypted| {
            let mut encrypted = encrypted.borrow_mut();
            encrypted.clear();
            let stop = self.process_kept(Job::Encrypt(data, &mut encrypted))?;
            if stop != Stop::Traffic || self.said_goodbye {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the TLS session is closed",
                ));
            }
            // Straight to the socket, unless processing left something
            // to send before it.
            let at = match self.sent == self.unsent.len() {
                true => write_now(&mut self.tcp, cx, &encrypted)?,
                false => 0,
            };
            if at < encrypted.len() {
                self.unsent.extend_from_slice(&encrypted[at..]);
                if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                    return Err(error);
                }
            }
            Ok(())
        })
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    /// Sends close_notify, then ends our side of the socket.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        if !self.said_goodbye {
            self.said_goodbye = true;
            // After a failure there is none to make: the socket closes
            // all the same.
            let _ = self.process_kept(Job::CloseNotify);
            ready!(self.poll_send(cx))?;
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Transport for TlsTransport {
    type Reader<'a> = Half<'a>;
    type Writer<'a> = Half<'a>;
    fn halves(&mut self) -> (Half<'_>, Half<'_>) {
        (Half(&self.session), Half(&self.session))
    }

    fn gauge_input(&mut self, gauge: InputGauge) {
        Pin::new(self).session().gauge = Some(gauge);
    }
}

/// One side of a [`TlsTransport`].
pub(crate) struct Half<'a>(&'a Mutex<Session>);

impl Half<'_> {
    fn lock(&self) -> MutexGuard<'_, Session> {
        crate::sync::lock(self.0)
    }
}

impl AsyncRead for Half<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.lock().poll_read(cx, buf)
    }
}

impl AsyncWrite for Half<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.lock()
            .poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.lock().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_shutdown(cx)
    }
}

impl Farewell for Half<'_> {}

/// The whole connection as one stream, for HTTPS (hyper reads and writes
/// it from one task): no lock taken.
impl AsyncRead for TlsTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.session().poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.session()
            .poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.session().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::{ClientTls, SelfSigned};
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Client = tokio_rustls::client::TlsStream<TcpStream>;

    /// A server's side of a TLS connection over loopback, and its client.
    async fn pair() -> (TlsTransport, Client) {
        pair_with(ClientTls::insecure().unwrap()).await
    }

    /// The same, with `client`'s settings.
    async fn pair_with(client: ClientTls) -> (TlsTransport, Client) {
        let made = SelfSigned::generate(&["localhost".into()]).unwrap();
        let key = PrivateKeyDer::try_from(made.key_der.clone()).unwrap();
        let mut config = ServerConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert_der.clone()], key)
            .unwrap();
        // As the server's own settings have it.
        config.enable_secret_extraction = true;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            handshake(Arc::new(config), tcp, Duration::from_secs(10)).await
        };
        let (client, server) = tokio::join!(client.connect(&addr), server);
        let (server, _) = server.expect("the handshake");
        (server, client.expect("the handshake"))
    }

    /// A client offering only `versions` and, if given, only `suite`.
    fn client_offering(
        versions: &[&'static rustls::SupportedProtocolVersion],
        suite: Option<rustls::SupportedCipherSuite>,
    ) -> ClientTls {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suite) = suite {
            provider.cipher_suites = vec![suite];
        }
        let provider = Arc::new(provider);
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::super::AnyCertificate(provider)))
            .with_no_client_auth();
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// Whether the server protects the session's records itself (TLS 1.3
    /// after the handshake), not rustls.
    fn taken_over(server: &TlsTransport) -> bool {
        matches!(crate::sync::lock(&server.session).tls, Phase::Records(_))
    }

    /// `data` from the client to the server and back, whole.
    async fn round_trip(server: &mut TlsTransport, client: &mut Client, data: &[u8]) {
        let (mut reader, mut writer) = server.halves();
        client.write_all(data).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0; data.len()];
        within("the client's data", reader.read_exact(&mut got))
            .await
            .unwrap();
        assert!(got == data, "the client's data arrived changed");
        writer.write_all(data).await.unwrap();
        writer.flush().await.unwrap();
        let mut back = vec![0; data.len()];
        within("the server's data", client.read_exact(&mut back))
            .await
            .unwrap();
        assert!(back == data, "the server's data arrived changed");
    }

    async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), future)
            .await
            .unwrap_or_else(|_| panic!("{what} took over 20 s"))
    }

    /// Sixty kilobytes are four records each way, and a read of 36 KiB
    /// ends inside one: after them, the session holds no buffer at all.
    #[tokio::test]
    async fn a_session_holds_no_buffer_once_traffic_is_over() {
        let (mut server, mut client) = pair().await;
        let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        {
            let (mut reader, mut writer) = server.halves();
            client.write_all(&data).await.unwrap();
            let mut got = Vec::new();
            while got.len() < data.len() {
                let mut buf = [0u8; 8192];
                let read = within("the client's data", reader.read(&mut buf)).await;
                let read = read.unwrap();
                assert!(read > 0, "ended after {} bytes", got.len());
                got.extend_from_slice(&buf[..read]);
            }
            assert!(got == data, "the data arrived changed");
            writer.write_all(&data).await.unwrap();
            writer.flush().await.unwrap();
            let mut back = vec![0; data.len()];
            within("the server's data", client.read_exact(&mut back))
                .await
                .unwrap();
            assert!(back == data, "the data arrived changed");
        }
        // rustls's connection was 1,088 bytes of it (rustls 0.23.46): now
        // it is a pointer, to rustls's until the handshake is done, and
        // to the session's keys after it.
        let size = std::mem::size_of::<TlsTransport>();
        println!("a TLS transport: {size} bytes");
        assert!(size <= 176, "{size} bytes");
        assert!(taken_over(&server), "rustls still protects the records");
        let session = crate::sync::lock(&server.session);
        let held = [
            session.received.capacity(),
            session.plain.capacity(),
            session.unsent.capacity(),
        ];
        assert_eq!(held, [0, 0, 0], "received, plain, unsent");
    }

    /// What a session holds of what its client sent counts against the
    /// memory budget until it is read, as a WebSocket's unfinished frame
    /// does.
    #[tokio::test]
    async fn what_a_session_holds_of_its_clients_data_counts_until_read() {
        use crate::protocol::{Protocol, Text};
        let (mut server, mut client) = pair().await;
        let hub = crate::hub::Hub::new(crate::Config::local().hub);
        let session = hub.connect(None, &Text::ENCODINGS, crate::hub::ClientMeta::default());
        server.gauge_input(session.input_gauge());
        let data = vec![b'x'; 60_000];
        client.write_all(&data).await.unwrap();
        let (mut reader, _) = server.halves();
        let mut got = vec![0u8; 100];
        within("the client's data", reader.read_exact(&mut got))
            .await
            .unwrap();
        let held = hub.sweep().held;
        assert!(held > 0, "nothing counted while the data waits to be read");
        let mut rest = vec![0u8; data.len() - got.len()];
        within("the rest", reader.read_exact(&mut rest))
            .await
            .unwrap();
        assert_eq!(hub.sweep().held, 0, "still counted after it was read");
        drop(session);
    }

    /// A client that does not read fills its socket: the records it could
    /// not take are kept, the next write waits for them, and the client
    /// gets everything in order once it reads.
    #[tokio::test]
    async fn records_the_socket_cannot_take_yet_go_first_and_in_order() {
        let (mut server, mut client) = pair().await;
        let (_, mut writer) = server.halves();
        let chunk = |n: u32| format!("{n:08}\n").repeat(128).into_bytes();
        let mut sent = 0u32;
        loop {
            let data = chunk(sent);
            let poll =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut writer).poll_write(cx, &data)))
                    .await;
            match poll {
                Poll::Ready(written) => assert_eq!(written.unwrap(), data.len()),
                Poll::Pending => break,
            }
            sent += 1;
            assert!(sent < 200_000, "the socket never filled");
        }
        assert!(!writer.lock().unsent.is_empty(), "nothing was kept to send");
        println!("{sent} chunks written before the socket filled");
        let reading = async {
            for n in 0..sent {
                let mut got = vec![0; chunk(n).len()];
                client.read_exact(&mut got).await.unwrap();
                assert!(got == chunk(n), "chunk {n} arrived out of order or changed");
            }
        };
        let flushing = async { writer.flush().await.unwrap() };
        within("every chunk", async { tokio::join!(reading, flushing) }).await;
    }

    /// After a TLS 1.3 handshake the session keeps its keys, not rustls's
    /// connection: about 3 KB less for every idle client.
    #[tokio::test]
    async fn a_tls_1_3_session_keeps_its_keys_not_rustls() {
        let (mut server, mut client) = pair().await;
        assert!(taken_over(&server), "rustls still protects the records");
        round_trip(&mut server, &mut client, b"hello\n").await;
        // rustls's kernel connection is most of it (its QUIC state is
        // 496 bytes of that, which a TCP session never uses).
        let size = std::mem::size_of::<Records>();
        println!("a TLS 1.3 session's records: {size} bytes");
        assert!(size <= 768, "{size} bytes");
    }

    /// Each suite rustls offers for TLS 1.3 is protected the same.
    #[tokio::test]
    async fn every_tls_1_3_suite_carries_data_both_ways() {
        use rustls::crypto::ring::cipher_suite::*;
        for suite in [
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let client = client_offering(&[&rustls::version::TLS13], Some(suite));
            let (mut server, mut client) = pair_with(client).await;
            assert!(taken_over(&server), "{suite:?}: not taken over");
            let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
            round_trip(&mut server, &mut client, &data).await;
        }
    }

    /// A TLS 1.2 session stays with rustls, and works as before.
    #[tokio::test]
    async fn a_tls_1_2_session_stays_with_rustls() {
        let client = client_offering(&[&rustls::version::TLS12], None);
        let (mut server, mut client) = pair_with(client).await;
        assert!(!taken_over(&server), "a TLS 1.2 session was taken over");
        round_trip(&mut server, &mut client, b"hello over TLS 1.2\n").await;
    }

    /// A client that updates its keys (and asks the server to update its
    /// own, as rustls's clients do) is followed, each time.
    #[tokio::test]
    async fn a_client_that_updates_its_keys_is_followed() {
        let (mut server, mut client) = pair().await;
        for round in 0..5 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            let data = format!("after key update {round}\n").into_bytes();
            round_trip(&mut server, &mut client, &data).await;
        }
    }

    /// The server updates its own key before it has sealed as many records
    /// as the suite allows under one (2^24 for AES-GCM; three here).
    #[tokio::test]
    async fn the_server_updates_its_key_before_the_suites_limit() {
        let (mut server, mut client) = pair().await;
        {
            let mut session = crate::sync::lock(&server.session);
            let Phase::Records(records) = &mut session.tls else {
                panic!("not taken over");
            };
            records.set_limit(3);
        }
        let (_, mut writer) = server.halves();
        for n in 0..20 {
            writer
                .write_all(format!("record {n}\n").as_bytes())
                .await
                .unwrap();
            writer.flush().await.unwrap();
        }
        let expected: String = (0..20).map(|n| format!("record {n}\n")).collect();
        let mut got = vec![0; expected.len()];
        within("the records", client.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        let session = crate::sync::lock(&server.session);
        let Phase::Records(records) = &session.tls else {
            panic!("not taken over");
        };
        let sealed = records.sealed_under_key();
        assert!(sealed < 3, "{sealed} records sealed under one key");
    }

    /// A record that does not decrypt ends the session: the server says
    /// why (bad_record_mac) to the client, and reads nothing more.
    #[tokio::test]
    async fn a_forged_record_ends_the_session_with_bad_record_mac() {
        let (mut server, mut client) = pair().await;
        let mut forged = vec![23, 3, 3, 0, 40];
        forged.extend_from_slice(&[0x5a; 40]);
        client.get_mut().0.write_all(&forged).await.unwrap();
        let (mut reader, mut writer) = server.halves();
        let mut buf = [0u8; 64];
        let error = within("the server's read", reader.read(&mut buf))
            .await
            .expect_err("a forged record was read");
        assert!(error.to_string().contains("bad_record_mac"), "{error}");
        let _ = within("the alert", writer.shutdown()).await;
        let error = within("the client's read", client.read(&mut buf))
            .await
            .expect_err("the client was not told");
        assert!(
            error.to_string().contains("BadRecordMac"),
            "the client heard: {error}"
        );
    }

    /// A record longer than TLS allows is refused before it is waited for.
    #[tokio::test]
    async fn a_record_over_tls_size_is_refused_at_its_header() {
        let (mut server, mut client) = pair().await;
        client
            .get_mut()
            .0
            .write_all(&[23, 3, 3, 0xff, 0xff])
            .await
            .unwrap();
        let (mut reader, _) = server.halves();
        let mut buf = [0u8; 64];
        let error = within("the server's read", reader.read(&mut buf))
            .await
            .expect_err("an oversized record was waited for");
        assert!(error.to_string().contains("record_overflow"), "{error}");
    }

    /// close_notify from the client is the end of its data, as rustls
    /// had it.
    #[tokio::test]
    async fn close_notify_ends_the_clients_data() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let (mut reader, _) = server.halves();
        let mut got = Vec::new();
        within("the end", reader.read_to_end(&mut got))
            .await
            .unwrap();
        assert_eq!(got, b"last words");
    }

    /// Whatever a client seals after the handshake (any inner type, any
    /// content, padding), the server neither panics nor hangs: its read
    /// ends, in an error or at the client's end, and records of data
    /// arrive whole and in order.
    #[test]
    fn whatever_a_client_seals_ends_in_its_data_an_error_or_the_end() {
        use super::super::records::ClientRecords;
        use proptest::prelude::*;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Mostly data, so that many cases are data alone, checked whole.
        let inner_type =
            prop_oneof![6 => Just(23u8), 1 => Just(21), 1 => Just(22), 1 => any::<u8>()];
        let record = (
            inner_type,
            prop::collection::vec(any::<u8>(), 0..64),
            0usize..64,
        );
        let records = prop::collection::vec(record, 1..6);
        proptest!(ProptestConfig::with_cases(48), |(records in records)| {
            runtime.block_on(async {
                let mut config = (*client_offering(&[&rustls::version::TLS13], None).config).clone();
                config.enable_secret_extraction = true;
                let client = ClientTls { config: Arc::new(config) };
                let (mut server, client) = pair_with(client).await;
                let (mut tcp, connection) = client.into_inner();
                let secrets = connection.dangerous_extract_secrets().unwrap();
                let mut sealer = ClientRecords::new(secrets.tx);
                let (mut data, mut only_data) = (Vec::new(), true);
                for (typ, content, padding) in &records {
                    tcp.write_all(&sealer.seal(*typ, content, *padding)).await.unwrap();
                    only_data &= *typ == 23;
                    if only_data {
                        data.extend_from_slice(content);
                    }
                }
                tcp.shutdown().await.unwrap();
                let (mut reader, _) = server.halves();
                let mut got = Vec::new();
                let read = within("the server's read", reader.read_to_end(&mut got)).await;
                if only_data {
                    assert!(read.is_ok(), "{read:?}");
                    assert!(got == data, "the data arrived changed");
                }
            });
        });
    }
}
