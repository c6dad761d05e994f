//! The integration tests, in one test binary: each module is one file of
//! user stories, run against real servers (in process on port 0, or the
//! real binary) over real sockets. One binary builds and links once, where
//! a binary per file built every dependency's generic code once per file.
//!
//! `cargo test --test integration` runs them all; `cargo test --test
//! integration tls::` one file's.

mod common;

mod admin;
mod auth;
mod bench;
mod browser;
mod cli;
mod cluster;
mod cluster_history;
mod console;
mod dead_peers;
mod devices;
mod first_hour;
mod flow_control;
mod history;
mod history_on_disk;
mod hostile;
mod http;
mod limits;
mod modes;
mod passwd;
mod playground;
mod rate_limits;
mod redis;
mod relay;
mod service;
mod tls;
mod transcripts;
mod udp;
