//! `switchboard serve`: flags, config file and environment, merged; and
//! telling a service manager (systemd) when the server is ready and when
//! it stops.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sd_notify::NotifyState;
use switchboard::config::{format_duration, ListenerList, LogFormat, Overrides};
use switchboard::{Config, Server};

/// Settings come from, in order of precedence: flags, `SWITCHBOARD_*`
/// environment variables, the config file, the defaults.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen on [MODE://]ADDR[?room=ROOM]; MODE is text (default), json or
    /// raw; repeat for several listeners. [default: text://0.0.0.0:12345]
    #[arg(
        short,
        long = "listen",
        value_name = "SPEC",
        env = "SWITCHBOARD_LISTEN"
    )]
    listen: Vec<ListenerList>,

    /// TOML file with the same settings as these flags (flags win).
    #[arg(short, long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,

    /// Check the settings (flags, environment, config file) as serving
    /// would, print what would be served, and exit: 0 if they are good. Binds
    /// no socket, so it runs beside the live server.
    #[arg(long)]
    check_config: bool,

    /// Every setting of the server: flags, their `SWITCHBOARD_*`
    /// variables and the config file's keys, defined once.
    #[command(flatten)]
    settings: Overrides,
}

impl ServeArgs {
    /// The config file's `log-format`, if there is a file and it says one.
    /// The logger starts before the config is built, so this reads the file
    /// early; a file that cannot be read is reported by [`Self::config`],
    /// through the logger this chose.
    pub fn log_format_in_file(&self) -> Option<LogFormat> {
        Overrides::load(self.config.as_deref()?).ok()?.log_format
    }

    /// The config these arguments describe, on top of the file and defaults.
    fn config(&self) -> anyhow::Result<Config> {
        let args = self.clone();
        let mut config = Config::default();
        if let Some(path) = &args.config {
            Overrides::load(path)?.apply(&mut config)?;
        }
        let mut flags = args.settings;
        flags.listen = Some(
            args.listen
                .into_iter()
                .flat_map(|list| list.0)
                .collect::<Vec<_>>(),
        )
        .filter(|listen| !listen.is_empty());
        // The global --log-format flag, read in main before the logger starts.
        flags.log_format = None;
        flags.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let check_only = args.check_config;
    let file = args.config.clone();
    let config = args.config()?;
    if check_only {
        // The credentials' files too: a broken users or devices file is
        // what a reload would refuse.
        if config.auth.has_credentials() || config.auth.devices_file.is_some() {
            switchboard::auth::Authenticator::load(config.auth.clone())
                .context("cannot load the credentials")?;
        }
        print!("{}", summary(&config, file.as_deref()));
        return Ok(ExitCode::SUCCESS);
    }
    // Handlers first: once the server says it is listening, a supervisor's
    // SIGTERM must already mean a graceful shutdown, and its SIGHUP
    // (`systemctl reload`) must not end the server.
    let shutdown = shutdown_signal()?;
    let hangups = Hangups::watch()?;
    let server = Server::bind(config).await?;
    let reloads = hangups.reload_into(args, server.reloader());
    // Bound means listening: a client connecting from now on is queued.
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("listening on {}", addresses(&server))),
    ]);
    server
        .run(async {
            shutdown.await;
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("shutting down: telling clients, sending what is queued"),
            ]);
        })
        .await?;
    reloads.abort();
    Ok(ExitCode::SUCCESS)
}

/// Tells the service manager about a change of state, when one started us
/// with `Type=notify` (it sets `NOTIFY_SOCKET`; without it, this does
/// nothing). A message that cannot be sent is logged, not fatal: systemd
/// would then time the start out and say so itself.
fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {error}");
    }
}

/// Every address the server listens on, as its "listening on" log line
/// gives them: `text://0.0.0.0:12345, http://127.0.0.1:8080`.
fn addresses(server: &Server) -> String {
    server.endpoints().join(", ")
}

/// What `serve --check-config` prints: where the server would listen and
/// its main limits, enough to see that the file said what was meant.
fn summary(config: &Config, file: Option<&std::path::Path>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let source = file.map_or("flags, environment and defaults".to_owned(), |file| {
        format!("{} (with flags and environment)", file.display())
    });
    let _ = writeln!(out, "config ok: {source}");
    for listener in &config.listeners {
        let _ = writeln!(out, "listen           {listener}");
    }
    let http = match config.http {
        Some(http) if config.admin_token.is_some() => format!("{http} (admin token set)"),
        Some(http) => format!("{http} (no admin token: console and API on loopback only)"),
        None => "off".to_owned(),
    };
    let _ = writeln!(out, "http             {http}");
    let per_ip = config
        .max_connections_per_ip
        .map_or("no limit".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "max-connections  {} ({per_ip} per IP)",
        config.max_connections
    );
    let messages = config
        .max_messages_per_second
        .map_or("any number of messages".to_owned(), |rate| {
            format!("{} messages", rate.get())
        });
    let volume = config
        .max_bytes_per_second
        .map_or("any number of bytes".to_owned(), |rate| {
            bytes(rate.get() as usize)
        });
    let per_ip = config
        .max_connections_per_ip_per_second
        .map_or("any number of".to_owned(), |rate| rate.get().to_string());
    let grace = match config.rate_limit_grace {
        grace if grace.is_zero() => "paced, never cut off".to_owned(),
        grace => format!("cut off after {}", format_duration(grace)),
    };
    let _ = writeln!(
        out,
        "rate limits      per client {messages} and {volume} a second ({grace}); per IP {per_ip} new connections a second",
    );
    let _ = writeln!(out, "max-line         {}", bytes(config.max_line));
    let _ = writeln!(
        out,
        "queue limits     {} soft, {} hard",
        bytes(config.queue_soft_limit),
        bytes(config.queue_hard_limit)
    );
    let _ = writeln!(out, "max-memory       {}", bytes(config.max_memory));
    let off = |timeout: Option<std::time::Duration>| timeout.map_or("off".into(), format_duration);
    let _ = writeln!(
        out,
        "timeouts         stall {}, slow {}, idle {}, line {}",
        format_duration(config.stall_timeout),
        off(config.slow_timeout),
        off(config.idle_timeout),
        off(config.line_timeout)
    );
    let shown = |text: &Option<String>, default: &str| match text.as_deref() {
        None => default.to_owned(),
        Some("") => "none".to_owned(),
        Some(text) => format!("{text:?}"),
    };
    let _ = writeln!(
        out,
        "welcome          {}",
        shown(&config.welcome, "the default, naming the client and /help")
    );
    let _ = writeln!(out, "ack              {}", shown(&config.ack, "none"));
    let _ = writeln!(
        out,
        "http timeouts    headers {}, WebSocket ping every {}, pong within {}",
        format_duration(config.http_header_timeout),
        format_duration(config.ws_ping_interval),
        format_duration(config.ws_pong_timeout)
    );
    if !config.trusted_proxies.is_empty() {
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|p| p.to_string())
            .collect();
        let _ = writeln!(out, "trusted proxies  {}", proxies.join(", "));
    }
    out
}

/// A byte count the way sizes are written in flags (`64KiB`, `4MiB`,
/// `1536`), or rounded to a tenth of its unit when not a whole number of
/// it (`11.8GiB`, as half a machine's memory usually is).
fn bytes(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(unit, _)| n >= *unit) {
        Some((unit, name)) if n % unit == 0 => format!("{}{name}", n / unit),
        Some((unit, name)) => format!("{:.1}{name}", n as f64 / *unit as f64),
        None => n.to_string(),
    }
}

/// SIGHUP, watched from before the server binds, so that `systemctl
/// reload` (the unit's `ExecReload`) can never end the server: without a
/// handler, SIGHUP kills the process.
struct Hangups {
    #[cfg(unix)]
    signals: tokio::signal::unix::Signal,
}

impl Hangups {
    #[cfg(unix)]
    fn watch() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let signals = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
        Ok(Hangups { signals })
    }

    #[cfg(not(unix))]
    fn watch() -> anyhow::Result<Self> {
        Ok(Hangups {})
    }

    /// On every SIGHUP, reads the config again (file, environment, flags)
    /// and hands it to the server; a config that does not load is logged,
    /// and the running one stays.
    fn reload_into(
        self,
        args: ServeArgs,
        reloader: switchboard::Reloader,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                let mut signals = self.signals;
                while signals.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the config");
                    match args.config() {
                        Ok(config) => reloader.reload(config),
                        Err(error) => {
                            tracing::warn!("reload refused, the running config stays: {error:#}")
                        }
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = (self, args, reloader);
        })
    }
}

/// Installs the Ctrl-C and SIGTERM handlers now; the future completes when
/// either signal arrives.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("Ctrl-C received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
