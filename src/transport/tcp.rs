//! Plain TCP: the stream is the socket.

use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::{Farewell, Transport};

/// TCP splits for free by borrowing; `into_split` would allocate per client.
impl Transport for TcpStream {
    type Reader<'a> = ReadHalf<'a>;
    type Writer<'a> = WriteHalf<'a>;
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }
}

impl Farewell for WriteHalf<'_> {}
