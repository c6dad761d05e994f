//! Password hashes: argon2id, made by `switchboard passwd`, checked off
//! the async threads and a few at a time.
//!
//! Checking a password is slow on purpose (tens of milliseconds of CPU
//! and 19 MiB of memory), so that guessing is slow too. That same cost
//! would let a flood of logins occupy every thread of the server, so
//! [`Verifier`] runs checks on tokio's blocking pool, at most one per CPU
//! at a time; the others wait their turn (bounded by the caller's login
//! deadline).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Longest password accepted, in bytes. Argon2 takes any length, but no
/// person types more, and a longer one is refused before any work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed, or a hash not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The password was empty.
    #[error("the password is empty")]
    Empty,
    /// The password was longer than [`MAX_PASSWORD_BYTES`].
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// The hash is not an argon2id PHC string
    /// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    #[error("not an argon2id password hash ($argon2id$v=19$m=...,t=...,p=...$...): {0} (make one with `switchboard passwd USER`)")]
    NotArgon2id(String),
    /// Hashing failed (the random salt could not be drawn).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// The argon2id hasher with the parameters OWASP recommends (as of 2024)
/// for argon2id: 19 MiB of memory, 2 passes, 1 lane. About 20 to 50 ms
/// on a server core: slow for a guesser, unnoticeable at a login.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with argon2id and a fresh random salt, as a PHC
/// string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`) for the users
/// file. Slow on purpose: call it off the async threads.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Checks that `phc` is an argon2id hash whose parameters argon2 accepts,
/// so that a users file with a bcrypt or argon2i hash, or a typo in one,
/// is refused when it is loaded rather than failing every login.
pub fn check_hash(phc: &str) -> Result<(), PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError::NotArgon2id(e.to_string()))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(PasswordError::NotArgon2id(format!(
            "the algorithm is {}",
            parsed.algorithm
        )));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(PasswordError::NotArgon2id("no salt or no hash".into()));
    }
    Params::try_from(&parsed).map_err(|e| PasswordError::NotArgon2id(e.to_string()))?;
    Ok(())
}

/// Whether `password` matches the argon2id hash `phc`, using the
/// parameters written in the hash. A hash that does not parse matches
/// nothing. Slow on purpose: call it off the async threads, or use a
/// [`Verifier`].
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, with the same parameters as real
/// ones, checked when the user does not exist: an unknown user then
/// costs as long to refuse as a wrong password, so timing cannot tell
/// which user names exist. Made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("switchboard: no such user").expect("hashing a constant works"))
}

/// Runs password checks on the blocking pool, at most `limit` at once,
/// so logins cannot take every thread of the server (nor the memory of
/// thousands of simultaneous argon2 runs). Shared by every
/// [`Authenticator`](super::Authenticator) of a server, across reloads.
#[derive(Debug, Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
}

impl Verifier {
    /// A verifier running at most `limit` checks at once (at least one).
    pub fn new(limit: usize) -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    /// A verifier running one check per CPU at once: enough to use the
    /// machine for logins when many arrive, and never more.
    pub fn per_cpu() -> Self {
        Verifier::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Makes the hash that stands in for unknown users now, so the first
    /// unknown user is not slower to refuse than a wrong password.
    pub fn prepare(&self) {
        dummy_hash();
    }

    /// Whether `password` matches `phc`; with `None` (an unknown user),
    /// checks against a dummy hash and answers `false`, taking as long.
    /// Waits for a free slot first.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, VerifyError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| VerifyError::Unavailable)?;
        let password = password.to_owned();
        let known = phc.is_some();
        let phc = phc.map_or_else(|| dummy_hash().to_owned(), str::to_owned);
        // The permit goes with the check: a caller that gives up (its
        // deadline passed) does not free the slot of a check still running.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify(&password, &phc)
        })
        .await
        .map_err(|_| VerifyError::Unavailable)?;
        Ok(matched && known)
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::per_cpu()
    }
}

/// The check itself could not run (the runtime is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No blocking thread or slot could be had.
    #[error("the password could not be checked")]
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_with_owasp_parameters_and_a_random_salt() {
        let first = hash("correct horse").unwrap();
        let second = hash("correct horse").unwrap();
        assert!(
            first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{first}"
        );
        assert_ne!(first, second, "each hash has its own salt");
        check_hash(&first).unwrap();
    }

    #[test]
    fn the_right_password_matches_and_others_do_not() {
        let phc = hash("correct horse").unwrap();
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horse ", &phc));
        assert!(!verify("Correct horse", &phc));
        assert!(!verify("", &phc));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn empty_and_overlong_passwords_are_not_hashed() {
        assert_eq!(hash(""), Err(PasswordError::Empty));
        assert_eq!(
            hash(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(hash(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
    }

    #[test]
    fn hashes_other_than_argon2id_are_refused() {
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmE";
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        let no_hash = "$argon2id$v=19$m=19456,t=2,p=1";
        for bad in [argon2i, bcrypt, no_hash, "", "hunter2"] {
            let error = check_hash(bad).unwrap_err();
            assert!(matches!(error, PasswordError::NotArgon2id(_)), "{bad}");
            assert!(error.to_string().contains("switchboard passwd"), "{error}");
        }
    }

    #[tokio::test]
    async fn the_verifier_checks_off_the_async_threads() {
        // The test's runtime has one thread: a task on it runs during a
        // check only if the check is not on that thread.
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        let verifier = Verifier::new(1);
        let phc = hash("s3cret").unwrap();
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(verifier.verify("s3cret", Some(&phc)).await, Ok(true));
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > before,
            "the async thread was blocked for the whole check"
        );
        ticker.abort();
        assert_eq!(verifier.verify("guess", Some(&phc)).await, Ok(false));
        assert_eq!(
            verifier.verify("switchboard: no such user", None).await,
            Ok(false),
            "an unknown user never matches, not even the dummy's password"
        );
    }

    #[tokio::test]
    async fn at_most_the_limit_of_checks_run_at_once() {
        let verifier = Verifier::new(2);
        let phc = hash("s3cret").unwrap();
        let held = verifier
            .permits
            .clone()
            .acquire_many_owned(2)
            .await
            .unwrap();
        let waiting = {
            let verifier = verifier.clone();
            let phc = phc.clone();
            tokio::spawn(async move { verifier.verify("s3cret", Some(&phc)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no slot, no check");
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(true));
    }
}
