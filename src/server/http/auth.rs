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

/// How long a console session lasts from its login: a working day, so
/// that a cookie left in a browser does not open the console for good.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Most console sessions kept at once; past it, the one nearest its end
/// ends (each is 40 bytes).
const MAX_SESSIONS: usize = 10_000;

/// The admin gate.
#[derive(Debug)]
pub(crate) struct AdminGate {
    token: Option<String>,
    /// The proxies whose `X-Forwarded-For` names the client, whose address
    /// then counts failed attempts.
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    /// The console's sessions: the digest of each cookie's value, and
    /// when it ends. The cookie is a session, not the token: it expires,
    /// logging out revokes it, and the token never sits in a browser.
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
    /// The HTTP listener speaks HTTPS: the cookie is `Secure`.
    secure_cookie: bool,
    allowed_origins: Vec<String>,
    server_names: Vec<String>,
    attempts_per_minute: u32,
    /// Failed attempts per address (an IPv6 /64), counted as the TCP and
    /// WebSocket logins' are, at `attempts_per_minute`.
    failures: crate::auth::Guard,
}

/// Why a request was not let in.
enum AdminRefusal {
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

impl AdminGate {
    pub(crate) fn new(config: &Config) -> Self {
        AdminGate {
            token: config.http.admin_token.clone(),
            trusted_proxies: config.http.trusted_proxies.clone(),
            sessions: Mutex::default(),
            secure_cookie: config.http.listen.is_some_and(|http| http.tls),
            allowed_origins: config.http.allowed_origins.clone(),
            server_names: config.http.server_names.clone(),
            attempts_per_minute: config.http.admin_login_attempts,
            failures: crate::auth::Guard::new(crate::auth::GuardPolicy::per_minute(
                config.http.admin_login_attempts,
            )),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        crate::sync::lock(&self.sessions)
    }

    /// Opens a console session; returns the cookie that carries it.
    fn open_session(&self) -> String {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut value = [0u8; 32];
        OsRng.fill_bytes(&mut value);
        let value: String = value.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions();
        sessions.retain(|_, ends| *ends > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(first) = sessions
                .iter()
                .min_by_key(|(_, ends)| **ends)
                .map(|(k, _)| *k)
            {
                sessions.remove(&first);
            }
        }
        sessions.insert(session_digest(&value), now + SESSION_LIFETIME);
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            SESSION_LIFETIME.as_secs()
        )
    }

    /// Whether `value` (a cookie's) is a session that has not ended.
    fn session_open(&self, value: &str) -> bool {
        self.sessions()
            .get(&session_digest(value))
            .is_some_and(|ends| *ends > Instant::now())
    }

    /// Ends the session of `value`, if it is one.
    fn close_session(&self, value: &str) {
        self.sessions().remove(&session_digest(value));
    }

    /// Whether `ip` has used up its failed attempts for now.
    fn limited(&self, ip: IpAddr) -> bool {
        self.failures.ready(ip).is_err()
    }

    /// Counts a failed attempt from `ip`.
    fn failed(&self, ip: IpAddr) {
        self.failures.failed(ip);
    }

    /// Whether `given` is the token: digests compared in constant time,
    /// so that neither the bytes nor the length of the token show in how
    /// long a wrong guess takes.
    fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        self.token.as_deref().is_some_and(|token| {
            let (want, got): ([u8; 32], [u8; 32]) =
                (Sha256::digest(token).into(), Sha256::digest(given).into());
            bool::from(want.ct_eq(&got))
        })
    }

    /// The request's `Origin`, if it came from a page of another site
    /// (not the server's own, as the request addressed it, nor one the
    /// config allows); requests without one (not from a browser) pass.
    pub(crate) fn foreign_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("?");
        (!self.origin_allowed(origin, host)).then_some(origin)
    }

    /// Why a browser's page may not open `/ws`, if it may not: it is from
    /// another site, or from a name this server does not know by which it
    /// was reached directly, which is what DNS rebinding looks like
    /// (`Origin` and `Host` both `evil.example`, resolved to 127.0.0.1).
    /// Requests without an `Origin` are not from a page: they pass.
    pub(crate) fn foreign_page(&self, headers: &HeaderMap) -> Option<ForeignPage> {
        let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("?");
        if self.origin_listed(origin) {
            return None;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !self.origin_allowed(origin, host) {
            return Some(ForeignPage::Origin(origin.to_owned()));
        }
        // The page's own origin: is its Host a name of this server's?
        let host = host.unwrap_or_default();
        let name = host_name(host);
        let known = is_loopback_host(host)
            || name.parse::<IpAddr>().is_ok()
            || self.server_names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || self
                .allowed_origins
                .iter()
                .any(|o| host_name(origin_host(o)).eq_ignore_ascii_case(name))
            // A proxy routed it here by its name: the proxy knows its names.
            || PROXY_HEADERS.iter().any(|h| headers.contains_key(*h));
        (!known).then(|| ForeignPage::UnknownName(name.to_owned()))
    }

    /// Whether `origin` is one the config allows by name.
    fn origin_listed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
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
        own || self.origin_listed(origin)
    }

    fn check(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), AdminRefusal> {
        if let Some(origin) = self.foreign_origin(headers) {
            return Err(AdminRefusal::Origin(origin.to_owned()));
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if self.token.is_none() {
            if !is_loopback(peer.ip()) {
                return Err(AdminRefusal::NotLocal(
                    "the request does not come from this machine",
                ));
            }
            if PROXY_HEADERS.iter().any(|name| headers.contains_key(*name)) {
                return Err(AdminRefusal::NotLocal(
                    "the request was forwarded by a proxy",
                ));
            }
            if !host.is_some_and(is_loopback_host) {
                return Err(AdminRefusal::NotLocal(
                    "the request is addressed to a name other than localhost, 127.0.0.1 or [::1]",
                ));
            }
            return Ok(());
        }
        // The right token is let in even from an address locked out by
        // wrong ones: behind a proxy every client shares one address, and
        // an attacker's guesses must not lock the admin out. Guessing gains
        // nothing by it: a token has at least 16 characters (2^64 guesses
        // of hex), and a locked-out address's guesses are not even logged.
        if cookie(headers).is_some_and(|session| self.session_open(session)) {
            return Ok(());
        }
        let given = bearer(headers);
        match given {
            None => Err(AdminRefusal::Missing),
            Some(given) if self.matches(given) => Ok(()),
            Some(_) if self.limited(peer.ip()) => Err(AdminRefusal::Limited),
            Some(_) => {
                self.failed(peer.ip());
                warn!(%peer, "admin authentication failed: wrong token");
                Err(AdminRefusal::Wrong)
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

/// A browser page refused `/ws`.
pub(crate) enum ForeignPage {
    /// From another site (its `Origin`).
    Origin(String),
    /// Reached this server directly by a name it does not know (DNS
    /// rebinding), which is given.
    UnknownName(String),
}

/// The host of an origin (`https://host:port` → `host:port`).
fn origin_host(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    rest.trim_end_matches('/')
}

/// The name or address of a `Host` header, without its port or brackets.
fn host_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    name.trim_start_matches('[').trim_end_matches(']')
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
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// How a session is kept: its digest, so that the server's memory holds
/// no value a cookie could be made from.
fn session_digest(value: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(value).into()
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
    // Behind a trusted proxy, failures count against the client it names:
    // one guesser does not lock out everyone the proxy serves.
    let peer = super::forwarded::client_addr(peer, request.headers(), &app.auth.trusted_proxies);
    let refusal = match app.auth.check(peer, request.headers()) {
        Ok(()) => return next.run(request).await,
        Err(refusal) => refusal,
    };
    let wants_page = request.uri().path() == "/" || request.uri().path().starts_with("/assets/");
    match refusal {
        AdminRefusal::Missing if wants_page => Redirect::to("/login").into_response(),
        AdminRefusal::Missing => {
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
        AdminRefusal::Wrong => {
            let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", "wrong admin token");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        AdminRefusal::Limited => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many failed attempts from {}: {} a minute are allowed (admin login attempts); wait a minute",
                peer.ip(),
                app.auth.attempts_per_minute
            ),
        ),
        AdminRefusal::NotLocal(why) => error(
            StatusCode::FORBIDDEN,
            "local_only",
            format!("{why}: without an admin token, the console, API and metrics answer only on this machine; start the server with --admin-token TOKEN to open them"),
        ),
        AdminRefusal::Origin(origin) => {
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
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    let gate = &app.auth;
    let peer = super::forwarded::client_addr(peer, &headers, &gate.trusted_proxies);
    if gate.token.is_none() {
        return Redirect::to("/").into_response();
    }
    let right = gate.matches(login.token.trim());
    if !right && gate.limited(peer.ip()) {
        warn!(%peer, "admin login refused: too many failed attempts");
        return Redirect::to("/login?limited=1").into_response();
    }
    if !right {
        gate.failed(peer.ip());
        warn!(%peer, "admin login failed: wrong token");
        return Redirect::to("/login?failed=1").into_response();
    }
    let cookie = gate.open_session();
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends the console's session, and has the browser forget its cookie.
pub(crate) async fn logout(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers) {
        app.auth.close_session(session);
    }
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
        config.http.allowed_origins = vec!["https://app.example.com/".into()];
        let gate = AdminGate::new(&config);
        assert!(gate.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(gate.origin_allowed("https://app.example.com", Some("127.0.0.1:8080")));
        assert!(!gate.origin_allowed("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!gate.origin_allowed("http://127.0.0.1:8080", None));
    }

    #[test]
    fn a_page_on_a_name_the_server_does_not_know_is_refused_ws() {
        let mut config = Config::local();
        config.http.server_names = vec!["relay.example.com".into()];
        config.http.allowed_origins = vec!["https://app.example.com".into()];
        let gate = AdminGate::new(&config);
        let page = |origin: &str, host: &str, extra: Option<(&'static str, &str)>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, origin.parse().unwrap());
            headers.insert(header::HOST, host.parse().unwrap());
            if let Some((name, value)) = extra {
                headers.insert(name, value.parse().unwrap());
            }
            match gate.foreign_page(&headers) {
                None => "ok",
                Some(ForeignPage::Origin(_)) => "origin",
                Some(ForeignPage::UnknownName(_)) => "name",
            }
        };
        // DNS rebinding: Origin and Host agree, on a name the server does not know.
        assert_eq!(
            page("http://evil.example:8080", "evil.example:8080", None),
            "name"
        );
        // Its own names: loopback, addresses, --server-name, an allowed origin's host.
        assert_eq!(page("http://localhost:8080", "localhost:8080", None), "ok");
        assert_eq!(page("http://127.0.0.1:8080", "127.0.0.1:8080", None), "ok");
        assert_eq!(page("http://[::1]:8080", "[::1]:8080", None), "ok");
        assert_eq!(
            page("http://203.0.113.10:8080", "203.0.113.10:8080", None),
            "ok"
        );
        assert_eq!(
            page("https://relay.example.com", "relay.example.com", None),
            "ok"
        );
        assert_eq!(
            page("https://RELAY.example.com", "relay.example.com", None),
            "ok"
        );
        assert_eq!(
            page("https://app.example.com", "relay.example.com", None),
            "ok"
        );
        // Behind a proxy, the proxy routed it by a name it serves.
        assert_eq!(
            page(
                "https://chat.example.org",
                "chat.example.org",
                Some(("x-forwarded-for", "198.51.100.7"))
            ),
            "ok"
        );
        // Another site's page, as before.
        assert_eq!(
            page("http://evil.example", "127.0.0.1:8080", None),
            "origin"
        );
    }

    #[test]
    fn admin_failures_count_an_ipv6_64_as_one_address() {
        let mut config = Config::local();
        config.http.admin_login_attempts = 2;
        let gate = AdminGate::new(&config);
        gate.failed("2001:db8::1".parse().unwrap());
        gate.failed("2001:db8::2".parse().unwrap());
        assert!(gate.limited("2001:db8::ffff".parse().unwrap()));
        assert!(!gate.limited("2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn the_token_is_matched_whole_and_only_whole() {
        let mut config = Config::local();
        config.http.admin_token = Some("0123456789abcdef0123".into());
        let gate = AdminGate::new(&config);
        assert!(gate.matches("0123456789abcdef0123"));
        for wrong in [
            "",
            "0123456789abcdef012",
            "0123456789abcdef01234",
            "x123456789abcdef0123",
        ] {
            assert!(!gate.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn failures_past_the_limit_lock_an_address_out() {
        let mut config = Config::local();
        config.http.admin_login_attempts = 2;
        let gate = AdminGate::new(&config);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        gate.failed(ip);
        assert!(!gate.limited(ip));
        gate.failed(ip);
        assert!(gate.limited(ip));
        assert!(!gate.limited("192.0.2.2".parse().unwrap()));
    }
}
