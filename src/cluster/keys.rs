//! Where a cluster keeps its state in Redis, and the scripts that change
//! it: every step that touches more than one key is one Lua script, so
//! that it is atomic, and leases are timed by Redis' clock (`TIME`), never
//! by the nodes'.
//!
//! Under the prefix (`sb:` by default):
//!
//! | key                    | type   | what                                              |
//! |------------------------|--------|---------------------------------------------------|
//! | `nodes`                | zset   | live nodes, scored by lease expiry (Redis ms)      |
//! | `node:N`               | string | node N's lease: its epoch, with a TTL              |
//! | `node:N:clients`       | hash   | N's clients: id → name and rooms                  |
//! | `node:N:seq`           | string | the last change N wrote into `node:N:clients`      |
//! | `node:N:names`         | set    | the name keys N's clients hold                     |
//! | `name:K`               | string | who holds name key K: `epoch:client:node`          |
//! | `epoch`                | string | a counter: each node start takes the next value    |
//! | `device-prefixes`      | set    | the starts of device names (`dev-`), kept for devices on every node |
//! | `history:R`            | stream | room R's shared history: `0-SEQ` → from, at, framing, body |
//! | `history-meta:R`       | hash   | its `epoch` and `next` sequence number             |
//!
//! Channels: `events` (every node's changes), `room:R` (room R's messages,
//! subscribed while a node has a member there), `inbox:N` (direct
//! messages for N's clients).

use std::fmt::Write;

use crate::hub::RoomName;

/// The names of a cluster's keys and channels.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(':');
            }
            let _ = key.write_str(part);
        }
        key
    }

    pub(super) fn nodes(&self) -> String {
        self.key(&["nodes"])
    }

    pub(super) fn epoch(&self) -> String {
        self.key(&["epoch"])
    }

    pub(super) fn device_prefixes(&self) -> String {
        self.key(&["device-prefixes"])
    }

    pub(super) fn lease(&self, node: &str) -> String {
        self.key(&["node", node])
    }

    pub(super) fn clients(&self, node: &str) -> String {
        self.key(&["node", node, "clients"])
    }

    pub(super) fn seq(&self, node: &str) -> String {
        self.key(&["node", node, "seq"])
    }

    pub(super) fn names(&self, node: &str) -> String {
        self.key(&["node", node, "names"])
    }

    pub(super) fn name(&self, name_key: &str) -> String {
        self.key(&["name", name_key])
    }

    pub(super) fn events(&self) -> String {
        self.key(&["events"])
    }

    pub(super) fn room(&self, room: &RoomName) -> String {
        self.key(&["room", room.key()])
    }

    pub(super) fn inbox(&self, node: &str) -> String {
        self.key(&["inbox", node])
    }

    /// Room R's shared history: a stream, entry `0-SEQ` per message.
    pub(super) fn history(&self, room: &RoomName) -> String {
        self.key(&["history", room.key()])
    }

    /// Room R's shared history's epoch and next sequence number.
    pub(super) fn history_meta(&self, room: &RoomName) -> String {
        self.key(&["history-meta", room.key()])
    }
}

/// Appends a message's bodies to a room's shared history and publishes
/// them at their positions: KEYS meta, stream; ARGV epoch (for a history
/// that does not exist yet), most messages, now (ms), longest age (ms),
/// channel, frame, from, count, then each body's framing and bytes.
/// Entries are `0-SEQ` with fields `f` (from), `a` (at), `k` (framing),
/// `b` (body); the stream is capped at about the most messages
/// (`MAXLEN ~`), the oldest of it dropped past the age, and both keys
/// expire after the age without a message. The frame goes out with
/// `EPOCH-FIRST` after it. Returns the first body's sequence number.
pub(super) const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'next', 1)
end
local n = tonumber(ARGV[8])
local first = redis.call('HINCRBY', KEYS[1], 'next', n) - n
for i = 0, n - 1 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. (first + i),
    'f', ARGV[7], 'a', ARGV[3], 'k', ARGV[9 + 2 * i], 'b', ARGV[10 + 2 * i])
end
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local expired = nil
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 8)) do
  if tonumber(entry[2][4]) >= cutoff then break end
  expired = entry[1]
end
if expired then
  redis.call('XTRIM', KEYS[2], 'MINID', '0-' .. (tonumber(string.match(expired, '%d+$')) + 1))
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. epoch .. '-' .. first)
return first
"#;

/// Reads the newest of a room's shared history: KEYS meta, stream; ARGV
/// most messages, most bytes (bodies and names, and ARGV[3] more per
/// message, as a node's copy counts them), so that one read costs at most
/// what a copy may hold. Returns `{epoch, next, newest entries first}`, or
/// nil if the room has no shared history.
pub(super) const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return false end
local next = redis.call('HGET', KEYS[1], 'next')
local limit, most, overhead = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out, bytes, before = {}, 0, '+'
while #out < limit do
  local batch = redis.call('XREVRANGE', KEYS[2], before, '-', 'COUNT', math.min(256, limit - #out))
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    bytes = bytes + overhead + #entry[2][2] + #entry[2][8]
    if bytes > most then return {epoch, next, out} end
    out[#out + 1] = entry
  end
  before = '(' .. batch[#batch][1]
end
return {epoch, next, out}
"#;

/// Takes a node's lease if no live node has its name: KEYS lease, nodes;
/// ARGV epoch, lease ms, node. Returns 1, or 0 if the name is live.
pub(super) const REGISTER: &str = r#"
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return 1
"#;

/// Renews a node's lease and reaps the nodes whose leases ran out:
/// KEYS lease, nodes; ARGV epoch, lease ms, node, prefix. Returns
/// `{status, reaped, live}`: status 1, or 0 if this node was fenced (its
/// lease ran out, or Redis lost it), reaped the names of the nodes it
/// found dead (their state deleted), live a flat list of node, client
/// count.
pub(super) const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local status = 1
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  status = 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
end
local prefix = ARGV[4]
local reaped = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  if node ~= ARGV[3] or status == 0 then
    redis.call('ZREM', KEYS[2], node)
    local base = prefix .. 'node:' .. node
    for _, key in ipairs(redis.call('SMEMBERS', base .. ':names')) do
      local owner = redis.call('GET', key)
      if owner and string.match(owner, '^%d+:%d+:(.*)$') == node then
        redis.call('DEL', key)
      end
    end
    redis.call('DEL', base .. ':names', base .. ':clients', base .. ':seq')
    table.insert(reaped, node)
  end
end
local live = {}
for _, node in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  table.insert(live, node)
  table.insert(live, redis.call('HLEN', prefix .. 'node:' .. node .. ':clients'))
end
return {status, reaped, live}
"#;

/// Claims name keys for a client: KEYS the name keys, then the node's
/// names set and lease; ARGV owner (`epoch:client:node`), prefix, epoch.
/// Returns 1; 0 if a client of a live node holds one; -1 if this node's
/// own lease is gone (it must not claim until it has re-registered).
pub(super) const CLAIM: &str = r#"
local n = #KEYS - 2
if redis.call('GET', KEYS[n + 2]) ~= ARGV[3] then return -1 end
for i = 1, n do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then
    local epoch, node = string.match(owner, '^(%d+):%d+:(.*)$')
    if node and redis.call('GET', ARGV[2] .. 'node:' .. node) == epoch then
      return 0
    end
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1])
  redis.call('SADD', KEYS[n + 1], KEYS[i])
end
return 1
"#;

/// Releases name keys a client held: KEYS the name keys, then the node's
/// names set; ARGV owner. Keys someone else holds now are left alone.
pub(super) const RELEASE: &str = r#"
local n = #KEYS - 1
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[n + 1], KEYS[i])
  end
end
return 1
"#;

/// A node leaving: KEYS lease, nodes, names set, clients, seq; ARGV
/// epoch, node, events channel, goodbye frame. Frees its names, deletes
/// its state and publishes the goodbye, if the lease is still its own.
pub(super) const LEAVE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local owner = redis.call('GET', key)
  if owner and string.match(owner, '^(%d+):') == ARGV[1] then
    redis.call('DEL', key)
  end
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#;

/// Reads a node's picture of itself at one instant: KEYS clients, seq,
/// lease. Returns `{seq, epoch (nil if it has no lease), flat id/place
/// list}`.
pub(super) const PICTURE: &str = r#"
local epoch = redis.call('GET', KEYS[3])
return {tonumber(redis.call('GET', KEYS[2]) or '0'), epoch, redis.call('HGETALL', KEYS[1])}
"#;
