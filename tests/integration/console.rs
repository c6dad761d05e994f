//! The web console end to end, in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, as `.ci/run` installs them), driven
//! over WebDriver: what an operator does on the page reaches real TCP
//! clients, and what they do shows on the page. Each step saves a
//! screenshot under `target/screenshots/`.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;
use switchboard::{Client, Config, ServerLine};
use tokio::process::{Child, Command};

/// Chromium under chromedriver, on a port of its own.
struct Chrome {
    _driver: Child,
    browser: Browser,
    _profile: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Chrome {
    async fn start() -> Chrome {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: the console tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = TempDir::new("chromium");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let browser = within_for(
            Duration::from_secs(30),
            "chromedriver and Chromium",
            async {
                loop {
                    let connected = ClientBuilder::new(connector.clone())
                        .capabilities(capabilities.clone())
                        .connect(&format!("http://127.0.0.1:{port}"))
                        .await;
                    match connected {
                        Ok(browser) => return browser,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            },
        )
        .await;
        Chrome {
            _driver: driver,
            browser,
            _profile: profile,
        }
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.browser.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the element at `css` has text satisfying `wanted`.
    async fn wait_text(&self, what: &str, css: &str, wanted: impl Fn(&str) -> bool) -> String {
        within(what, async {
            loop {
                if let Ok(elements) = self.browser.find_all(Locator::Css(css)).await {
                    for element in elements {
                        if let Ok(text) = element.text().await {
                            if wanted(&text) {
                                return text;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    async fn click(&self, css: &str) {
        let element = within(&format!("{css} to be there"), async {
            loop {
                if let Ok(element) = self.browser.find(Locator::Css(css)).await {
                    if element.is_displayed().await.unwrap_or(false) {
                        return element;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let element = self
            .browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        let element = self
            .browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        element.select_by_value(value).await.unwrap();
    }
}

async fn console(http: SocketAddr) -> Chrome {
    let chrome = Chrome::start().await;
    chrome
        .browser
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();
    chrome
        .wait_text("the live feed", "#status", |t| {
            t.to_lowercase().contains("live")
        })
        .await;
    chrome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_talks_to_kicks_and_opens_ports_for_tcp_clients() {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..config_with(&["127.0.0.1:0", "raw://127.0.0.1:0"])
    };
    let server = TestServer::start(config).await;
    let http = server.http.unwrap();
    // A device that connected with a plain socket.
    let (mut device, _) = join(server.text_addr()).await;
    device.send_line("/nick sensor-1").await.unwrap();
    sync(&mut device).await;

    let chrome = console(http).await;
    chrome
        .wait_text(
            "the TCP client in the clients table",
            "#clients tr[data-client-id] .name",
            |t| t == "sensor-1",
        )
        .await;
    chrome.screenshot("1-clients").await;

    // What the device says shows on the page, as text and as hex.
    chrome.click("#rooms tr[data-room=\"lobby\"]").await;
    within("the watch to start", async {
        loop {
            device.send_line("Hello").await.unwrap();
            let found = tokio::time::timeout(
                Duration::from_millis(500),
                chrome.wait_text("the line", ".traffic-item .text", |t| t.contains("Hello")),
            )
            .await;
            if found.is_ok() {
                break;
            }
        }
    })
    .await;
    chrome
        .wait_text("the line as hex", ".traffic-item .hex", |t| {
            t.contains("48 65 6C 6C 6F")
        })
        .await;
    // A device's binary frame shows honestly, as hex.
    let mut plc = tokio::net::TcpStream::connect(server.addr(switchboard::Mode::Raw))
        .await
        .unwrap();
    let frame = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd];
    tokio::io::AsyncWriteExt::write_all(&mut plc, &frame)
        .await
        .unwrap();
    chrome
        .wait_text("the device's bytes as hex", ".traffic-item .hex", |t| {
            t.contains("01 03 00 00 00 0A C5 CD")
        })
        .await;
    device
        .send_line("temperature=21.5 humidity=40%")
        .await
        .unwrap();
    chrome
        .wait_text("the reading", ".traffic-item .text", |t| {
            t.contains("temperature")
        })
        .await;
    chrome
        .browser
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    chrome.screenshot("2-traffic").await;

    // Sending from the page reaches the device.
    chrome.fill("#send-target", "#lobby").await;
    chrome.select("#send-format", "text").await;
    chrome.fill("#send-body", "from the page").await;
    chrome.click("#send-button").await;
    // (The device heard the PLC's bytes too.)
    let sent = expect_line(
        &mut device,
        "the page's message",
        |l| matches!(l, ServerLine::Message { from, .. } if from == "admin"),
    )
    .await;
    assert_eq!(
        sent,
        ServerLine::Message {
            room: "lobby".into(),
            from: "admin".into(),
            text: "from the page".into()
        }
    );
    chrome
        .wait_text("the send result", "#send-result", |t| {
            t.contains("Delivered to 2")
        })
        .await;
    chrome.screenshot("3-sent").await;

    // Opening a listener from the page lets a TCP client in on the new port.
    chrome.click("#open-listener").await;
    chrome.select("#listener-mode", "text").await;
    chrome.fill("#listener-addr", "127.0.0.1").await;
    chrome.fill("#listener-port", "0").await;
    chrome.fill("#listener-room", "bench-test").await;
    chrome.click("#listener-submit").await;
    let addr = chrome
        .wait_text(
            "the new listener",
            "#listeners tr[data-listener-id] .addr",
            |t| {
                // The configured listeners (text, and the HTTP one's WebSocket
                // clients) are listed too: the new one is neither.
                t.starts_with("127.0.0.1:")
                    && !t.ends_with(&format!(":{}", server.text_addr().port()))
                    && !t.ends_with(&format!(":{}", http.port()))
                    && !t.ends_with(&format!(":{}", server.addr(switchboard::Mode::Raw).port()))
            },
        )
        .await;
    let addr: SocketAddr = addr.trim().parse().expect("the listener's address");
    let mut visitor = Client::connect(addr)
        .await
        .expect("a client connects to the new port");
    let welcome = within("the welcome on the new port", visitor.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(welcome.contains("#bench-test"), "{welcome}");
    chrome.screenshot("4-listener").await;

    // Kicking from the page disconnects the device, with the reason.
    let row = "#clients tr[data-client-id]";
    within("the device's kick button", async {
        loop {
            for element in chrome.browser.find_all(Locator::Css(row)).await.unwrap() {
                let name = element
                    .find(Locator::Css(".name"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if name == "sensor-1" {
                    element
                        .find(Locator::Css(".kick"))
                        .await
                        .unwrap()
                        .click()
                        .await
                        .unwrap();
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    chrome.fill("#kick-reason", "maintenance window").await;
    chrome.screenshot("5-kick-dialog").await;
    chrome.click("#kick-confirm").await;
    let lines = read_to_end(&mut device).await;
    let last = lines.last().expect("a goodbye");
    assert!(
        last.contains("kicked by the server's admin: maintenance window"),
        "{last}"
    );
    chrome
        .wait_text(
            "the kick among the recent disconnects",
            "#closed .reason",
            |t| t.contains("kicked"),
        )
        .await;
    chrome.screenshot("6-disconnects").await;

    chrome.browser.close().await.unwrap();
    drop((visitor, plc));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_devices_with_their_identity_and_last_heartbeat() {
    // The devices file names the device.
    let dir = TempDir::new("console-devices");
    let devices = dir.join("devices");
    std::fs::write(&devices, "861234567890123 pump house 3\n").unwrap();
    let mut config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..config_with(&[
            "127.0.0.1:0",
            "raw://127.0.0.1:0?register=imei&heartbeat=hex:FE&auth=required",
        ])
    };
    config.auth.devices_file = Some(devices);
    let server = TestServer::start(config).await;
    let http = server.http.unwrap();
    let (mut app, _) = join(server.text_addr()).await;
    let mut dtu = tokio::net::TcpStream::connect(server.addr(switchboard::Mode::Raw))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut dtu, b"861234567890123")
        .await
        .unwrap();
    expect_line(
        &mut app,
        "the device's arrival",
        |l| matches!(l, ServerLine::Notice(n) if n.contains("dev-861234567890123 joined")),
    )
    .await;
    tokio::io::AsyncWriteExt::write_all(&mut dtu, &[0xFE])
        .await
        .unwrap();

    let chrome = console(http).await;
    chrome
        .wait_text(
            "the device, with its label, in the clients table",
            "#clients tr[data-client-id] .name",
            |t| t.contains("dev-86123456") && t.contains("pump house 3"),
        )
        .await;
    chrome
        .browser
        .execute(
            "document.getElementById('clients-section').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    chrome
        .wait_text(
            "its mode: a device",
            "#clients tr[data-client-id] .mode-device",
            |t| t.to_lowercase() == "device",
        )
        .await;
    chrome
        .wait_text(
            "its last heartbeat",
            "#clients tr[data-client-id] .heartbeat",
            |t| t.contains("ago") || t.contains("just now"),
        )
        .await;
    chrome.screenshot("7-devices").await;

    // A Modbus reply, watched with the CRC16 check on: a frame whose CRC
    // holds, and one whose CRC fails.
    chrome.click("#traffic-crc").await;
    chrome.click("#rooms tr[data-room=\"lobby\"]").await;
    let good = [0x01, 0x03, 0x02, 0x00, 0x0A, 0x38, 0x43];
    within("the watch to start", async {
        loop {
            tokio::io::AsyncWriteExt::write_all(&mut dtu, &good)
                .await
                .unwrap();
            let found = tokio::time::timeout(
                Duration::from_millis(500),
                chrome.wait_text("a frame whose CRC holds", ".traffic-item .crc-ok", |t| {
                    t.contains("CRC")
                }),
            )
            .await;
            if found.is_ok() {
                break;
            }
        }
    })
    .await;
    tokio::io::AsyncWriteExt::write_all(&mut dtu, &[0x01, 0x03, 0x02, 0x00, 0x0A, 0x38, 0x44])
        .await
        .unwrap();
    chrome
        .wait_text("a frame whose CRC fails", ".traffic-item .crc-bad", |t| {
            t.contains("CRC")
        })
        .await;
    chrome
        .browser
        .execute(
            "document.getElementById('traffic-section').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    chrome.screenshot("8-modbus-crc").await;

    // A port for devices, opened from the page.
    chrome.click("#open-listener").await;
    chrome.select("#listener-mode", "raw").await;
    chrome.fill("#listener-addr", "127.0.0.1").await;
    chrome.fill("#listener-port", "0").await;
    chrome.fill("#listener-room", "dev-{id}").await;
    chrome
        .fill("#listener-device", "register=imei&heartbeat=hex:FE")
        .await;
    chrome.screenshot("9-device-listener-form").await;
    chrome.click("#listener-submit").await;
    let created = chrome
        .wait_text("the new device listener", "#listener-created-addr", |t| {
            t.starts_with("raw://127.0.0.1:")
        })
        .await;
    let addr: SocketAddr = created.trim_start_matches("raw://").parse().unwrap();
    app.send_line("/join dev-869999999999999").await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut second, b"869999999999999")
        .await
        .unwrap();
    expect_line(&mut app, "the second device in its own room", |l| {
        matches!(l, ServerLine::Notice(n) if n.contains("dev-869999999999999 joined #dev-869999999999999"))
    })
    .await;
}
