//! switchboard: a TCP message relay. Clients connect over plain TCP (text
//! lines, JSON lines, or raw bytes), get a name, join rooms, and whatever
//! one says reaches the others in its room, or one client directly.
//!
//! - [`address`]: addresses as people write them, for listeners and clients;
//! - [`auth`]: who a client is and where it may go (users file, tokens,
//!   JWTs, failed attempts per address, room permissions);
//! - [`hub`]: the routing core (clients, names, rooms, bounded queues and
//!   flow control), free of sockets and wire formats;
//! - [`protocol`]: the text, JSON and raw wire formats, and raw devices'
//!   (registration, heartbeats, framing: with [`device`]);
//! - [`Server`]: listeners, limits and shutdown around the hub;
//!   [`server::control`], the admin's query API on a running server; and
//!   the `--http` listener (`server::http`): the web console, admin API,
//!   metrics and WebSocket clients, which reads the server through that API;
//! - [`throttle`]: rate limits (messages and bytes per client, new
//!   connections per address);
//! - `transport`: the byte streams clients are served over (TCP, TLS,
//!   WebSocket) and the PROXY protocol header;
//! - `connection`: one client's connection, from its welcome to its
//!   goodbye (its phases, its read side and write side);
//! - [`Client`]: the client the CLI and tests use;
//! - [`Config`]: every setting, its default and why;
//! - `bench`: the load generator behind `switchboard bench` (the `bench`
//!   feature).
//!
//! The default feature, `cli`, builds the `switchboard` binary and the load
//! generator. A program that embeds the relay depends on the library alone,
//! `switchboard = { version = "0.1", default-features = false }`, and
//! compiles neither, nor the crates only they use (clap, reqwest,
//! indicatif, hdrhistogram).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
mod connection;
pub mod device;
pub mod hub;
mod moment;
pub mod protocol;
pub mod server;
pub mod storage;
mod sync;
#[cfg(test)]
mod testing;
pub mod throttle;
mod transport;
pub mod units;

pub use client::{AnyClient, Client, Goodbye, ServerLine};
pub use config::{Config, ListenerSpec, Mode};
pub use server::{Reloader, Server};
pub use transport::{ClientTls, SelfSigned};
