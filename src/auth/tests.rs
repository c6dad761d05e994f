//! The [`Authenticator`] as a listener would use it: logins, tokens,
//! JWTs, failures per address, reserved names and connections.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::json;

use super::tokens::tests::{hs256, now, RSA_PUBLIC, SECRET};
use super::*;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8));
const TOKEN: &str = "static-token-0123456789";

fn alice_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("wonderland").unwrap())
}

fn bob_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("builder").unwrap())
}

/// A directory of its own for each test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchboard-auth-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn users_file(dir: &TempDir) -> PathBuf {
    dir.write(
        "users.toml",
        &format!(
            r#"
[users.alice]
password = "{}"
join = ["lobby", "team-*"]
send = ["team-*"]
max-connections = 2

[users.bob]
password = "{}"

[users.svc]
join = ["ops"]
"#,
            alice_hash(),
            bob_hash()
        ),
    )
}

fn authenticator(dir: &TempDir) -> Authenticator {
    Authenticator::load(AuthSettings {
        users_file: Some(users_file(dir)),
        tokens: vec![TOKEN.into()],
        jwt_secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
        ..AuthSettings::default()
    })
    .unwrap()
}

fn room(name: &str) -> RoomName {
    RoomName::new(name).unwrap()
}

#[tokio::test]
async fn a_user_logs_in_with_its_password_and_gets_its_rooms() {
    let dir = TempDir::new("login");
    let auth = authenticator(&dir);
    let alice = auth.login("alice", "wonderland", IP).await.unwrap();
    assert_eq!(alice.user.as_deref(), Some("alice"));
    assert_eq!(alice.method, Method::Password);
    assert_eq!(alice.max_connections, Some(2));
    assert_eq!(alice.expires_at, None);
    assert_eq!(alice.may_join(&room("lobby")), Ok(()));
    assert_eq!(
        alice.may_send(&room("lobby")).unwrap_err().to_string(),
        "alice may not send to #lobby"
    );
    assert_eq!(
        alice.may_join(&room("ops")).unwrap_err().to_string(),
        "alice may not join #ops"
    );
    assert_eq!(alice.may_send(&room("team-red")), Ok(()));
    let same = auth.login("Alice", "wonderland", IP).await.unwrap();
    assert_eq!(same.user.as_deref(), Some("alice"), "the file's spelling");
}

#[tokio::test]
async fn an_unknown_user_and_a_wrong_password_get_the_same_answer() {
    let dir = TempDir::new("same-answer");
    let auth = authenticator(&dir);
    let wrong = auth.login("alice", "looking-glass", IP).await.unwrap_err();
    let unknown = auth
        .login("mallory", "looking-glass", OTHER_IP)
        .await
        .unwrap_err();
    assert_eq!(wrong, AuthError::BadCredentials);
    assert_eq!(unknown, AuthError::BadCredentials);
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(!wrong.to_string().contains("looking-glass"));
    let no_password = auth.login("svc", "", OTHER_IP).await.unwrap_err();
    assert_eq!(
        no_password,
        AuthError::BadCredentials,
        "an entry without a password"
    );
}

#[tokio::test]
async fn repeated_failures_from_an_address_are_throttled_then_banned() {
    let dir = TempDir::new("throttle");
    let auth = authenticator(&dir);
    for _ in 0..guard::FREE_FAILURES {
        assert_eq!(
            auth.token("wrong-token-but-long-enough", IP)
                .await
                .unwrap_err(),
            AuthError::BadToken
        );
    }
    assert_eq!(
        auth.token("wrong-token-but-long-enough", IP)
            .await
            .unwrap_err(),
        AuthError::BadToken
    );
    // Now it must wait: even the right credentials are not tried.
    assert!(matches!(
        auth.login("alice", "wonderland", IP).await,
        Err(AuthError::Throttled { .. })
    ));
    assert!(matches!(
        auth.token(TOKEN, IP).await,
        Err(AuthError::Throttled { .. })
    ));
    assert!(auth.guard().check(IP).is_ok(), "slowed, not banned");
    assert!(
        auth.token(TOKEN, OTHER_IP).await.is_ok(),
        "other addresses are not slowed"
    );
}

#[tokio::test]
async fn a_banned_address_is_refused_until_the_ban_ends() {
    let dir = TempDir::new("ban");
    let auth = Authenticator::with_guard(
        AuthSettings {
            users_file: Some(users_file(&dir)),
            ..AuthSettings::default()
        },
        GuardPolicy {
            free_failures: 100,
            ban_after: 2,
            ..GuardPolicy::default()
        },
    )
    .unwrap();
    assert!(auth.login("alice", "a", IP).await.is_err());
    assert!(auth.login("alice", "b", IP).await.is_err());
    let banned = auth.guard().check(IP).unwrap_err();
    assert!(matches!(banned, AuthError::Banned { .. }));
    assert!(matches!(
        auth.login("alice", "wonderland", IP).await,
        Err(AuthError::Banned { .. })
    ));
    let reloaded = auth.reload().unwrap();
    assert!(
        reloaded.guard().check(IP).is_err(),
        "a reload does not lift a ban"
    );
}

#[tokio::test]
async fn a_static_token_lets_a_guest_in_everywhere() {
    let dir = TempDir::new("static");
    let auth = authenticator(&dir);
    let guest = auth.token(TOKEN, IP).await.unwrap();
    assert_eq!(guest.user, None);
    assert_eq!(guest.method, Method::Token);
    assert!(guest.join.allows_all() && guest.send.allows_all());
    assert!(
        auth.connect(&guest).unwrap().is_none(),
        "no user, no place to take"
    );
}

#[tokio::test]
async fn a_jwt_names_its_user_and_rooms_and_expires() {
    let dir = TempDir::new("jwt");
    let auth = authenticator(&dir);
    let exp = now() + 600;
    let token = hs256(json!({"sub": "dave", "exp": exp, "rooms": ["ops"]}));
    let dave = auth.token(&token, IP).await.unwrap();
    assert_eq!(dave.user.as_deref(), Some("dave"));
    assert_eq!(dave.method, Method::Jwt);
    assert_eq!(dave.max_connections, Some(DEFAULT_MAX_CONNECTIONS));
    assert!(dave.may_join(&room("ops")).is_ok());
    assert!(dave.may_join(&room("lobby")).is_err());
    let left = dave.expires_in(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(600) && left > Duration::from_secs(590));
    assert_eq!(
        dave.expires_in(dave.expires_at.unwrap() + Duration::from_secs(1)),
        Some(Duration::ZERO)
    );
}

#[tokio::test]
async fn a_jwt_for_a_user_of_the_file_can_narrow_its_rooms_but_not_widen_them() {
    let dir = TempDir::new("jwt-file-user");
    let auth = authenticator(&dir);
    let token = hs256(json!({"sub": "alice", "exp": now() + 60, "rooms": ["team-red", "ops"]}));
    let alice = auth.token(&token, IP).await.unwrap();
    assert_eq!(alice.user.as_deref(), Some("alice"));
    assert_eq!(alice.max_connections, Some(2), "the file's limit");
    assert!(alice.may_join(&room("team-red")).is_ok());
    assert!(alice.may_join(&room("team-blue")).is_err(), "narrowed");
    assert!(alice.may_join(&room("ops")).is_err(), "not widened");
    let plain = hs256(json!({"sub": "alice", "exp": now() + 60}));
    let alice = auth.token(&plain, IP).await.unwrap();
    assert!(
        alice.may_join(&room("team-blue")).is_ok(),
        "the file's rooms"
    );
    assert!(alice.may_send(&room("lobby")).is_err());
    let svc = auth
        .token(&hs256(json!({"sub": "svc", "exp": now() + 60})), IP)
        .await
        .unwrap();
    assert_eq!(
        svc.user.as_deref(),
        Some("svc"),
        "an entry without a password"
    );
}

#[tokio::test]
async fn an_expired_jwt_is_refused_but_not_counted_as_a_guess() {
    let dir = TempDir::new("jwt-expired");
    let auth = authenticator(&dir);
    let expired = hs256(json!({"sub": "dave", "exp": now() - 10}));
    for _ in 0..guard::BAN_AFTER + 1 {
        assert_eq!(
            auth.token(&expired, IP).await.unwrap_err(),
            AuthError::TokenExpired
        );
    }
    assert!(auth.guard().ready(IP).is_ok());
}

#[tokio::test]
async fn a_jwt_whose_subject_is_reserved_or_invalid_is_refused() {
    let dir = TempDir::new("jwt-reserved");
    let auth = authenticator(&dir);
    // Look-alikes of a users-file user are refused, not mapped to it.
    for sub in ["bob-2", "a b", "", "ALICE", "AIice", "аlice"] {
        let token = hs256(json!({"sub": sub, "exp": now() + 60}));
        assert_eq!(
            auth.token(&token, IP).await.unwrap_err(),
            AuthError::BadToken,
            "{sub:?}"
        );
    }
}

#[tokio::test]
async fn an_rs256_key_from_a_file_checks_tokens() {
    let dir = TempDir::new("rs256");
    let key = dir.write("key.pem", RSA_PUBLIC);
    let auth = Authenticator::load(AuthSettings {
        jwt_public_key_file: Some(key),
        ..AuthSettings::default()
    })
    .unwrap();
    // An HS256 token is refused: no secret is configured.
    let token = hs256(json!({"sub": "dave", "exp": now() + 60}));
    assert_eq!(
        auth.token(&token, IP).await.unwrap_err(),
        AuthError::BadToken
    );
    assert_eq!(
        auth.login("alice", "wonderland", OTHER_IP)
            .await
            .unwrap_err(),
        AuthError::MethodNotEnabled("this server takes no passwords: authenticate with a token")
    );
}

#[tokio::test]
async fn without_tokens_configured_a_token_is_turned_away_plainly() {
    let dir = TempDir::new("no-tokens");
    let auth = Authenticator::load(AuthSettings {
        users_file: Some(users_file(&dir)),
        ..AuthSettings::default()
    })
    .unwrap();
    assert!(matches!(
        auth.token(TOKEN, IP).await,
        Err(AuthError::MethodNotEnabled(_))
    ));
    assert!(auth.guard().ready(IP).is_ok(), "not counted");
}

#[tokio::test]
async fn a_second_connection_is_user_2_and_one_past_the_limit_is_refused() {
    let dir = TempDir::new("connections");
    let auth = authenticator(&dir);
    let alice = auth.login("alice", "wonderland", IP).await.unwrap();
    let first = auth.connect(&alice).unwrap().unwrap();
    let second = auth.connect(&alice).unwrap().unwrap();
    assert_eq!((first.name(), second.name()), ("alice", "alice-2"));
    assert_eq!(
        auth.connect(&alice).unwrap_err().to_string(),
        "alice already has 2 connections open, the most allowed"
    );
    drop(first);
    assert_eq!(auth.connect(&alice).unwrap().unwrap().name(), "alice");
    let bob = auth.login("bob", "builder", IP).await.unwrap();
    let _bob = auth.connect(&bob).unwrap().unwrap();
    assert!(
        auth.connect(&bob).is_err(),
        "one connection unless the entry says more"
    );
}

#[tokio::test]
async fn connections_outlive_a_reload() {
    let dir = TempDir::new("reload-connections");
    let auth = authenticator(&dir);
    let bob = auth.login("bob", "builder", IP).await.unwrap();
    let _held = auth.connect(&bob).unwrap().unwrap();
    let reloaded = auth.reload().unwrap();
    assert!(reloaded.connect(&bob).is_err());
}

#[tokio::test]
async fn names_of_users_and_of_their_further_connections_are_reserved() {
    let dir = TempDir::new("reserved");
    let auth = authenticator(&dir);
    for name in [
        "alice", "Alice", "AIice", "аlice", "alice-2", "bob", "svc", "svc-3",
    ] {
        assert!(auth.is_reserved(name), "{name}");
    }
    for name in ["guest-1", "dave", "alicia", "bobby"] {
        assert!(!auth.is_reserved(name), "{name}");
    }
    // A JWT user is not in the file: its names are kept while it is connected.
    let dave = auth
        .token(&hs256(json!({"sub": "dave", "exp": now() + 60})), IP)
        .await
        .unwrap();
    let held = auth.connect(&dave).unwrap().unwrap();
    assert!(auth.is_reserved("dave") && auth.is_reserved("Dave-2"));
    drop(held);
    assert!(!auth.is_reserved("dave"));
}

#[tokio::test]
async fn a_reload_reads_the_files_again() {
    let dir = TempDir::new("reload");
    let auth = authenticator(&dir);
    assert!(!auth.is_reserved("carol"));
    let carol = password::hash("x").unwrap();
    let path = dir.0.join("users.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("\n[users.carol]\npassword = \"{carol}\"\n"));
    std::fs::write(&path, text).unwrap();
    let reloaded = auth.reload().unwrap();
    assert!(reloaded.is_reserved("carol"));
    assert!(reloaded.login("carol", "x", IP).await.is_ok());
    std::fs::write(&path, "[users.carol]\npassword = \"nope\"\n").unwrap();
    let error = reloaded.reload().unwrap_err().to_string();
    assert!(error.contains("user \"carol\": password: "), "{error}");
}

#[test]
fn load_errors_name_what_is_wrong_and_never_the_secret() {
    let dir = TempDir::new("load-errors");
    let missing = Authenticator::load(AuthSettings {
        users_file: Some(dir.0.join("missing.toml")),
        ..AuthSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        missing.starts_with("cannot read the users file "),
        "{missing}"
    );
    let weak = Authenticator::load(AuthSettings {
        jwt_secret: Some("hunter2".into()),
        ..AuthSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(weak.starts_with("--jwt-secret: "), "{weak}");
    assert!(!weak.contains("hunter2"));
    let secret_file = dir.write("jwt-secret", "short-secret\n");
    let weak = Authenticator::load(AuthSettings {
        jwt_secret_file: Some(secret_file.clone()),
        ..AuthSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        weak.starts_with(&format!("{}: ", secret_file.display())),
        "{weak}"
    );
    assert!(!weak.contains("short-secret"));
    let short = Authenticator::load(AuthSettings {
        tokens: vec!["tiny".into()],
        ..AuthSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(!short.contains("tiny"), "{short}");
}

#[test]
fn settings_never_show_their_secrets() {
    let settings = AuthSettings {
        tokens: vec![TOKEN.into()],
        jwt_secret: Some("a-very-secret-jwt-secret-of-32-bytes".into()),
        ..AuthSettings::default()
    };
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains(TOKEN) && !shown.contains("a-very-secret"),
        "{shown}"
    );
    assert!(settings.has_credentials());
    assert!(!AuthSettings::default().has_credentials());
}

#[test]
fn a_jwt_secret_file_gives_its_first_line() {
    let dir = TempDir::new("secret-file");
    let path = dir.write("secret", "0123456789abcdef0123456789abcdef\n# ignored\n");
    let auth = Authenticator::load(AuthSettings {
        jwt_secret_file: Some(path),
        ..AuthSettings::default()
    })
    .unwrap();
    let token = hs256(json!({"sub": "dave", "exp": now() + 60}));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(runtime.block_on(auth.token(&token, IP)).is_ok());
}
