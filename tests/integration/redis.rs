//! The Redis the cluster's stories join their nodes through: a real
//! `redis-server` (as `.ci/run` installs it) per test, on a loopback port
//! of its own, that a test can stop, restart, pause and ask things of.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::{within, ReservedPort};

/// A `redis-server` of its own, on a loopback port of its own, keeping
/// nothing on disk.
pub(crate) struct Redis {
    child: Option<Child>,
    pub(crate) port: u16,
    /// Holds `port` for this Redis while it is down to be restarted.
    reserved: Option<ReservedPort>,
    password: Option<&'static str>,
    /// Over TLS only, with this certificate and key.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Redis {
    /// A Redis that speaks only TLS, with this certificate and key.
    pub(crate) async fn start_over_tls(cert: std::path::PathBuf, key: std::path::PathBuf) -> Redis {
        let mut redis = Redis {
            child: None,
            port: 0,
            reserved: None,
            password: None,
            tls: Some((cert, key)),
        };
        redis.start_on_a_free_port().await;
        redis
    }

    pub(crate) async fn start() -> Redis {
        Redis::start_with(None).await
    }

    /// A Redis that asks for `password`, if given.
    pub(crate) async fn start_with(password: Option<&'static str>) -> Redis {
        let mut redis = Redis {
            child: None,
            port: 0,
            reserved: None,
            password,
            tls: None,
        };
        redis.start_on_a_free_port().await;
        redis
    }

    /// Starts on a port of its own (see [`reserve_port`]); if something
    /// outside this run holds it, another is tried.
    pub(crate) async fn start_on_a_free_port(&mut self) {
        for _ in 0..10 {
            let reserved = ReservedPort::new();
            self.port = reserved.port();
            self.reserved = Some(reserved);
            if self.try_start().await {
                return;
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// Starts (again) a Redis on this port, empty.
    pub(crate) async fn restart(&mut self) {
        assert!(
            self.try_start().await,
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Starts a Redis on this port; false if it exits first (the port is
    /// taken).
    pub(crate) async fn try_start(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(
                self.password
                    .map(|p| ["--requirepass", p])
                    .into_iter()
                    .flatten(),
            )
            .args(self.tls_args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        within("redis-server to answer", async {
            while self.command(&["PING"]).await.as_deref() != Some("PONG") {
                let child = self.child.as_mut().expect("started");
                if child.try_wait().expect("redis-server's status").is_some() {
                    self.child = None;
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        })
        .await
    }

    /// Kills the Redis at once (SIGKILL).
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// The arguments of a TLS-only redis-server (its plain port off).
    pub(crate) fn tls_args(&self) -> Vec<String> {
        match &self.tls {
            Some((cert, key)) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            None => Vec::new(),
        }
    }

    pub(crate) fn url(&self) -> String {
        if self.tls.is_some() {
            return format!("rediss://127.0.0.1:{}", self.port);
        }
        match self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Runs one command; its reply as redis-cli prints it, `None` if
    /// Redis does not answer.
    pub(crate) async fn command(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(
                self.tls
                    .as_ref()
                    .map(|(cert, _)| {
                        vec![
                            "--tls".into(),
                            "--cacert".into(),
                            cert.display().to_string(),
                        ]
                    })
                    .unwrap_or_default(),
            )
            .args(
                self.password
                    .map(|p| ["-a", p, "--no-auth-warning"])
                    .into_iter()
                    .flatten(),
            )
            .args(args)
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }
}
