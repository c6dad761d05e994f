//! TLS listeners: encrypted clients in the same rooms as plain ones, a
//! plaintext client on a TLS port closed in bounded time, client
//! certificates naming clients, certificates rotated by SIGHUP while
//! clients stay, HTTPS and WSS, and `openssl s_client` as an outside client.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use switchboard::config::{HttpSpec, TlsFiles};
use switchboard::{AnyClient, Client, ClientTls, Config, ListenerSpec, SelfSigned, ServerLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A directory for one test's certificates, removed when dropped.
struct Dir(TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(TempDir::new("tls-test"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a self-signed certificate for localhost as NAME.pem and
    /// NAME-key.pem; returns the certificate's path.
    fn certificate(&self, name: &str) -> PathBuf {
        let made = SelfSigned::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), made.cert_pem).unwrap();
        std::fs::write(self.path(&format!("{name}-key.pem")), made.key_pem).unwrap();
        self.path(&format!("{name}.pem"))
    }

    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: Some(self.path(&format!("{name}.pem"))),
            key: Some(self.path(&format!("{name}-key.pem"))),
            ..TlsFiles::default()
        }
    }
}

/// A server with a `tls://` and a plain text listener on loopback.
fn tls_config(dir: &Dir) -> Config {
    dir.certificate("server");
    Config {
        listeners: vec![
            "tls://127.0.0.1:0".parse().unwrap(),
            "text://127.0.0.1:0".parse().unwrap(),
        ],
        tls: dir.files("server"),
        ..Config::local()
    }
}

/// [`tls_config`] with HTTPS: the console, the API and `/ws` over TLS.
fn https_config(dir: &Dir) -> Config {
    Config {
        http: switchboard::config::HttpSettings {
            listen: Some(HttpSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: true,
                auth: false,
            }),
            ..Default::default()
        },
        ..tls_config(dir)
    }
}

fn listener(listeners: &[ListenerSpec], scheme: &str) -> SocketAddr {
    listeners
        .iter()
        .find(|l| l.scheme() == scheme)
        .unwrap_or_else(|| panic!("no {scheme} listener"))
        .addr
}

/// A TLS text client that has read its welcome; returns it and its name.
async fn join_tls(port: u16, tls: &ClientTls) -> (AnyClient, String) {
    let mut client = within(
        "a TLS connection",
        Client::connect_tls(&format!("localhost:{port}"), tls),
    )
    .await
    .expect("the TLS handshake succeeds");
    let name = read_welcome(&mut client).await;
    (client, name)
}

#[tokio::test]
async fn a_tls_client_and_a_plain_client_share_a_room() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();
    let (mut secure, secure_name) =
        join_tls(listener(&server.listeners, "tls").port(), &trust).await;
    let (mut plain, plain_name) = join(listener(&server.listeners, "text")).await;

    secure.say("sent encrypted").await.unwrap();
    let (_, from, text) = expect_message(&mut plain).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        (secure_name.as_str(), "sent encrypted")
    );
    plain.say("sent in clear").await.unwrap();
    let (_, from, text) = expect_message(&mut secure).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        (plain_name.as_str(), "sent in clear")
    );
    server.stop().await;
}

/// A line of 60 KB is four TLS records, and a read of the server's ends
/// inside one: what a read cut short is kept until the rest comes, both
/// ways.
#[tokio::test]
async fn a_line_longer_than_a_tls_record_crosses_whole_both_ways() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();
    let (mut secure, _) = join_tls(listener(&server.listeners, "tls").port(), &trust).await;
    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    let line = |seed: u8| -> String {
        (0..60_000u32)
            .map(|i| char::from(b'a' + ((i as u8).wrapping_add(seed)) % 26))
            .collect()
    };

    secure.say(&line(0)).await.unwrap();
    let (_, _, text) = expect_message(&mut plain).await;
    assert!(
        text == line(0),
        "the line arrived changed ({} bytes)",
        text.len()
    );
    plain.say(&line(7)).await.unwrap();
    let (_, _, text) = expect_message(&mut secure).await;
    assert!(
        text == line(7),
        "the line arrived changed ({} bytes)",
        text.len()
    );
    server.stop().await;
}

/// TLS 1.2 is still what some devices' stacks speak.
#[tokio::test]
async fn a_tls_1_2_client_is_served_like_any_other() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let port = listener(&server.listeners, "tls").port();
    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    let (_openssl, mut to_openssl, mut from_openssl) =
        openssl_client(&dir, port, &["-tls1_2"]).await;
    to_openssl.write_all(b"hello over TLS 1.2\n").await.unwrap();
    let (_, _, text) = expect_message(&mut plain).await;
    assert_eq!(text, "hello over TLS 1.2");
    plain.say("and back").await.unwrap();
    let mut heard = String::new();
    loop {
        heard.clear();
        within(
            "a message over TLS 1.2",
            tokio::io::AsyncBufReadExt::read_line(&mut from_openssl, &mut heard),
        )
        .await
        .unwrap();
        if heard.contains("and back") {
            break;
        }
    }
    drop(to_openssl);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_does_not_connect() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let stranger = ClientTls::with_ca(&dir.certificate("stranger")).unwrap();
    let port = listener(&server.listeners, "tls").port();
    let error = Client::connect_tls(&format!("localhost:{port}"), &stranger)
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(
        format!("{error:#}").contains("certificate"),
        "the error says why: {error:#}"
    );
    server.stop().await;
}

#[tokio::test]
async fn plaintext_and_silence_on_a_tls_port_are_closed_in_bounded_time() {
    let dir = Dir::new();
    let config = Config {
        tls_handshake_timeout: Duration::from_secs(1),
        ..tls_config(&dir)
    };
    let server = TestServer::start(config).await;
    let addr = listener(&server.listeners, "tls");

    // `nc` typing a line: not a TLS record, refused at once.
    let mut chatty = TcpStream::connect(addr).await.unwrap();
    chatty.write_all(b"hello\n").await.unwrap();
    let mut answer = Vec::new();
    within(
        "the server to close a plaintext client",
        chatty.read_to_end(&mut answer),
    )
    .await
    .ok();
    assert!(
        !String::from_utf8_lossy(&answer).contains("welcome"),
        "no service in plaintext"
    );

    // A client that says nothing: closed at the handshake timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut nothing = Vec::new();
    within_for(
        Duration::from_secs(5),
        "the server to close a silent client after its handshake timeout",
        silent.read_to_end(&mut nothing),
    )
    .await
    .ok();
    assert!(nothing.is_empty());

    // And TLS clients are served as ever.
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();
    join_tls(addr.port(), &trust).await;
    server.stop().await;
}

/// Writes a CA, and a client certificate it signed for `common_name`;
/// returns the paths of the CA, the client's certificate and its key.
fn client_ca_and_certificate(dir: &Dir, common_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "switchboard test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut client = CertificateParams::new(Vec::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, common_name);
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path("client.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path("client-key.pem"), key.serialize_pem()).unwrap();
    (
        dir.path("ca.pem"),
        dir.path("client.pem"),
        dir.path("client-key.pem"),
    )
}

#[tokio::test]
async fn a_client_certificate_names_its_client_and_no_certificate_gets_no_service() {
    let dir = Dir::new();
    let (ca, cert, key) = client_ca_and_certificate(&dir, "sensor-7");
    let mut config = tls_config(&dir);
    config.tls.client_ca = Some(ca);
    let server = TestServer::start(config).await;
    let port = listener(&server.listeners, "tls").port();
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();

    let with_certificate = trust.clone().with_client_certificate(&cert, &key).unwrap();
    let (mut sensor, name) = join_tls(port, &with_certificate).await;
    assert_eq!(
        name, "sensor-7",
        "the certificate's common name is the name"
    );
    let (mut watcher, _) = join(listener(&server.listeners, "text")).await;
    sensor.say("21.5 C").await.unwrap();
    let (_, from, _) = expect_message(&mut watcher).await;
    assert_eq!(from, "sensor-7");

    // The same certificate twice: the second is told why it is not served.
    let mut twin = Client::connect_tls(&format!("localhost:{port}"), &with_certificate)
        .await
        .unwrap();
    let said = read_to_end(&mut twin).await.join("\n");
    assert!(
        said.contains("sensor-7") && said.contains("not available"),
        "the second connection hears why: {said}"
    );

    // Without a certificate: the handshake fails (on the client's first
    // read, in TLS 1.3), and nothing is served.
    let served = async {
        let mut anonymous = Client::connect_tls(&format!("localhost:{port}"), &trust).await?;
        anonymous.next_line().await.map_err(anyhow::Error::from)
    };
    if let Ok(Some(line)) = within("a client without a certificate to be refused", served).await {
        panic!("a client without a certificate was served: {line}");
    }
    server.stop().await;
}

#[tokio::test]
async fn https_serves_the_api_and_websocket_clients_over_tls() {
    let dir = Dir::new();
    let server = TestServer::start(https_config(&dir)).await;
    let port = server.http.expect("an HTTPS listener").port();
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();

    let mut stream = trust.connect(&format!("localhost:{port}")).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the HTTPS answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    let stream = trust.connect(&format!("localhost:{port}")).await.unwrap();
    let (mut browser, _) = within(
        "a WSS handshake",
        tokio_tungstenite::client_async(format!("wss://localhost:{port}/ws"), stream),
    )
    .await
    .expect("the WebSocket upgrade over TLS succeeds");
    browser
        .send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"say","text":"from a browser, over WSS"}"#,
        ))
        .await
        .unwrap();
    let (_, _, text) = expect_message(&mut plain).await;
    assert_eq!(text, "from a browser, over WSS");

    // `switchboard status` asks the API over HTTPS, trusting the CA given,
    // and refuses a server it cannot check.
    let url = format!("https://localhost:{port}");
    let ca = dir.path("server.pem");
    let looked = run(&["status", &url, "--json", "--ca", ca.to_str().unwrap()]).await;
    assert!(looked.status.success(), "{looked:?}");
    let look: serde_json::Value = serde_json::from_slice(&looked.stdout).unwrap();
    assert_eq!(look["stats"]["clients"]["current"], 2, "{look}");
    let untrusted = run(&["status", &url]).await;
    assert!(!untrusted.status.success());
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("certificate"), "{said}");
    server.stop().await;
}

fn copy(dir: &Dir, from: &str, to: &str) {
    for suffix in [".pem", "-key.pem"] {
        let (from, to) = (
            dir.path(&format!("{from}{suffix}")),
            dir.path(&format!("{to}{suffix}")),
        );
        // Written beside and renamed, as certbot does: never half a file.
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(staged, to).unwrap();
    }
}

#[tokio::test]
async fn sighup_rotates_the_certificate_while_clients_stay_connected() {
    let dir = Dir::new();
    dir.certificate("old");
    dir.certificate("new");
    copy(&dir, "old", "live");
    let (cert, key) = (dir.path("live.pem"), dir.path("live-key.pem"));
    let mut server = BinaryServer::start(&[
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let port = server.addr(0).port();
    let trusts_old = ClientTls::with_ca(&dir.path("old.pem")).unwrap();
    let trusts_new = ClientTls::with_ca(&dir.path("new.pem")).unwrap();
    let (mut staying, staying_name) = join_tls(port, &trusts_old).await;

    copy(&dir, "new", "live");
    server.hang_up();
    server
        .expect_log("reloaded the config: TLS certificate")
        .await;

    let (mut newcomer, _) = join_tls(port, &trusts_new).await;
    assert!(
        Client::connect_tls(&format!("localhost:{port}"), &trusts_old)
            .await
            .is_err(),
        "new handshakes present the new certificate"
    );
    staying.say("still here").await.unwrap();
    let (_, from, text) = expect_message(&mut newcomer).await;
    assert_eq!((from, text.as_str()), (staying_name, "still here"));

    // A broken file on the next reload keeps the certificate in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.hang_up();
    server
        .expect_log("cannot reload the TLS certificate, the current one stays")
        .await;
    join_tls(port, &trusts_new).await;
}

/// `openssl s_client` connected to the TLS listener on `port`, trusting
/// the server's certificate, with `options`; its welcome read. Returns
/// the process (killed when dropped), its stdin and its stdout.
async fn openssl_client(
    dir: &Dir,
    port: u16,
    options: &[&str],
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::BufReader<tokio::process::ChildStdout>,
) {
    let mut openssl = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(options)
        .arg("-CAfile")
        .arg(dir.path("server.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs (apt-get install openssl)");
    let to_openssl = openssl.stdin.take().unwrap();
    let mut from_openssl = tokio::io::BufReader::new(openssl.stdout.take().unwrap());
    let mut welcome = String::new();
    within(
        "the welcome through openssl",
        tokio::io::AsyncBufReadExt::read_line(&mut from_openssl, &mut welcome),
    )
    .await
    .unwrap();
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    (openssl, to_openssl, from_openssl)
}

#[tokio::test]
async fn openssl_s_client_is_a_client_like_any_other() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let port = listener(&server.listeners, "tls").port();
    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    let (_openssl, mut to_openssl, _from_openssl) =
        openssl_client(&dir, port, &["-servername", "localhost"]).await;
    to_openssl.write_all(b"hello from openssl\n").await.unwrap();
    let (_, _, text) = expect_message(&mut plain).await;
    assert_eq!(text, "hello from openssl");
    drop(to_openssl);
    server.stop().await;
}

/// After a TLS 1.3 handshake the server protects the records itself, with
/// the keys rustls hands over: a client that updates its keys, and asks
/// the server to update its own (openssl's `K` and `k` commands), is
/// followed both ways.
#[tokio::test]
async fn openssl_updating_its_keys_is_followed_both_ways() {
    let dir = Dir::new();
    let server = TestServer::start(tls_config(&dir)).await;
    let port = listener(&server.listeners, "tls").port();
    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    // Commands are read only when the end of input is not ignored.
    let (mut openssl, mut to_openssl, mut from_openssl) =
        openssl_client(&dir, port, &["-tls1_3", "-no_ign_eof"]).await;
    let mut said = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        openssl.stderr.take().unwrap(),
    ));
    for (command, round) in [("K", 1), ("k", 2), ("K", 3)] {
        to_openssl
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        // openssl takes a line starting with K as its command only if it
        // comes alone: the next waits until it says it updated.
        within("openssl's key update", async {
            while let Some(line) = said.next_line().await.unwrap() {
                if line.contains("KEYUPDATE") {
                    return;
                }
            }
            panic!("openssl ended before its key update");
        })
        .await;
        let line = format!("after key update {round}");
        to_openssl
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let (_, _, text) = expect_message(&mut plain).await;
        assert_eq!(text, line);
        let answer = format!("heard you, round {round}");
        plain.say(&answer).await.unwrap();
        // Past the room's notices (the plain client's arrival).
        within("the answer through openssl", async {
            loop {
                let mut heard = String::new();
                let read = tokio::io::AsyncBufReadExt::read_line(&mut from_openssl, &mut heard);
                assert!(read.await.unwrap() > 0, "openssl ended before the answer");
                if heard.trim_end().ends_with(&answer) {
                    return;
                }
                assert!(heard.starts_with("* "), "openssl read {heard:?}");
            }
        })
        .await;
    }
    drop(to_openssl);
    server.stop().await;
}

/// Chromium (BoringSSL) loads the console over HTTPS and its live feed
/// (`/ws` over TLS 1.3, the records protected by the server itself after
/// the handshake) shows what a room says, as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_over_https_in_chromium_goes_live() {
    let dir = Dir::new();
    let server = TestServer::start(https_config(&dir)).await;
    let https = server.http.expect("an HTTPS listener");
    let (mut plain, _) = join(listener(&server.listeners, "text")).await;
    let chrome = crate::browser::console_over_https(https).await;
    chrome.click("#rooms tr[data-room=\"lobby\"]").await;
    chrome
        .say_until_live(&mut plain, "the line live over HTTPS", "said over TLS 1.3")
        .await;
    chrome.screenshot("17-console-over-https").await;
    server.stop().await;
}

#[test]
fn tls_without_a_certificate_is_refused_at_start_naming_the_fix() {
    let config = Config {
        listeners: vec!["json+tls://127.0.0.1:0".parse().unwrap()],
        ..Config::local()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("json+tls://127.0.0.1:0") && error.contains("--tls-cert"),
        "{error}"
    );
}

/// A plain client that took a certificate's name before its holder ever
/// connected (nothing told it the name was one) gives it up when the
/// holder comes, told why; the holder gets its name.
#[tokio::test]
async fn a_client_that_took_a_certificates_name_first_gives_it_up_to_its_holder() {
    let dir = Dir::new();
    let (ca, cert, key) = client_ca_and_certificate(&dir, "sensor-1");
    let mut config = tls_config(&dir);
    config.tls.client_ca = Some(ca);
    let server = TestServer::start(config).await;
    let (mut squatter, _) = join(listener(&server.listeners, "text")).await;
    squatter.send_line("/nick sensor-1").await.unwrap();
    expect_line(
        &mut squatter,
        "the name taken",
        |l| matches!(l, ServerLine::Notice(t) if t.contains("known as sensor-1")),
    )
    .await;

    let port = listener(&server.listeners, "tls").port();
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();
    let with_certificate = trust.with_client_certificate(&cert, &key).unwrap();
    let (_sensor, name) = join_tls(port, &with_certificate).await;
    assert_eq!(name, "sensor-1");

    let told = read_to_end(&mut squatter).await;
    assert!(
        told.iter()
            .any(|l| l.contains("sensor-1 is given by a client certificate")),
        "{told:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_certificates_name_stays_its_holders() {
    let dir = Dir::new();
    let (ca, cert, key) = client_ca_and_certificate(&dir, "sensor-1");
    let mut config = tls_config(&dir);
    config.tls.client_ca = Some(ca);
    let server = TestServer::start(config).await;
    let port = listener(&server.listeners, "tls").port();
    let trust = ClientTls::with_ca(&dir.path("server.pem")).unwrap();
    let with_certificate = trust.with_client_certificate(&cert, &key).unwrap();
    let (mut sensor, name) = join_tls(port, &with_certificate).await;
    assert_eq!(name, "sensor-1");
    // Its holder cannot leave it.
    sensor.send_line("/nick someone-else").await.unwrap();
    expect_line(&mut sensor, "the refusal", |l| {
        matches!(l, ServerLine::Error(t) if t.contains("your name is your user name") || t.contains("logged in"))
    })
    .await;
    drop(sensor);
    // While it is away, a plain client cannot take the name, nor a look-alike
    // of it, and so cannot receive its direct messages.
    let (mut squatter, _) = join(listener(&server.listeners, "text")).await;
    within("the name to be free", async {
        loop {
            squatter.send_line("/nick sensor-1").await.unwrap();
            let answer = expect_line(&mut squatter, "an answer", |l| {
                matches!(l, ServerLine::Error(_))
                    || matches!(l, ServerLine::Notice(t) if t.contains("known as"))
            })
            .await;
            match answer {
                // Still held by the departing connection: try again.
                ServerLine::Error(t) if t.contains("is taken") => tokio::task::yield_now().await,
                ServerLine::Error(t) => {
                    assert!(
                        t.contains("belongs to the holder of a client certificate"),
                        "{t}"
                    );
                    return;
                }
                other => panic!("a plain client took the certificate's name: {other:?}"),
            }
        }
    })
    .await;
    squatter.send_line("/nick SENSOR-1").await.unwrap();
    expect_line(
        &mut squatter,
        "the look-alike's refusal",
        |l| matches!(l, ServerLine::Error(t) if t.contains("client certificate")),
    )
    .await;
    // Its holder gets it back.
    let (_, name) = join_tls(port, &with_certificate).await;
    assert_eq!(name, "sensor-1");
    server.stop().await;
}
