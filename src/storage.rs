//! `--history-dir`: rooms' histories on disk, so that a restart keeps
//! what rooms said, their positions and their epochs, and a client
//! resuming across the restart gets exactly what it missed.
//!
//! The store is [redb]: one file (`history.redb` in the directory),
//! transactions that are atomic and survive a crash at any point, no
//! background threads and no C. An LSM store such as fjall writes faster
//! under heavy load, but brings compaction threads and a dozen crates,
//! and the load here is small: one commit per `--history-sync` interval.
//!
//! Memory stays where clients read from: the hub keeps each room's
//! history in memory as without `--history-dir`, and the [`Saver`], on a
//! thread of its own, writes down what changed, in one transaction per
//! interval. A `kill -9` loses what was said since the last commit: at
//! most the interval (1s by default, Redis's `appendfsync everysec`).
//! The disk holds what memory holds, no more: what memory trims or
//! evicts is deleted at the next commit.
//!
//! [redb]: https://docs.rs/redb

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::hub::{Body, Framing, Hub, Kept, Name, Offset, Restored, RoomName, Saved, Unsaved};

/// The file in `--history-dir`.
pub const FILE: &str = "history.redb";

/// The layout of the file; another is refused rather than misread.
const FORMAT: u64 = 1;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Room → (epoch, the sequence number its next message gets).
const ROOMS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("rooms");
/// (room, sequence number) → the message, as [`encode`] writes it.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// redb's page cache: the hub reads from memory, the store only at start.
const CACHE_BYTES: usize = 4 << 20;

/// The history directory, opened: the store, and what it had.
pub struct HistoryDir {
    path: PathBuf,
    db: Database,
    saved: HashMap<RoomName, Saved>,
}

impl std::fmt::Debug for HistoryDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryDir")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HistoryDir {
    /// Opens (or creates) the store in `dir` and reads every room's
    /// history from it. Fails if another server has it open.
    pub fn open(dir: &Path) -> anyhow::Result<(HistoryDir, Vec<Restored>)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the history directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => anyhow::bail!(
                "cannot open the history store {}: another server is using it (one server per --history-dir)",
                path.display()
            ),
            Err(err) => {
                return Err(err).with_context(|| {
                    format!(
                        "cannot open the history store {} (move it away to start with no history)",
                        path.display()
                    )
                })
            }
        };
        let mut dir = HistoryDir {
            path,
            db,
            saved: HashMap::new(),
        };
        dir.check_format()?;
        let restored = dir
            .read()
            .with_context(|| format!("cannot read the history store {}", dir.path.display()))?;
        for room in &restored {
            dir.saved.insert(
                room.room.clone(),
                Saved {
                    epoch: room.epoch,
                    through: room.next.saturating_sub(1),
                },
            );
        }
        Ok((dir, restored))
    }

    /// Writes the format (and makes the tables) on a new file; refuses a
    /// file of another format.
    fn check_format(&self) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(ROOMS)?;
        txn.open_table(MESSAGES)?;
        {
            let mut meta = txn.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT)?;
                }
                Some(FORMAT) => {}
                Some(other) => anyhow::bail!(
                    "the history store {} is of format {other}, which this switchboard ({}) does not read (it reads {FORMAT})",
                    self.path.display(),
                    env!("CARGO_PKG_VERSION")
                ),
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn read(&self) -> anyhow::Result<Vec<Restored>> {
        let txn = self.db.begin_read()?;
        let rooms = txn.open_table(ROOMS)?;
        let messages = txn.open_table(MESSAGES)?;
        let mut restored = Vec::new();
        let mut skipped = 0;
        for entry in rooms.iter()? {
            let (room, state) = entry?;
            let (epoch, next) = state.value();
            let Ok(name) = RoomName::new(room.value()) else {
                skipped += 1;
                continue;
            };
            let mut kept = Vec::new();
            for entry in messages.range((room.value(), 0)..=(room.value(), u64::MAX))? {
                let (key, value) = entry?;
                let seq = key.value().1;
                match decode(Offset { epoch, seq }, value.value()) {
                    Some(message) => kept.push(message),
                    None => skipped += 1,
                }
            }
            restored.push(Restored {
                room: name,
                epoch,
                next,
                kept,
            });
        }
        if skipped > 0 {
            warn!(
                skipped,
                store = %self.path.display(),
                "history store: skipped records that do not read back"
            );
        }
        Ok(restored)
    }

    /// Starts saving the hub's histories, every `interval` at most.
    pub fn start(self, hub: Hub, interval: Duration) -> anyhow::Result<Saver> {
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.path.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-history".into())
            .spawn({
                let hub = hub.clone();
                let stats = stats.clone();
                let stop = stop.clone();
                move || self.run(&hub, interval, &stats, &stop)
            })
            .context("cannot start the thread that saves history")?;
        Ok(Saver {
            path,
            interval,
            hub,
            stats,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The saver's loop: wait for a change, wait out the interval since
    /// the last commit, write everything that changed in one commit.
    fn run(mut self, hub: &Hub, interval: Duration, stats: &Stats, stop: &AtomicBool) {
        let mut last = Instant::now();
        let mut failing = false;
        loop {
            let stopping = stop.load(Ordering::Acquire);
            if !stopping {
                if !hub.wait_for_unsaved_history(Duration::from_secs(1)) {
                    continue;
                }
                let due = last + interval;
                while !stop.load(Ordering::Acquire) && Instant::now() < due {
                    std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
                }
            }
            let changes = hub.unsaved_history(&self.saved);
            if !changes.is_empty() {
                let started = Instant::now();
                match self.write(&changes) {
                    Ok(messages) => {
                        stats.record(messages, started.elapsed());
                        if failing {
                            info!(store = %self.path.display(), "history store: saving again");
                            failing = false;
                        }
                    }
                    Err(err) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        if !failing {
                            error!(store = %self.path.display(), error = %format!("{err:#}"),
                                "history store: cannot save; history stays in memory and is saved when the store works again");
                            failing = true;
                        }
                        hub.history_unsaved_again(changes.into_iter().map(|c| match c {
                            Unsaved::Kept { room, .. } | Unsaved::Forgotten(room) => room,
                        }));
                    }
                }
            }
            last = Instant::now();
            if stopping {
                return;
            }
        }
    }

    /// Writes `changes` in one durable transaction; the messages written.
    fn write(&mut self, changes: &[Unsaved]) -> anyhow::Result<u64> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut written = 0;
        let mut saved = Vec::with_capacity(changes.len());
        {
            let mut rooms = txn.open_table(ROOMS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            for change in changes {
                match change {
                    Unsaved::Forgotten(room) => {
                        let name = room.as_str();
                        rooms.remove(name)?;
                        messages.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
                        saved.push((room, None));
                    }
                    Unsaved::Kept {
                        room,
                        epoch,
                        next,
                        first,
                        kept,
                    } => {
                        let name = room.as_str();
                        let same = self.saved.get(room).is_some_and(|s| s.epoch == *epoch);
                        if same {
                            messages.retain_in((name, 0)..(name, *first), |_, _| false)?;
                        } else {
                            messages.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
                        }
                        let mut value = Vec::new();
                        for message in kept {
                            value.clear();
                            encode(message, &mut value);
                            messages.insert((name, message.offset.seq), value.as_slice())?;
                            written += 1;
                        }
                        rooms.insert(name, (*epoch, *next))?;
                        saved.push((
                            room,
                            Some(Saved {
                                epoch: *epoch,
                                through: next.saturating_sub(1),
                            }),
                        ));
                    }
                }
            }
        }
        txn.commit()?;
        for (room, state) in saved {
            match state {
                Some(state) => self.saved.insert(room.clone(), state),
                None => self.saved.remove(room),
            };
        }
        Ok(written)
    }
}

/// A kept message on disk: when (Unix ms, 8 bytes), framing (1), the
/// sender's name (2-byte length, UTF-8), the body.
fn encode(kept: &Kept, out: &mut Vec<u8>) {
    let from = kept.from.as_str().as_bytes();
    out.extend_from_slice(&kept.at.to_le_bytes());
    out.push(match kept.body.framing {
        Framing::Line => 0,
        Framing::Chunk => 1,
    });
    out.extend_from_slice(&(from.len() as u16).to_le_bytes());
    out.extend_from_slice(from);
    out.extend_from_slice(&kept.body.bytes);
}

fn decode(offset: Offset, value: &[u8]) -> Option<Kept> {
    let at = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let framing = match value.get(8)? {
        0 => Framing::Line,
        1 => Framing::Chunk,
        _ => return None,
    };
    let len = u16::from_le_bytes(value.get(9..11)?.try_into().ok()?) as usize;
    let from = Name::from_bytes(value.get(11..11 + len)?).ok()?;
    let body = Bytes::copy_from_slice(value.get(11 + len..)?);
    Some(Kept {
        offset,
        at,
        from,
        body: Body {
            bytes: body,
            framing,
        },
    })
}

/// What the saver did, for the stats and metrics.
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    last_commit_micros: AtomicU64,
}

impl Stats {
    fn record(&self, messages: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.last_commit_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Saves the hub's histories to the history directory until closed.
#[derive(Debug)]
pub struct Saver {
    path: PathBuf,
    interval: Duration,
    hub: Hub,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The history store as the stats show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// The store's file.
    pub path: String,
    /// Its size on disk.
    pub bytes: u64,
    /// How often changes are committed, in milliseconds.
    pub sync_interval_ms: u64,
    /// Messages written since the start.
    pub saved: u64,
    /// Commits since the start.
    pub commits: u64,
    /// How long the last commit took, in microseconds (fsync included).
    pub last_commit_us: u64,
    /// Commits that failed (a full disk): history stays in memory and is
    /// saved when the store works again.
    pub errors: u64,
    /// Rooms whose changes wait for the next commit.
    pub unsaved_rooms: usize,
}

impl Saver {
    /// What the saver has done.
    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            path: self.path.display().to_string(),
            bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            sync_interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            saved: self.stats.messages.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
            last_commit_us: self.stats.last_commit_micros.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            unsaved_rooms: self.hub.unsaved_rooms(),
        }
    }

    /// Saves what is left and stops: at shutdown, after the clients are
    /// gone. Blocks until the last commit is done.
    pub fn close(&self) {
        let Some(thread) = crate::sync::lock(&self.thread).take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        thread.thread().unpark();
        self.hub.wake_history_saver();
        if thread.join().is_err() {
            error!(store = %self.path.display(), "history store: the saving thread panicked");
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, from: &str, body: &[u8], framing: Framing) -> Kept {
        Kept {
            offset: Offset { epoch: 7, seq },
            at: 1_700_000_000_123,
            from: Name::new(from).unwrap(),
            body: Body {
                bytes: Bytes::copy_from_slice(body),
                framing,
            },
        }
    }

    #[test]
    fn a_kept_message_reads_back_as_it_was_written() {
        for kept in [
            message(1, "alice", b"disk full", Framing::Line),
            message(2, "dtu-7", &[0, 0xff, 0x0d, 0x0a], Framing::Chunk),
            message(3, "bob", b"", Framing::Line),
        ] {
            let mut value = Vec::new();
            encode(&kept, &mut value);
            assert_eq!(decode(kept.offset, &value), Some(kept.clone()));
            // Cut short anywhere in its header, it is refused, not misread.
            for cut in 0..11 + kept.from.as_str().len() {
                assert_eq!(decode(kept.offset, &value[..cut]), None, "cut at {cut}");
            }
        }
    }
}
