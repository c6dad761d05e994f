//! `switchboard passwd USER`: hashes a password and prints the users-file
//! entry for it, ready to append (`switchboard passwd alice >> users.toml`).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use switchboard::auth::{password, DEFAULT_MAX_CONNECTIONS};
use switchboard::hub::Name;

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The user name (the name its connections go by). The password is
    /// read from stdin: asked twice, without echo, on a terminal; from a
    /// pipe or a file, its first line, once and without confirmation
    /// (`printf '%s\n' "$PW" | switchboard passwd alice`).
    user: String,

    /// Accept a password shorter than 8 characters (for tests and trials:
    /// short passwords fall to guessing).
    #[arg(long)]
    allow_short: bool,
}

/// The shortest password taken without --allow-short: NIST SP 800-63B's
/// minimum for a password a person chooses.
const MIN_PASSWORD_CHARS: usize = 8;

pub async fn run(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let user =
        Name::new(&args.user).with_context(|| format!("{:?} cannot be a user name", args.user))?;
    let password = if std::io::stdin().is_terminal() {
        ask_twice(user.as_str())?
    } else {
        read_line()?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS && !args.allow_short {
        bail!("the password has {chars} characters: at least {MIN_PASSWORD_CHARS} are needed (--allow-short takes shorter ones, for tests)");
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .context("hashing the password")??;
    print!("{}", entry(&user, &hash));
    Ok(ExitCode::SUCCESS)
}

/// Asks for the password on the terminal, without echo, twice.
fn ask_twice(user: &str) -> anyhow::Result<String> {
    let first = rpassword::prompt_password(format!("Password for {user}: "))
        .context("reading the password from the terminal")?;
    if first.is_empty() {
        bail!("the password is empty");
    }
    let second =
        rpassword::prompt_password("Again: ").context("reading the password from the terminal")?;
    if first != second {
        bail!("the passwords differ");
    }
    Ok(first)
}

/// Reads one line from stdin (a pipe or a file), without its line end.
fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// The users-file entry for `user` with password hash `hash`.
fn entry(user: &Name, hash: &str) -> String {
    let key = if user
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        user.as_str().to_owned()
    } else {
        // Quoted as TOML quotes it (`小明`, `a.b`).
        toml::Value::String(user.as_str().to_owned()).to_string()
    };
    format!(
        "\n[users.{key}]\n\
         password = {hash}\n\
         join = [\"*\"]   # rooms it may join: patterns such as \"lobby\", \"team-*\"\n\
         send = [\"*\"]   # rooms it may send to\n\
         # max-connections = {DEFAULT_MAX_CONNECTIONS}   # at once; the 2nd is {user}-2, the 3rd {user}-3, ...; more are refused\n",
        hash = toml::Value::String(hash.to_owned()),
    )
}
