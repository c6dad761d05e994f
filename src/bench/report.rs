//! What a bench run measured, for people (a table) and scripts (JSON).

use std::fmt;

use serde::Serialize;

use super::tally::Tally;
use super::{Options, Scenario};

/// The figures of one bench run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// fanout, chat or connect.
    pub scenario: String,
    /// The adapter used: text, raw, line, nats, redis, ws; `+tls` over TLS.
    pub protocol: String,
    /// The relay's address.
    pub addr: String,
    /// Receivers (fanout) or clients (chat, connect).
    pub clients: usize,
    /// Publishers.
    pub publishers: usize,
    /// Payload bytes.
    pub size: usize,
    /// Seconds measured.
    pub duration_s: f64,
    /// Seconds of warm-up before measuring.
    pub warmup_s: f64,
    /// Messages per second per client (chat).
    pub rate: Option<f64>,
    /// Messages published over the whole run.
    pub published: u64,
    /// Messages published per second while measuring.
    pub published_per_s: f64,
    /// Messages received over the whole run, all receivers together.
    pub delivered: u64,
    /// Messages received per second while measuring.
    pub deliveries_per_s: f64,
    /// Latency of messages sent while measuring, in microseconds.
    pub latency_us: Option<Latency>,
    /// Messages that never reached a receiver that should have had them.
    pub lost: u64,
    /// Messages a receiver got more than once.
    pub duplicated: u64,
    /// Messages a receiver got after a later one from the same publisher.
    pub reordered: u64,
    /// Received lines holding a payload that could not be read (torn by the relay).
    pub garbled: u64,
    /// Loss, duplication and reordering per publisher.
    pub per_publisher: Vec<PublisherFigures>,
    /// Memory of the relay (connect).
    pub memory: Option<Memory>,
    /// Clients that heard a broadcast sent to all of them (connect).
    pub heard_broadcast: Option<usize>,
    /// Connections opened (and set up: TLS handshake, name, room) per
    /// second, 64 at a time (connect).
    pub connects_per_s: Option<f64>,
    /// Receivers that heard the room before measuring began (fanout, chat).
    pub heard_room: Option<usize>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Messages measured.
    pub samples: u64,
}

/// One publisher's messages as its receivers saw them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PublisherFigures {
    /// Publisher id.
    pub id: u32,
    /// Messages it sent.
    pub sent: u64,
    /// Deliveries missing, all receivers together.
    pub lost: u64,
    /// Deliveries repeated.
    pub duplicated: u64,
    /// Deliveries out of order.
    pub reordered: u64,
}

/// The relay's memory around the connect scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// The relay's process.
    pub pid: u32,
    /// Resident bytes before the clients connected.
    pub rss_before: u64,
    /// Resident bytes with all clients connected.
    pub rss_after: u64,
    /// (after - before) / clients.
    pub bytes_per_client: f64,
}

impl Report {
    fn base(options: &Options) -> Report {
        Report {
            scenario: options.scenario.to_string(),
            protocol: match options.tls {
                Some(_) => format!("{}+tls", options.adapter),
                None => options.adapter.to_string(),
            },
            addr: options.addr.clone(),
            clients: options.clients,
            publishers: match options.scenario {
                Scenario::Fanout => options.publishers,
                Scenario::Chat => options.clients,
                Scenario::Connect => 0,
            },
            size: options.size,
            duration_s: options.duration.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            rate: (options.scenario == Scenario::Chat).then_some(options.rate),
            published: 0,
            published_per_s: 0.0,
            delivered: 0,
            deliveries_per_s: 0.0,
            latency_us: None,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            garbled: 0,
            per_publisher: Vec::new(),
            memory: None,
            heard_broadcast: None,
            connects_per_s: None,
            heard_room: None,
        }
    }

    /// Figures of a fanout or chat run: `sent` per publisher, how many of
    /// those were sent while measuring, and each receiver's own publisher
    /// id (chat) with its tally.
    pub fn from_traffic(
        options: &Options,
        sent: &[u64],
        sent_in_window: u64,
        tallies: &[(Option<u32>, Tally)],
        chat: bool,
    ) -> Report {
        let mut report = Report::base(options);
        let seconds = options.duration.as_secs_f64();
        let mut per_publisher: Vec<PublisherFigures> = sent
            .iter()
            .enumerate()
            .map(|(id, &sent)| PublisherFigures {
                id: id as u32,
                sent,
                lost: 0,
                duplicated: 0,
                reordered: 0,
            })
            .collect();
        let mut merged = Tally::new(0);
        for (own, tally) in tallies {
            merged.merge_counts(tally);
            for (figures, sequence) in per_publisher.iter_mut().zip(&tally.sequences) {
                if chat && *own == Some(figures.id) {
                    continue;
                }
                figures.lost += sequence.lost(figures.sent);
                figures.duplicated += sequence.duplicated;
                figures.reordered += sequence.reordered;
                report.delivered += sequence.unique + sequence.duplicated;
            }
        }
        report.published = sent.iter().sum();
        report.published_per_s = sent_in_window as f64 / seconds;
        report.deliveries_per_s = merged.deliveries_in_window as f64 / seconds;
        report.garbled = merged.garbled;
        report.lost = per_publisher.iter().map(|p| p.lost).sum();
        report.duplicated = per_publisher.iter().map(|p| p.duplicated).sum();
        report.reordered = per_publisher.iter().map(|p| p.reordered).sum();
        report.per_publisher = per_publisher;
        let h = &merged.latency;
        if !h.is_empty() {
            let us = |ns: u64| ns as f64 / 1000.0;
            report.latency_us = Some(Latency {
                p50: us(h.value_at_quantile(0.5)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
                samples: h.len(),
            });
        }
        report
    }

    /// Figures of a connect run.
    pub fn from_connect(
        options: &Options,
        pid: Option<u32>,
        before: Option<u64>,
        after: Option<u64>,
        heard: usize,
        opening: std::time::Duration,
    ) -> Report {
        let mut report = Report::base(options);
        report.warmup_s = 0.0;
        report.heard_broadcast = Some(heard);
        report.connects_per_s = Some(options.clients as f64 / opening.as_secs_f64().max(1e-9));
        if let (Some(pid), Some(before), Some(after)) = (pid, before, after) {
            report.memory = Some(Memory {
                pid,
                rss_before: before,
                rss_after: after,
                bytes_per_client: after.saturating_sub(before) as f64 / options.clients as f64,
            });
        }
        report
    }
}

/// Formats a count with thousands separators.
fn count(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "switchboard bench: {} over {} at {}",
            self.scenario, self.protocol, self.addr
        )?;
        if self.scenario == "connect" {
            writeln!(f, "  clients            {}", count(self.clients as f64))?;
            if let Some(heard) = self.heard_broadcast {
                writeln!(
                    f,
                    "  heard a broadcast  {} of {}",
                    count(heard as f64),
                    count(self.clients as f64)
                )?;
            }
            if let Some(rate) = self.connects_per_s {
                writeln!(f, "  connected          {} a second", count(rate))?;
            }
            match &self.memory {
                Some(m) => writeln!(
                    f,
                    "  server memory      {} KiB before, {} KiB after: {} bytes per client (pid {})",
                    count((m.rss_before / 1024) as f64),
                    count((m.rss_after / 1024) as f64),
                    count(m.bytes_per_client),
                    m.pid
                )?,
                None => writeln!(f, "  server memory      unknown (not on this machine? give --server-pid)")?,
            }
            return Ok(());
        }
        let who = if self.scenario == "chat" {
            "clients"
        } else {
            "receivers"
        };
        write!(
            f,
            "  {who} {}, publishers {}, {} B messages, {}s measured after {}s warm-up",
            self.clients, self.publishers, self.size, self.duration_s, self.warmup_s
        )?;
        match self.rate {
            Some(rate) => writeln!(f, ", {rate} msg/s per client")?,
            None => writeln!(f)?,
        }
        writeln!(
            f,
            "  published   {:>15} msgs   {:>12} msg/s",
            count(self.published as f64),
            count(self.published_per_s)
        )?;
        writeln!(
            f,
            "  delivered   {:>15} msgs   {:>12} deliveries/s",
            count(self.delivered as f64),
            count(self.deliveries_per_s)
        )?;
        match &self.latency_us {
            Some(l) => writeln!(
                f,
                "  latency     p50 {:.0} µs   p99 {:.0} µs   p99.9 {:.0} µs   max {:.0} µs   ({} samples)",
                l.p50,
                l.p99,
                l.p999,
                l.max,
                count(l.samples as f64)
            )?,
            None => writeln!(f, "  latency     no messages measured")?,
        }
        writeln!(
            f,
            "  lost {}   duplicated {}   reordered {}   garbled {}",
            count(self.lost as f64),
            count(self.duplicated as f64),
            count(self.reordered as f64),
            count(self.garbled as f64)
        )?;
        for p in self
            .per_publisher
            .iter()
            .filter(|p| p.lost + p.duplicated + p.reordered > 0)
            .take(10)
        {
            writeln!(
                f,
                "    publisher {}: sent {}, lost {}, duplicated {}, reordered {}",
                p.id,
                count(p.sent as f64),
                count(p.lost as f64),
                count(p.duplicated as f64),
                count(p.reordered as f64)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1234567.0), "1,234,567");
    }
}
