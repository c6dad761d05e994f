//! `switchboard serve`: flags, config file and environment, merged; and
//! telling a service manager (systemd) when the server is ready and when
//! it stops.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sd_notify::NotifyState;
use switchboard::config::{ListenerList, LogFormat, Overrides, Setting};
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

/// What `serve --check-config` prints: every setting the server would
/// run with, one a line, as flags write them, so that one can see that
/// the file said what was meant.
fn summary(config: &Config, file: Option<&std::path::Path>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let source = file.map_or("flags, environment and defaults".to_owned(), |file| {
        format!("{} (with flags and environment)", file.display())
    });
    let _ = writeln!(out, "config ok: {source}");
    let width = Setting::ALL
        .iter()
        .map(|s| s.key().len())
        .max()
        .unwrap_or(0);
    for setting in Setting::ALL {
        let key = setting.key();
        match setting {
            Setting::Listen => {
                for listener in &config.listeners {
                    let _ = writeln!(out, "{key:width$}  {listener}");
                }
            }
            Setting::Http if config.http.listen.is_some() && config.http.admin_token.is_none() => {
                let value = setting.value(config);
                let _ = writeln!(
                    out,
                    "{key:width$}  {value} (no admin token: console and API on loopback only)"
                );
            }
            _ => {
                let _ = writeln!(out, "{key:width$}  {}", setting.value(config));
            }
        }
    }
    out
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
