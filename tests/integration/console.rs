//! The web console end to end, in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, as `.ci/run` installs them), driven
//! over WebDriver: what an operator does on the page reaches real TCP
//! clients, and what they do shows on the page. Each step saves a
//! screenshot under `target/screenshots/`, and the main views are looked
//! at on a desktop (1,440 px), a tablet (768 px) and phones (390 and 360
//! px): the page never scrolls sideways, nothing sticks out of its panel
//! or gets cut, and "Log out" shows, whole, only when there is a token.
//! The browser and those checks are in `browser.rs`.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use crate::browser::*;
use common::*;
use fantoccini::Locator;
use serde_json::json;
use switchboard::config::{HistorySettings, HttpSettings};
use switchboard::{Client, Config, ServerLine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_talks_to_kicks_and_opens_ports_for_tcp_clients() {
    let config = Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
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
    chrome.scroll_to(None).await;
    chrome.screenshot("2-traffic").await;
    // Without an admin token there is nothing to log out of: no "Log out".
    assert!(
        !chrome.knows_token().await,
        "the page thinks there is an admin token, and there is none"
    );
    let logout = chrome.at_each_size("2-traffic", &[]).await;
    assert!(
        !logout,
        "\"Log out\" shows, and the server has no admin token"
    );

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
    // The whole page, with something in every panel, at each size.
    chrome
        .at_each_size(
            "6-page",
            &[
                "traffic-section",
                "clients-section",
                "rooms-section",
                "listeners-section",
                "closed-section",
            ],
        )
        .await;

    // Without a token there is no signing in: the login page says so by
    // opening the console.
    chrome
        .browser
        .goto(&format!("http://{http}/login"))
        .await
        .unwrap();
    chrome
        .wait_path("the console, from the login page", "/")
        .await;
    chrome.wait_live().await;

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
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
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
    // A device's name shows whole on a desktop.
    chrome
        .assert_whole(
            "#clients tr[data-client-id] .name .cell-line",
            "dev-861234567890123",
        )
        .await;

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
    // In the room before the device comes, or its arrival is not news to it.
    expect_line(
        &mut app,
        "the app in the device's room",
        |l| matches!(l, ServerLine::Notice(n) if n.starts_with("you joined #dev-869999999999999")),
    )
    .await;
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut second, b"869999999999999")
        .await
        .unwrap();
    expect_line(&mut app, "the second device in its own room", |l| {
        matches!(l, ServerLine::Notice(n) if n.contains("dev-869999999999999 joined #dev-869999999999999"))
    })
    .await;
    // Its room shows whole on a desktop, in the clients and rooms tables.
    chrome
        .wait_text(
            "the second device's room in the clients table",
            "#clients tr[data-client-id] .rooms-cell",
            |t| t == "#dev-869999999999999",
        )
        .await;
    chrome
        .assert_whole(
            "#clients tr[data-client-id] .rooms-cell",
            "#dev-869999999999999",
        )
        .await;
    chrome
        .assert_whole("#clients tr[data-client-id] .name", "dev-869999999999999")
        .await;
    chrome
        .wait_text("its room in the rooms table", "#rooms tr .name", |t| {
            t == "dev-869999999999999"
        })
        .await;
    chrome
        .assert_whole("#rooms tr .name", "dev-869999999999999")
        .await;
    chrome
        .at_each_size("10-devices", &["clients-section", "listeners-section"])
        .await;

    // A port for UDP modules, opened from the page: a module's first
    // datagram registers it, and the page lists it.
    chrome.click("#open-listener").await;
    chrome.select("#listener-mode", "udp").await;
    chrome.fill("#listener-addr", "127.0.0.1").await;
    chrome.fill("#listener-port", "0").await;
    chrome.fill("#listener-room", "dev-{id}").await;
    chrome.fill("#listener-device", "register=imei").await;
    chrome.click("#listener-submit").await;
    let created = chrome
        .wait_text("the new UDP listener", "#listener-created-addr", |t| {
            t.starts_with("udp://127.0.0.1:")
        })
        .await;
    chrome
        .wait_text("its connect command", "#listener-created-cmd", |t| {
            t.starts_with("nc -u 127.0.0.1 ")
        })
        .await;
    let addr: SocketAddr = created.trim_start_matches("udp://").parse().unwrap();
    let module = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    module.send_to(b"868888888888888", addr).await.unwrap();
    chrome
        .wait_text(
            "the UDP module in the clients table",
            "#clients tr[data-client-id] .name",
            |t| t == "dev-868888888888888",
        )
        .await;
    // It shows as a device over UDP, beside the TCP ones.
    chrome
        .wait_text(
            "the UDP module's mode",
            "#clients tr[data-client-id] .mode",
            |t| t == "device+udp",
        )
        .await;
    chrome.screenshot("11-udp-module").await;
    chrome.browser.close().await.unwrap();
    drop((dtu, second, module));
    server.stop().await;
}

/// One of the console's scripts fails to load (a network error while the
/// page loads): none of them would run, and the page would say
/// "connecting" for ever. It reloads itself once; when that fails too, it
/// says what happened, and its button reloads it, live again once the
/// network is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_whose_scripts_fail_to_load_says_so_and_reloads() {
    let config = Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0"])
    };
    let server = TestServer::start(config).await;
    let chrome = Chrome::start().await;
    chrome.set_viewport(DESKTOP).await;
    chrome.fail_requests(&["*/assets/kick.js"]).await;
    chrome
        .browser
        .goto(&format!("http://{}/", server.http.unwrap()))
        .await
        .unwrap();
    chrome
        .wait_text_for(
            BROWSER_PATIENCE,
            "the page to say its scripts failed",
            "#banner-text",
            |t| t.contains("scripts did not load"),
        )
        .await;
    let reloaded = chrome
        .browser
        .execute(
            "return [sessionStorage.getItem('switchboard-reloaded-after-a-script-failed'), \
             document.querySelector('#status').textContent, document.querySelector('#banner').hidden]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        reloaded,
        json!(["1", "offline", false]),
        "reloaded once, then said so, in sight"
    );
    chrome.screenshot("16-scripts-failed").await;
    chrome.fail_requests(&[]).await;
    chrome.click("#banner-retry").await;
    chrome
        .wait_text_for(
            BROWSER_PATIENCE,
            "the live feed after the reload",
            "#status",
            |t| t.contains("live"),
        )
        .await;
    let mark = chrome
        .browser
        .execute(
            "return sessionStorage.getItem('switchboard-reloaded-after-a-script-failed')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        mark,
        serde_json::Value::Null,
        "cleared once the scripts ran"
    );
    chrome.browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_console_signs_in_and_logs_out() {
    const TOKEN: &str = "console-token-0123456789abcdef";
    let config = Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: Some(TOKEN.into()),
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0"])
    };
    let server = TestServer::start(config).await;
    let http = server.http.unwrap();
    let (mut device, _) = join(server.text_addr()).await;
    device.send_line("/nick phone-1").await.unwrap();
    sync(&mut device).await;

    // On a phone: the console sends a browser without the token to sign in.
    let chrome = Chrome::start().await;
    chrome.set_viewport((390, 844)).await;
    chrome
        .browser
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();
    chrome.wait_path("the login page", "/login").await;
    // The login page loads what signing in needs, not the console.
    let scripts = chrome
        .browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname).filter(p => p.endsWith('.js'))",
            vec![],
        )
        .await
        .unwrap();
    let scripts: Vec<String> = serde_json::from_value(scripts).unwrap();
    assert!(
        scripts.iter().any(|s| s == "/assets/login.js"),
        "{scripts:?}"
    );
    for console in ["/assets/app.js", "/assets/traffic.js", "/assets/tables.js"] {
        assert!(!scripts.iter().any(|s| s == console), "{scripts:?}");
    }
    chrome.click("#token").await;
    chrome.check_layout("the login page").await;
    chrome.screenshot("11-login-390").await;
    chrome.fill("#token", TOKEN).await;
    chrome.click(".login-form button[type=\"submit\"]").await;
    chrome.wait_live().await;
    assert!(
        chrome.knows_token().await,
        "the page thinks there is no admin token, and there is one"
    );
    chrome
        .wait_text(
            "the TCP client in the clients table",
            "#clients tr[data-client-id] .name",
            |t| t == "phone-1",
        )
        .await;
    // "Log out" shows, whole and on screen, at every size.
    let logout = chrome
        .at_each_size("12-signed-in", &["clients-section"])
        .await;
    assert!(logout, "no \"Log out\" with an admin token");

    // Logging out forgets the token: the console asks for it again.
    chrome.set_viewport((360, 740)).await;
    chrome.click(".logout-form button").await;
    chrome
        .wait_path("the login page after logging out", "/login")
        .await;
    chrome
        .browser
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();
    chrome.wait_path("the login page again", "/login").await;

    chrome.browser.close().await.unwrap();
    drop(device);
    server.stop().await;
}

/// The operator opens the console after a device reported: watching its
/// room shows what it said before, marked as history, then what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_room_shows_what_it_said_before_then_live() {
    let config = Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0"])
    };
    let server = TestServer::start(config).await;
    let http = server.http.unwrap();
    let (mut device, _) = join(server.text_addr()).await;
    device.send_line("/nick boiler").await.unwrap();
    device.send_line("/join plant").await.unwrap();
    for reading in ["pressure=1.2bar", "pressure=1.4bar", "pressure=1.9bar"] {
        device.send_line(reading).await.unwrap();
    }
    sync(&mut device).await;

    let chrome = console(http).await;
    chrome.click("#rooms tr[data-room=\"plant\"]").await;
    chrome
        .wait_text(
            "the readings said before",
            ".traffic-item.history .text",
            |t| t.contains("pressure=1.9bar"),
        )
        .await;
    let kept = chrome
        .browser
        .execute(
            "return [...document.querySelectorAll('.traffic-item.history .text')].map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    let kept: Vec<String> = serde_json::from_value(kept).unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept[0].contains("1.2bar") && kept[2].contains("1.9bar"),
        "{kept:?}"
    );
    // Then live, after them, not marked.
    chrome
        .say_until_live(&mut device, "the watch to go live", "pressure=2.0bar")
        .await;
    chrome.screenshot("13-history").await;
}

/// The console's feed drops while a room it watches goes on talking (here
/// the server is down, then up without its HTTP listener for a while,
/// keeping its history on disk): back on the feed, the console shows what
/// the room said meanwhile, under a mark saying so, then goes on live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_catches_up_on_what_its_room_said_while_the_feed_was_down() {
    let port = ReservedPort::new();
    let dir = TempDir::new("console-missed");
    let config = |http: bool| Config {
        http: HttpSettings {
            listen: http.then(|| format!("127.0.0.1:{}", port.port()).parse().unwrap()),
            ..Default::default()
        },
        history: HistorySettings {
            keep: 100,
            dir: Some(dir.path().to_owned()),
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0"])
    };
    let server = TestServer::start(config(true)).await;
    let (mut device, _) = join(server.text_addr()).await;
    device.send_line("/join plant").await.unwrap();
    device.send_line("pressure=1.2bar").await.unwrap();
    sync(&mut device).await;
    let chrome = console(server.http.unwrap()).await;
    chrome.click("#rooms tr[data-room=\"plant\"]").await;
    chrome
        .wait_text("the reading said before", ".traffic-item .text", |t| {
            t.contains("1.2bar")
        })
        .await;
    chrome
        .say_until_live(&mut device, "the watch to go live", "pressure=1.3bar")
        .await;
    drop(device);
    server.stop().await;
    within("the console to see the feed gone", async {
        loop {
            let offline = chrome
                .browser
                .execute("return document.body.classList.contains('offline')", vec![])
                .await
                .unwrap();
            if offline == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Meanwhile the plant goes on, with no console to reach.
    let meanwhile = TestServer::start(config(false)).await;
    let (mut device, _) = join(meanwhile.text_addr()).await;
    device.send_line("/join plant").await.unwrap();
    for reading in ["pressure=1.5bar", "pressure=1.8bar"] {
        device.send_line(reading).await.unwrap();
    }
    sync(&mut device).await;
    drop(device);
    meanwhile.stop().await;

    let server = TestServer::start(config(true)).await;
    chrome
        .wait_text("the missed readings", ".traffic-item.history .text", |t| {
            t.contains("1.8bar")
        })
        .await;
    let (mut device, _) = join(server.text_addr()).await;
    device.send_line("/join plant").await.unwrap();
    chrome
        .say_until_live(&mut device, "the watch to go live again", "pressure=2.0bar")
        .await;
    let shown = chrome
        .browser
        .execute(
            // In the order shown: the list places its rows, mounted as
            // they come, by their offsets.
            "return [...document.querySelectorAll('#traffic .traffic-item .text, #traffic .traffic-mark')]
               .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
               .map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let at = |needle: &str| {
        shown
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} is not shown: {shown:?}"))
    };
    let missed = at("2 messages said in #plant while disconnected");
    assert!(
        at("1.3bar") < missed
            && missed < at("1.5bar")
            && at("1.5bar") < at("1.8bar")
            && at("1.8bar") < at("back on the live feed")
            && at("back on the live feed") < at("2.0bar"),
        "in the order they were said, the missed ones between two marks: {shown:?}"
    );
    assert_eq!(
        shown.iter().filter(|line| line.contains("1.8bar")).count(),
        1,
        "shown once: {shown:?}"
    );
    chrome.screenshot("14-missed-while-disconnected").await;
}
