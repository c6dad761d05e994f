//! `switchboard device`: a fake DTU, for trying device listeners without
//! hardware. It connects (over TCP, or from one UDP port with `--udp`),
//! sends its registration packet, a heartbeat every so often, and
//! whatever comes on stdin as bytes; it prints what it receives as hex
//! and text, as a serial tool does.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchboard::config::Seconds;
use switchboard::device::{hex, Heartbeat};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The server's device listener: HOST:PORT, a bare PORT (this machine) or a bare HOST (port 12345).
    #[arg(value_parser = crate::server_address)]
    addr: String,

    /// The registration packet sent on connect: text (an IMEI, `pump-7`),
    /// or bytes as `hex:AA55002A`.
    #[arg(long, value_name = "VALUE")]
    register: Option<String>,

    /// Send the registration in front of every packet too, as DTUs set to
    /// "register with each packet" do.
    #[arg(long, requires = "register")]
    register_each: bool,

    /// The heartbeat packet, written as a listener's heartbeat= is: bytes
    /// as `hex:FE` (`hex:FEFE`), anything else as text (`ping`).
    #[arg(long, value_name = "PACKET")]
    heartbeat: Option<String>,

    /// How often to send the heartbeat.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    every: Seconds,

    /// Each line of stdin is hex bytes to send (`01 03 00 00 00 0A C5 CD`),
    /// rather than the bytes to send themselves.
    #[arg(long)]
    hex: bool,

    /// The listener is UDP (udp://): each packet is one datagram, all from
    /// one local port, as a cellular module sends them.
    #[arg(long)]
    udp: bool,
}

/// A registration packet: `hex:BYTES`, or text (`text:` may say so).
fn packet(value: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = if let Some(hex_bytes) = value.strip_prefix("hex:") {
        hex::parse(hex_bytes).map_err(anyhow::Error::msg)?
    } else {
        value
            .strip_prefix("text:")
            .unwrap_or(value)
            .as_bytes()
            .to_vec()
    };
    anyhow::ensure!(!bytes.is_empty(), "an empty packet is nothing to send");
    Ok(bytes)
}

/// One received chunk as rows of up to 16 bytes: hex, then the text.
fn show(bytes: &[u8]) -> String {
    let mut out = format!("< {} bytes\n", bytes.len());
    for row in bytes.chunks(16) {
        let text: String = row
            .iter()
            .map(|b| {
                if (0x20..0x7f).contains(b) {
                    *b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("  {:<47}  |{text}|\n", hex::format(row)));
    }
    out
}

pub async fn run(args: DeviceArgs) -> anyhow::Result<ExitCode> {
    let registration = args
        .register
        .as_deref()
        .map(packet)
        .transpose()
        .context("bad --register")?;
    let heartbeat = args
        .heartbeat
        .as_deref()
        .map(Heartbeat::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("bad --heartbeat")?;
    if let Some(meant) = heartbeat.as_ref().and_then(Heartbeat::hex_lookalike) {
        let given = args.heartbeat.as_deref().unwrap_or_default();
        eprintln!("switchboard: --heartbeat {given} sends the text {given:?}; for those bytes write --heartbeat {meant}");
    }
    let heartbeat = heartbeat.map(|h| h.bytes().to_vec());
    anyhow::ensure!(!args.every.0.is_zero(), "--every must be more than 0");
    let (packets, to_send) = mpsc::channel::<Vec<u8>>(64);
    let link = Link::open(&args.addr, args.udp, to_send).await?;
    if let Some(registration) = &registration {
        packets.send(registration.clone()).await.ok();
        eprintln!("* sent the registration ({})", hex::format(registration));
    }
    if let Some(heartbeat) = heartbeat {
        let (packets, every) = (packets.clone(), args.every.0);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                if packets.send(heartbeat.clone()).await.is_err() {
                    return;
                }
            }
        });
    }
    let prefix = registration
        .filter(|_| args.register_each)
        .unwrap_or_default();
    tokio::spawn(stdin_packets(packets, prefix, args.hex));

    link.show_what_comes(&args.addr).await
}

/// How the fake device reaches its listener; what it sends goes through
/// one writer task, so that each packet goes out whole.
enum Link {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    Udp(std::sync::Arc<UdpSocket>),
}

impl Link {
    async fn open(
        addr: &str,
        udp: bool,
        mut to_send: mpsc::Receiver<Vec<u8>>,
    ) -> anyhow::Result<Link> {
        if udp {
            let target = tokio::net::lookup_host(addr)
                .await
                .with_context(|| format!("cannot resolve {addr}"))?
                .next()
                .with_context(|| format!("{addr} has no address"))?;
            let local = if target.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let socket = std::sync::Arc::new(UdpSocket::bind(local).await?);
            socket.connect(target).await?;
            eprintln!(
                "* sending datagrams to {target} from {}",
                socket.local_addr()?
            );
            let sender = socket.clone();
            // A datagram that cannot go is reported, and the next tried.
            tokio::spawn(async move {
                while let Some(packet) = to_send.recv().await {
                    if let Err(error) = sender.send(&packet).await {
                        eprintln!("! a datagram was not sent: {error}");
                    }
                }
            });
            return Ok(Link::Udp(socket));
        }
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        eprintln!("* connected to {addr}");
        let (reader, mut writer) = stream.into_split();
        // A write that fails ends the writer; the read side then sees the
        // connection gone.
        tokio::spawn(async move {
            while let Some(packet) = to_send.recv().await {
                writer.write_all(&packet).await?;
            }
            std::io::Result::Ok(())
        });
        Ok(Link::Tcp(reader))
    }

    /// Prints what the server sends, until it closes the connection.
    async fn show_what_comes(mut self, addr: &str) -> anyhow::Result<ExitCode> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let received = match &mut self {
                Link::Tcp(reader) => match reader.read(&mut buf).await {
                    Ok(0) => {
                        eprintln!("* the server closed the connection");
                        return Ok(ExitCode::SUCCESS);
                    }
                    other => other,
                },
                // Over UDP nothing says that the server is gone: an ICMP
                // "port unreachable" for an earlier datagram is reported,
                // and the device goes on, as a module would.
                Link::Udp(socket) => match socket.recv(&mut buf).await {
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                        eprintln!("! nothing listens at {addr}: a datagram was refused");
                        continue;
                    }
                    other => other,
                },
            };
            match received {
                Ok(n) => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(show(&buf[..n]).as_bytes())?;
                    stdout.flush()?;
                }
                Err(error) => anyhow::bail!("reading from {addr}: {error}"),
            }
        }
    }
}

/// Sends stdin, as it comes (or line by line as hex), until it ends; a
/// device stays connected after that.
async fn stdin_packets(packets: mpsc::Sender<Vec<u8>>, prefix: Vec<u8>, as_hex: bool) {
    let mut stdin = BufReader::new(tokio::io::stdin());
    if as_hex {
        let mut lines = stdin.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match hex::parse(&line) {
                Ok(bytes) => {
                    if packets.send([&prefix[..], &bytes].concat()).await.is_err() {
                        return;
                    }
                }
                Err(why) => eprintln!("! not sent: {why}"),
            }
        }
        return;
    }
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = stdin.read(&mut buf).await {
        if packets
            .send([&prefix[..], &buf[..n]].concat())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_text_or_hex_as_written() {
        assert_eq!(packet("861234567890123").unwrap(), b"861234567890123");
        assert_eq!(packet("FE").unwrap(), b"FE");
        assert_eq!(packet("text:ping").unwrap(), b"ping");
        assert_eq!(packet("hex:AA55").unwrap(), [0xAA, 0x55]);
        assert!(packet("hex:GG").is_err());
    }

    #[test]
    fn what_comes_is_shown_as_hex_and_text() {
        assert_eq!(
            show(b"\x01\x03OK"),
            format!("< 4 bytes\n  {:<47}  |..OK|\n", "01 03 4F 4B")
        );
    }
}
