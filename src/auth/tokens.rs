//! Tokens: static secrets (`--token SECRET`, `--token-file FILE`) and
//! JWTs (HS256 with `--jwt-secret`, RS256 with `--jwt-public-key`).
//!
//! A static token says only "this client may connect": it has no user
//! name (the client is a guest as usual) and may go to every room. A JWT
//! names its user (`sub`) and may name rooms:
//!
//! ```json
//! {"sub": "alice", "exp": 1767225600, "rooms": ["lobby", "team-*"]}
//! ```
//!
//! - `sub` (required): the user name; it must be a valid client name.
//! - `exp` (required): the token is refused after it, and a connection
//!   that logged in with it is closed then ([`Identity::expires_at`](super::Identity::expires_at)).
//!   No leeway: the issuer says when the token ends.
//! - `nbf` (optional): the token is refused before it, with
//!   [`NBF_LEEWAY`] of leeway for an issuer whose clock runs ahead.
//! - `rooms` (optional): patterns of the rooms the user may join and send
//!   to; `join` and `send` (optional) set either one apart and win over
//!   `rooms`. Without any, every room (as a users-file entry without
//!   `join`); `send` without `join` or `rooms` is the same as `join`.
//! - `aud`: must be the configured audience (`--jwt-audience`) when one is
//!   set; a token with an `aud` is refused when none is.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::grants::Grants;
use super::{AuthError, LoadError};

/// Shortest static token accepted, in characters: 16 random characters
/// (`openssl rand -hex 16` gives 32) cannot be guessed at the rate the
/// guard allows.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Shortest HS256 secret accepted, in bytes: HMAC-SHA256 is only as
/// strong as its key, and RFC 7518 asks for at least the hash's 256 bits.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How far in the future a JWT's `nbf` may be and still be accepted: a
/// token issued "valid from now" by a host whose clock runs a little
/// ahead of ours works at once.
pub const NBF_LEEWAY: Duration = Duration::from_secs(5);

/// The furthest a JWT's expiry is taken to be: a connection's deadline is
/// an instant, which cannot lie centuries ahead; a token valid longer is
/// valid for this long (a hundred years), which is forever to a connection.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The static tokens, kept as SHA-256 digests so that comparing a
/// candidate with each of them takes the same time whatever it is (and
/// whatever its length), and the secrets themselves are not kept.
#[derive(Clone, Default)]
pub struct StaticTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticTokens({} tokens)", self.digests.len())
    }
}

impl StaticTokens {
    /// The tokens given on the command line (`--token`, repeatable) and
    /// in a token file (`--token-file`), each checked.
    pub fn load(tokens: &[String], file: Option<&Path>) -> Result<Self, LoadError> {
        let mut loaded = StaticTokens::default();
        for (i, token) in tokens.iter().enumerate() {
            loaded.add(token, || format!("--token #{}", i + 1))?;
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                what: "token file",
                path: path.to_owned(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let token = line.trim();
                if token.is_empty() || token.starts_with('#') {
                    continue;
                }
                loaded.add(token, || {
                    format!("token file {}, line {}", path.display(), i + 1)
                })?;
            }
        }
        Ok(loaded)
    }

    /// Adds one token, checked; `source_name` says where it came from, for
    /// the error (which never holds the token).
    pub fn add(
        &mut self,
        token: &str,
        source_name: impl FnOnce() -> String,
    ) -> Result<(), LoadError> {
        let refuse = |message: String| LoadError::Token {
            source_name: source_name(),
            message,
        };
        let chars = token.chars().count();
        if chars < MIN_TOKEN_CHARS {
            return Err(refuse(format!(
                "a token needs at least {MIN_TOKEN_CHARS} characters, this one has {chars} (make one with `openssl rand -hex 32`)"
            )));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse(
                "a token cannot hold spaces or control characters (clients send it as one word)"
                    .into(),
            ));
        }
        self.digests.push(digest(token));
        Ok(())
    }

    /// Whether `candidate` is one of the tokens. Compares with every token,
    /// in constant time, so timing tells nothing of how close it came.
    pub fn matches(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, token| {
                found | token.ct_eq(&candidate)
            })
            .into()
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a valid JWT says.
#[derive(Debug, Clone)]
pub struct JwtClaims {
    /// `sub`: the user name, as the token spells it.
    pub subject: String,
    /// The rooms it may join (`join`, else `rooms`), if it says.
    pub join: Option<Grants>,
    /// The rooms it may send to (`send`, else `rooms`, else `join`), if it
    /// says.
    pub send: Option<Grants>,
    /// The clients it may message directly (`direct`: name patterns), if
    /// it says.
    pub direct: Option<Grants>,
    /// `exp`.
    pub expires_at: SystemTime,
}

/// The claims read from a JWT's payload; the registered ones are checked
/// by `jsonwebtoken` too.
#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    join: Option<Vec<String>>,
    #[serde(default)]
    send: Option<Vec<String>>,
    #[serde(default)]
    direct: Option<Vec<String>>,
}

/// Checks JWTs: their signature (HS256 with a shared secret, RS256 with a
/// public key; a token signed otherwise, or with `alg: none`, is refused),
/// then `exp`, `nbf` and `aud`.
#[derive(Clone)]
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier for HS256 tokens signed with `secret` and/or RS256
    /// tokens signed by the key whose public half is `public_key_pem` (a
    /// PEM `PUBLIC KEY` or `RSA PUBLIC KEY`); `*_name` say where each came
    /// from, for errors. `audience`, if set, is the `aud` tokens must have.
    pub fn new(
        secret: Option<(&[u8], &str)>,
        public_key_pem: Option<(&[u8], &str)>,
        audience: Option<String>,
    ) -> Result<Self, LoadError> {
        let hs256 = match secret {
            None => None,
            Some((secret, name)) => {
                if secret.len() < MIN_JWT_SECRET_BYTES {
                    return Err(LoadError::Jwt {
                        source_name: name.to_owned(),
                        message: format!(
                            "an HS256 secret needs at least {MIN_JWT_SECRET_BYTES} bytes, this one has {} (make one with `openssl rand -hex 32`)",
                            secret.len()
                        ),
                    });
                }
                Some(DecodingKey::from_secret(secret))
            }
        };
        let rs256 = match public_key_pem {
            None => None,
            Some((pem, name)) => {
                Some(DecodingKey::from_rsa_pem(pem).map_err(|e| LoadError::Jwt {
                    source_name: name.to_owned(),
                    message: format!("not an RSA public key in PEM form: {e}"),
                })?)
            }
        };
        Ok(JwtVerifier {
            hs256,
            rs256,
            audience,
        })
    }

    /// Whether `token` is shaped like a JWT (three base64url parts), to
    /// tell it from a static token without trying.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// Checks `token` and reads its claims. Errors are
    /// [`AuthError::BadToken`] (not signed by our key, malformed, missing
    /// `sub` or `exp`, bad room patterns, wrong audience),
    /// [`AuthError::TokenExpired`] or [`AuthError::TokenNotYetValid`].
    pub fn verify(&self, token: &str) -> Result<JwtClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::BadToken)?;
        let (key, algorithm) = match header.alg {
            Algorithm::HS256 => (self.hs256.as_ref(), Algorithm::HS256),
            Algorithm::RS256 => (self.rs256.as_ref(), Algorithm::RS256),
            _ => (None, header.alg),
        };
        let key = key.ok_or(AuthError::BadToken)?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = false; // checked below, with its own leeway
                                         // Without an audience of ours, `jsonwebtoken` refuses any token
                                         // that has an `aud`: it was meant for someone else.
        validation.validate_aud = true;
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub"]),
        }
        let data =
            jsonwebtoken::decode::<RawClaims>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                    _ => AuthError::BadToken,
                }
            })?;
        let claims = data.claims;
        if let Some(nbf) = claims.nbf {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if Duration::from_secs(nbf) > now + NBF_LEEWAY {
                return Err(AuthError::TokenNotYetValid);
            }
        }
        let grants = |patterns: Option<Vec<String>>| -> Result<Option<Grants>, AuthError> {
            patterns
                .map(|p| Grants::parse(&p).map_err(|_| AuthError::BadToken))
                .transpose()
        };
        let rooms = grants(claims.rooms)?;
        let join = grants(claims.join)?.or_else(|| rooms.clone());
        let send = grants(claims.send)?.or(rooms).or_else(|| join.clone());
        // An `exp` past what a clock can hold (2^63 seconds, as a fuzzer
        // or an attacker writes it) is taken as the longest lifetime there
        // is, not a panic.
        let latest = SystemTime::now() + MAX_TOKEN_LIFETIME;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .map_or(latest, |at| at.min(latest));
        let direct = grants(claims.direct)?;
        Ok(JwtClaims {
            subject: claims.sub,
            join,
            send,
            direct,
            expires_at,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::RoomName;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    pub(crate) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    pub(crate) const RSA_PRIVATE: &str = include_str!("testdata/rsa-private.pem");
    pub(crate) const RSA_PUBLIC: &str = include_str!("testdata/rsa-public.pem");
    const OTHER_PRIVATE: &str = include_str!("testdata/other-private.pem");

    pub(crate) fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    pub(crate) fn hs256(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn rs256(claims: serde_json::Value, private_pem: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(
            Some((SECRET, "--jwt-secret")),
            Some((RSA_PUBLIC.as_bytes(), "key.pem")),
            None,
        )
        .unwrap()
    }

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    #[test]
    fn static_tokens_match_exactly() {
        let tokens = StaticTokens::load(
            &["0123456789abcdef".into(), "fedcba9876543210fedc".into()],
            None,
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.matches("0123456789abcdef"));
        assert!(tokens.matches("fedcba9876543210fedc"));
        assert!(!tokens.matches("0123456789abcde"));
        assert!(!tokens.matches("0123456789abcdeF"));
        assert!(!tokens.matches(""));
        assert!(!StaticTokens::default().matches(""));
        assert!(!format!("{tokens:?}").contains("0123"), "no token in Debug");
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_without_showing_them() {
        let error = StaticTokens::load(&["0123456789abcdef".into(), "short".into()], None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--token #2: a token needs at least 16 characters, this one has 5"),
            "{error}"
        );
        assert!(!error.contains("short"));
        let error = StaticTokens::load(&["0123456789 abcdef".into()], None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("spaces"), "{error}");
    }

    #[test]
    fn a_token_file_has_one_token_a_line_with_comments_and_blank_lines() {
        let dir = std::env::temp_dir().join(format!("switchboard-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(
            &file,
            "# tokens for the sensors\n\n  aaaaaaaaaaaaaaaaaaaa  \r\nbbbbbbbbbbbbbbbbbbbb\n",
        )
        .unwrap();
        let tokens = StaticTokens::load(&[], Some(&file)).unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.matches("aaaaaaaaaaaaaaaaaaaa"));
        assert!(tokens.matches("bbbbbbbbbbbbbbbbbbbb"));
        std::fs::write(&file, "aaaaaaaaaaaaaaaaaaaa\n# a comment\ntooshort\n").unwrap();
        let error = StaticTokens::load(&[], Some(&file))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("token file {}, line 3: ", file.display())),
            "{error}"
        );
        assert!(!error.contains("tooshort"));
        let error = StaticTokens::load(&[], Some(&dir.join("missing")))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("cannot read the token file "), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_hs256_token_gives_its_subject_rooms_and_expiry() {
        let exp = now() + 3600;
        let token = hs256(json!({"sub": "alice", "exp": exp, "rooms": ["lobby", "team-*"]}));
        assert!(JwtVerifier::looks_like_jwt(&token));
        let claims = verifier().verify(&token).unwrap();
        assert_eq!(claims.subject, "alice");
        assert_eq!(claims.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        let (join, send) = (claims.join.unwrap(), claims.send.unwrap());
        assert!(join.allows(&room("team-red")) && send.allows(&room("lobby")));
        assert!(!join.allows(&room("ops")));
    }

    #[test]
    fn an_rs256_token_signed_by_our_key_is_accepted_and_others_are_not() {
        let claims = json!({"sub": "bob", "exp": now() + 60});
        let claims_read = verifier()
            .verify(&rs256(claims.clone(), RSA_PRIVATE))
            .unwrap();
        assert_eq!(claims_read.subject, "bob");
        assert!(claims_read.join.is_none() && claims_read.send.is_none());
        assert_eq!(
            verifier()
                .verify(&rs256(claims, OTHER_PRIVATE))
                .unwrap_err(),
            AuthError::BadToken
        );
    }

    #[test]
    fn join_and_send_claims_win_over_rooms() {
        let token = hs256(json!({
            "sub": "alice", "exp": now() + 60,
            "rooms": ["lobby"], "send": ["ops"],
        }));
        let claims = verifier().verify(&token).unwrap();
        assert!(claims.join.unwrap().allows(&room("lobby")));
        let send = claims.send.unwrap();
        assert!(send.allows(&room("ops")) && !send.allows(&room("lobby")));
        let token = hs256(json!({"sub": "alice", "exp": now() + 60, "join": ["lobby"]}));
        let claims = verifier().verify(&token).unwrap();
        assert!(
            claims.send.unwrap().allows(&room("lobby")),
            "send follows join"
        );
    }

    #[test]
    fn an_expiry_past_what_a_clock_holds_is_taken_as_a_century_not_a_panic() {
        for exp in [u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40] {
            let token = hs256(json!({"sub": "alice", "exp": exp}));
            let claims = verifier().verify(&token).expect("a valid token");
            let left = claims.expires_at.duration_since(SystemTime::now()).unwrap();
            assert!(left <= MAX_TOKEN_LIFETIME, "exp {exp}");
            assert!(left > MAX_TOKEN_LIFETIME / 2, "exp {exp}");
        }
    }

    #[test]
    fn expired_and_premature_tokens_are_refused_as_such() {
        let expired = hs256(json!({"sub": "alice", "exp": now() - 1}));
        assert_eq!(
            verifier().verify(&expired).unwrap_err(),
            AuthError::TokenExpired
        );
        let early = hs256(json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 60}));
        assert_eq!(
            verifier().verify(&early).unwrap_err(),
            AuthError::TokenNotYetValid
        );
        let nearly = hs256(json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 2}));
        assert!(verifier().verify(&nearly).is_ok(), "within the nbf leeway");
    }

    #[test]
    fn tokens_without_sub_or_exp_or_with_bad_claims_are_refused() {
        let v = verifier();
        for claims in [
            json!({"sub": "alice"}),
            json!({"exp": now() + 60}),
            json!({"sub": "alice", "exp": now() + 60, "rooms": ["a b"]}),
            json!({"sub": "alice", "exp": now() + 60, "rooms": "lobby"}),
            json!({"sub": "alice", "exp": "tomorrow"}),
            json!({"sub": "alice", "exp": now() + 60, "aud": "elsewhere"}),
        ] {
            assert_eq!(
                v.verify(&hs256(claims.clone())).unwrap_err(),
                AuthError::BadToken,
                "{claims}"
            );
        }
        assert_eq!(v.verify("not.a.jwt").unwrap_err(), AuthError::BadToken);
        assert_eq!(v.verify("").unwrap_err(), AuthError::BadToken);
    }

    #[test]
    fn tokens_signed_otherwise_are_refused() {
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let wrong_secret = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"another secret, 32 bytes or more!"),
        )
        .unwrap();
        assert_eq!(
            verifier().verify(&wrong_secret).unwrap_err(),
            AuthError::BadToken
        );
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(verifier().verify(&hs384).unwrap_err(), AuthError::BadToken);
        // alg: none, with the claims unsigned.
        let unsigned = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(claims.to_string().as_bytes())
        );
        assert_eq!(
            verifier().verify(&unsigned).unwrap_err(),
            AuthError::BadToken
        );
        // RS256 refused when only an HS256 secret is configured (and the
        // reverse), so a public key is never taken for an HMAC secret.
        let hs_only = JwtVerifier::new(Some((SECRET, "s")), None, None).unwrap();
        let rs = rs256(claims.clone(), RSA_PRIVATE);
        assert_eq!(hs_only.verify(&rs).unwrap_err(), AuthError::BadToken);
        let rs_only = JwtVerifier::new(None, Some((RSA_PUBLIC.as_bytes(), "k")), None).unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(rs_only.verify(&forged).unwrap_err(), AuthError::BadToken);
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn an_audience_when_set_must_be_the_tokens() {
        let v = JwtVerifier::new(Some((SECRET, "s")), None, Some("switchboard".into())).unwrap();
        let ours = hs256(json!({"sub": "a", "exp": now() + 60, "aud": "switchboard"}));
        let theirs = hs256(json!({"sub": "a", "exp": now() + 60, "aud": "billing"}));
        let none = hs256(json!({"sub": "a", "exp": now() + 60}));
        assert!(v.verify(&ours).is_ok());
        assert_eq!(v.verify(&theirs).unwrap_err(), AuthError::BadToken);
        assert_eq!(v.verify(&none).unwrap_err(), AuthError::BadToken);
    }

    #[test]
    fn weak_secrets_and_bad_keys_are_refused_at_load() {
        let error = JwtVerifier::new(Some((b"short", "--jwt-secret")), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "--jwt-secret: an HS256 secret needs at least 32 bytes, this one has 5"
            ),
            "{error}"
        );
        let error = JwtVerifier::new(None, Some((b"not a pem", "key.pem")), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("key.pem: not an RSA public key"),
            "{error}"
        );
    }
}
