//! The credentials flags of the client commands (`connect`, `send`): a
//! user and password, or a token, for a listener with `auth=required`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

/// Who to log in as.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Log in as USER (a listener with auth=required). The password comes from --password-file, SWITCHBOARD_PASSWORD, or a prompt that does not echo it.
    #[arg(long, value_name = "USER", conflicts_with = "token_file")]
    pub user: Option<String>,

    /// Read --user's password from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,

    /// Authenticate with the token (a static token or a JWT) on the first line of FILE; SWITCHBOARD_TOKEN gives it too.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Credentials, ready to be sent.
pub enum Credentials {
    /// `/login USER PASSWORD`.
    Password { user: String, password: String },
    /// `/auth TOKEN`.
    Token(String),
}

impl LoginArgs {
    /// The credentials the flags and the environment give, if any; asks for
    /// the password on the terminal when nothing else gives it.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        if let Some(user) = &self.user {
            let password = match (&self.password_file, std::env::var("SWITCHBOARD_PASSWORD")) {
                (Some(file), _) => first_line(file, "password")?,
                (None, Ok(password)) => password,
                (None, Err(_)) => ask_password(user)?,
            };
            return Ok(Some(Credentials::Password {
                user: user.clone(),
                password,
            }));
        }
        if let Some(file) = &self.token_file {
            return Ok(Some(Credentials::Token(first_line(file, "token")?)));
        }
        match std::env::var("SWITCHBOARD_TOKEN") {
            Ok(token) if !token.trim().is_empty() => {
                Ok(Some(Credentials::Token(token.trim().to_owned())))
            }
            _ => Ok(None),
        }
    }
}

impl Credentials {
    /// The request that presents them, as a line for a text or JSON listener.
    pub fn request(&self, json: bool) -> Vec<u8> {
        let mut line = match (self, json) {
            (Credentials::Password { user, password }, false) => {
                format!("/login {user} {password}").into_bytes()
            }
            (Credentials::Token(token), false) => format!("/auth {token}").into_bytes(),
            (Credentials::Password { user, password }, true) => {
                json!({"type": "auth", "user": user, "password": password})
                    .to_string()
                    .into_bytes()
            }
            (Credentials::Token(token), true) => json!({"type": "auth", "token": token})
                .to_string()
                .into_bytes(),
        };
        line.push(b'\n');
        line
    }
}

/// Asks for `user`'s password on the terminal, without echo.
pub fn ask_password(user: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "--user {user} needs a password: give --password-file FILE or SWITCHBOARD_PASSWORD (stdin is not a terminal to ask on)"
    );
    rpassword::prompt_password(format!("Password for {user}: "))
        .context("reading the password from the terminal")
}

/// The first line of `file`, without its line end: a secret.
fn first_line(file: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the {what} file {}", file.display()))?;
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(
        !line.is_empty(),
        "the {what} file {} is empty",
        file.display()
    );
    Ok(line)
}
