//! Who may use the console, the admin API and `/metrics`.
//!
//! Without an admin token: only requests from loopback, addressed to a
//! loopback name (`localhost`, `127.0.0.1`, `[::1]`: so a web page cannot
//! reach them by DNS rebinding, and a proxy on this machine that passes
//! its client's `Host` on does not let the internet in as "local"), and
//! carrying no header a proxy adds (which would make the whole internet
//! look local). With a token: anyone who presents it, as `Authorization:
//! Bearer TOKEN` or in the console's cookie, compared in constant time.
//! Failed attempts are counted per IP address: past the limit in a
//! minute, that address is refused until the minute is over, and each
//! failure is logged. Either way, a browser request from another site
//! (an `Origin` that is not the server's own) is refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::warn;

use super::{console, error, AppState};
use crate::Config;

/// The console's cookie.
pub(crate) const COOKIE: &str = "switchboard_admin";

/// The window failed attempts are counted in.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Most addresses whose failures are remembered: past it, windows that
/// are over are forgotten first, then the oldest.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// The admin gate.
#[derive(Debug)]
pub(crate) struct Gate {
    token: Option<String>,
    allowed_origins: Vec<String>,
    attempts_per_minute: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Why a request was not let in.
enum Refusal {
    /// No token is set and the request is not local.
    NotLocal(&'static str),
    /// No credentials.
    Missing,
    /// Wrong credentials.
    Wrong,
    /// Too many failures from this address.
    Limited,
    /// A page from another site.
    Origin(String),
}

impl Gate {
    pub(crate) fn new(config: &Config) -> Self {
        Gate {
            token: config.admin_token.clone(),
            allowed_origins: config.allowed_origins.clone(),
            attempts_per_minute: config.admin_login_attempts,
            failures: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `ip` has used up its failed attempts for now.
    fn limited(&self, ip: IpAddr) -> bool {
        self.failures().get(&ip).is_some_and(|(since, count)| {
            since.elapsed() < ATTEMPT_WINDOW && *count >= self.attempts_per_minute
        })
    }

    /// Counts a failed attempt from `ip`.
    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures();
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, (since, _)| since.elapsed() < ATTEMPT_WINDOW);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(ip, _)| *ip)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= ATTEMPT_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    fn matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|token| bool::from(token.as_bytes().ct_eq(given.as_bytes())))
    }

    /// The request's `Origin`, if it came from a page of another site
    /// (not the server's own, as the request addressed it, nor one the
    /// config allows); requests without one (not from a browser) pass.
    pub(crate) fn foreign_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("?");
        (!self.origin_allowed(origin, host)).then_some(origin)
    }

    /// Whether `origin` (a browser's `Origin` header) is the server's own,
    /// as the request addressed it (`host`), or one allowed by the config.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let own = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        own || self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    fn check(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
        if let Some(origin) = self.foreign_origin(headers) {
            return Err(Refusal::Origin(origin.to_owned()));
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if self.token.is_none() {
            if !is_loopback(peer.ip()) {
                return Err(Refusal::NotLocal(
                    "the request does not come from this machine",
                ));
            }
            if PROXY_HEADERS.iter().any(|name| headers.contains_key(*name)) {
                return Err(Refusal::NotLocal("the request was forwarded by a proxy"));
            }
            if !host.is_some_and(is_loopback_host) {
                return Err(Refusal::NotLocal(
                    "the request is addressed to a name other than localhost, 127.0.0.1 or [::1]",
                ));
            }
            return Ok(());
        }
        if self.limited(peer.ip()) {
            return Err(Refusal::Limited);
        }
        let given = bearer(headers).or_else(|| cookie(headers));
        match given {
            None => Err(Refusal::Missing),
            Some(given) if self.matches(given) => Ok(()),
            Some(_) => {
                self.failed(peer.ip());
                warn!(%peer, "admin authentication failed: wrong token");
                Err(Refusal::Wrong)
            }
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Headers that proxies add: a request with any of them came through one,
/// so its loopback peer says nothing of where it came from.
const PROXY_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "via",
];

/// Whether a `Host` header names this machine's loopback: `localhost` or
/// a loopback address. A DNS name could be an attacker's, rebound to
/// 127.0.0.1; any other address is one a proxy on this machine passed on
/// from its client (nginx's `Host $host`), since a loopback-only listener
/// is never addressed by it directly.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// Lets only the admin through.
pub(crate) async fn require_admin(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let refusal = match app.auth.check(peer, request.headers()) {
        Ok(()) => return next.run(request).await,
        Err(refusal) => refusal,
    };
    let wants_page = request.uri().path() == "/" || request.uri().path().starts_with("/assets/");
    match refusal {
        Refusal::Missing if wants_page => Redirect::to("/login").into_response(),
        Refusal::Missing => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this needs the admin token: send Authorization: Bearer TOKEN",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Wrong => {
            let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", "wrong admin token");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Limited => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many failed attempts from {}: {} a minute are allowed (admin login attempts); wait a minute",
                peer.ip(),
                app.auth.attempts_per_minute
            ),
        ),
        Refusal::NotLocal(why) => error(
            StatusCode::FORBIDDEN,
            "local_only",
            format!("{why}: without an admin token, the console, API and metrics answer only on this machine; start the server with --admin-token TOKEN to open them"),
        ),
        Refusal::Origin(origin) => {
            warn!(%peer, %origin, "refused an admin request from another site");
            error(
                StatusCode::FORBIDDEN,
                "bad_origin",
                format!("requests from pages of {origin} are not allowed"),
            )
        }
    }
}

/// The login page (only useful with a token).
pub(crate) async fn login_page() -> Response {
    console::page("login.html")
}

#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
}

/// Checks a token typed into the login page, and keeps it in a cookie.
pub(crate) async fn login(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(login): Form<Login>,
) -> Response {
    let gate = &app.auth;
    if gate.token.is_none() {
        return Redirect::to("/").into_response();
    }
    if gate.limited(peer.ip()) {
        warn!(%peer, "admin login refused: too many failed attempts");
        return Redirect::to("/login?limited=1").into_response();
    }
    if !gate.matches(login.token.trim()) {
        gate.failed(peer.ip());
        warn!(%peer, "admin login failed: wrong token");
        return Redirect::to("/login?failed=1").into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        login.token.trim()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Forgets the console's cookie.
pub(crate) async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "switchboard_admin=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_and_loopback_addresses_count_as_local_hosts() {
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "203.0.113.10:8080",
            "[2001:db8::1]:8080",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_own_origin_and_configured_ones_are_allowed() {
        let mut config = Config::local();
        config.allowed_origins = vec!["https://app.example.com/".into()];
        let gate = Gate::new(&config);
        assert!(gate.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(gate.origin_allowed("https://app.example.com", Some("127.0.0.1:8080")));
        assert!(!gate.origin_allowed("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!gate.origin_allowed("http://127.0.0.1:8080", None));
    }

    #[test]
    fn failures_past_the_limit_lock_an_address_out() {
        let mut config = Config::local();
        config.admin_login_attempts = 2;
        let gate = Gate::new(&config);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        gate.failed(ip);
        assert!(!gate.limited(ip));
        gate.failed(ip);
        assert!(gate.limited(ip));
        assert!(!gate.limited("192.0.2.2".parse().unwrap()));
    }
}
