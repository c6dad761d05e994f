//! `switchboard passwd USER` as an operator runs it: the real binary, a
//! password piped in, and the entry it prints appended to a users file
//! that the server's own loader reads and logs alice in with.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use switchboard::auth::{password, AuthError, AuthSettings, Authenticator, Users};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Runs `switchboard passwd ARGS` with `stdin` piped in.
fn passwd(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("passwd")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchboard binary runs");
    // A refusal may come before the input is read: the pipe is then
    // closed, and what it says is in the output.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    // Waited for with a limit: a regression that waits for more input
    // fails the test instead of hanging it.
    let pid = child.id();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match output.recv_timeout(crate::common::PATIENCE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!(
                "`switchboard passwd {args:?}` did not exit within {:?}",
                crate::common::PATIENCE
            )
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A users file of the test's own in the temp directory.
fn users_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "switchboard-passwd-{}-{test}.toml",
        std::process::id()
    ))
}

#[tokio::test]
async fn the_printed_entry_appended_to_a_users_file_logs_the_user_in() {
    let output = passwd(&["alice"], b"correct horse battery\n");
    assert!(output.status.success(), "{}", stderr(&output));
    let entry = stdout(&output);
    assert!(entry.contains("[users.alice]\n"), "{entry}");
    assert!(
        entry.contains("password = \"$argon2id$v=19$m=19456,t=2,p=1$"),
        "{entry}"
    );
    assert!(entry.contains("join = [\"*\"]"), "{entry}");
    assert!(entry.contains("send = [\"*\"]"), "{entry}");
    assert!(entry.contains("# max-connections = 1"), "{entry}");
    assert!(
        !entry.contains("correct horse"),
        "the password is not printed"
    );

    // Appended after another entry, as `>> users.toml` does.
    let bob = passwd(&["bob", "--allow-short"], b"builder\n");
    let path = users_path("append");
    std::fs::write(&path, stdout(&bob) + &entry).unwrap();

    let users = Users::load(&path).unwrap();
    let alice = users.find("alice").expect("alice is in the file");
    assert!(alice.join().allows_all() && alice.send().allows_all());
    let hash = alice.password_hash().unwrap();
    assert!(password::verify("correct horse battery", hash));
    assert!(
        !password::verify("correct horse battery\n", hash),
        "the line end is not part of it"
    );

    let auth = Authenticator::load(AuthSettings {
        users_file: Some(path.clone()),
        ..AuthSettings::default()
    })
    .unwrap();
    let identity = auth
        .login("alice", "correct horse battery", IP)
        .await
        .unwrap();
    assert_eq!(identity.user.as_deref(), Some("alice"));
    assert_eq!(
        auth.login("bob", "wrong", IP).await.unwrap_err(),
        AuthError::BadCredentials
    );
    assert!(auth.login("bob", "builder", IP).await.is_ok());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_name_toml_cannot_leave_bare_is_quoted() {
    let output = passwd(&["小明"], b"secret-pw\r\n");
    assert!(output.status.success(), "{}", stderr(&output));
    let entry = stdout(&output);
    assert!(entry.contains("[users.\"小明\"]\n"), "{entry}");
    let users = Users::parse(&entry, Path::new("<stdout>")).unwrap();
    let user = users.find("小明").unwrap();
    assert!(password::verify("secret-pw", user.password_hash().unwrap()));
}

#[test]
fn an_empty_password_is_refused() {
    for input in [&b""[..], b"\n"] {
        let output = passwd(&["alice"], input);
        assert!(!output.status.success());
        assert!(stdout(&output).is_empty());
        assert!(
            stderr(&output).contains("the password is empty"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn a_short_password_is_refused_unless_allowed() {
    let output = passwd(&["alice"], b"1234567\n");
    assert!(!output.status.success());
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("the password has 7 characters: at least 8 are needed"),
        "{}",
        stderr(&output)
    );
    // Characters, not bytes: eight CJK characters are eight.
    let output = passwd(&["alice"], "密码密码密码密码\n".as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    let output = passwd(&["alice", "--allow-short"], b"1234567\n");
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_name_that_cannot_be_a_user_is_refused() {
    for name in ["a b", "аlice", ""] {
        let output = passwd(&[name], b"secret\n");
        assert!(!output.status.success(), "{name:?} was accepted");
        assert!(stdout(&output).is_empty());
        assert!(
            stderr(&output).contains("cannot be a user name"),
            "{}",
            stderr(&output)
        );
    }
}
