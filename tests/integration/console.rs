//! The web console end to end, in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, as `.ci/run` installs them), driven
//! over WebDriver: what an operator does on the page reaches real TCP
//! clients, and what they do shows on the page. Each step saves a
//! screenshot under `target/screenshots/`, and the main views are looked
//! at on a desktop (1,440 px), a tablet (768 px) and phones (390 and 360
//! px): the page never scrolls sideways, nothing sticks out of its panel
//! or gets cut, and "Log out" shows, whole, only when there is a token.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;
use switchboard::config::{HistorySettings, HttpSettings};
use switchboard::{Client, Config, ServerLine};
use tokio::process::{Child, Command};

/// Chromium under chromedriver, on a port of its own.
pub(crate) struct Chrome {
    _driver: Child,
    _port: ReservedPort,
    pub(crate) browser: Browser,
    _profile: TempDir,
}

/// The sizes the console is looked at, as CSS pixels of viewport: a
/// desktop, a tablet, a phone, and the narrowest phone it supports.
/// How long the browser's own work (starting, resizing its window) may
/// take: Chromium runs several processes of its own, and on a loaded
/// machine a resize's round trips alone have taken over 10 s.
const BROWSER_PATIENCE: Duration = Duration::from_secs(30);

pub(crate) const DESKTOP: (u32, u32) = (1440, 900);
const VIEWPORTS: [(u32, u32); 4] = [DESKTOP, (768, 1024), (390, 844), (360, 740)];

/// What is wrong with the page's layout at its current size: the page
/// scrolls sideways; something sticks out of the viewport or of its panel
/// (outside what scrolls on its own: tables and the traffic list); text
/// in the top bar, the overview cards or the panel heads is cut; a
/// message of the traffic list is wider than the list. Also says whether
/// "Log out" shows, and checks it is whole and on screen when it does.
const LAYOUT_PROBLEMS: &str = r#"
const problems = [];
const de = document.documentElement;
const vw = de.clientWidth, vh = window.innerHeight;
if (de.scrollWidth > vw) problems.push(`the page scrolls sideways: ${de.scrollWidth} px wide in a ${vw} px viewport`);
const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
const describe = (el) => {
  const cls = typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\s+/).join('.') : '';
  return (el.id ? '#' + el.id : el.tagName.toLowerCase() + cls) + ' "' + (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40) + '"';
};
const px = (n) => Math.round(n * 10) / 10;
const own = '.vscroll, .table-wrap, .traffic, dialog, .sr-only, .skip-link, .toasts';
for (const el of document.body.querySelectorAll('*')) {
  if (el.closest(own) || !shown(el)) continue;
  const r = el.getBoundingClientRect();
  if (r.left < -0.5 || r.right > vw + 0.5) problems.push(`${describe(el)} sticks out of the viewport: ${px(r.left)} to ${px(r.right)} of ${vw} px`);
  const panel = el.parentElement && el.parentElement.closest('.card, .stat');
  if (panel) {
    const p = panel.getBoundingClientRect();
    if (r.left < p.left - 0.5 || r.right > p.right + 0.5) problems.push(`${describe(el)} sticks out of its panel: ${px(r.left)} to ${px(r.right)}, the panel ${px(p.left)} to ${px(p.right)}`);
  }
}
for (const el of document.querySelectorAll('.topbar *, .overview *, .card-head *, .traffic-item')) {
  if (!shown(el) || el.closest('.sr-only')) continue;
  const cuts = el.classList.contains('traffic-item') || getComputedStyle(el).overflowX !== 'visible';
  if (cuts && el.scrollWidth > el.clientWidth + 1) problems.push(`${describe(el)} is cut: ${el.scrollWidth} px of content in ${el.clientWidth}`);
}
const logout = document.querySelector('.logout-form button');
const logoutShown = !!logout && shown(logout);
if (logoutShown) {
  const r = logout.getBoundingClientRect();
  if (r.left < 0 || r.top < 0 || r.right > vw || r.bottom > vh) problems.push(`"Log out" is not all on screen: ${px(r.left)},${px(r.top)} to ${px(r.right)},${px(r.bottom)} in ${vw}x${vh}`);
  if (logout.scrollWidth > logout.clientWidth) problems.push(`"Log out" is cut: ${logout.scrollWidth} px of text in ${logout.clientWidth}`);
}
return { problems, logout: logoutShown, width: window.innerWidth };
"#;

impl Chrome {
    pub(crate) async fn start() -> Chrome {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: the console tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let reserved = ReservedPort::new();
        let port = reserved.port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = TempDir::new("chromium");
        // Over a pipe, Chromium goes when chromedriver does (killed on
        // drop), even when a test fails before closing it.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1440,900",
                    "--remote-debugging-pipe",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let browser = within_for(BROWSER_PATIENCE, "chromedriver and Chromium", async {
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
        })
        .await;
        Chrome {
            _driver: driver,
            _port: reserved,
            browser,
            _profile: profile,
        }
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.browser.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Sizes the window so that the page's viewport is `width` x `height`
    /// CSS pixels, and gives the page time to draw at that size.
    pub(crate) async fn set_viewport(&self, (width, height): (u32, u32)) {
        // The viewport's size, once a resize has reached the page (two
        // readings alike).
        let inner = || async {
            let read = || async {
                let size = self
                    .browser
                    .execute("return [window.innerWidth, window.innerHeight]", vec![])
                    .await
                    .unwrap();
                serde_json::from_value::<(i64, i64)>(size).unwrap()
            };
            let mut last = read().await;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = read().await;
                if now == last {
                    return now;
                }
                last = now;
            }
        };
        // The window's size counts whatever the browser draws around the
        // page: size it, see what the page got, correct by the difference.
        let wanted = (i64::from(width), i64::from(height));
        within_for(BROWSER_PATIENCE, "the viewport's size", async {
            let mut window = wanted;
            loop {
                self.browser
                    .set_window_size(window.0 as u32, window.1 as u32)
                    .await
                    .unwrap();
                let got = inner().await;
                if got == wanted {
                    break;
                }
                let (w, h) = self.browser.get_window_size().await.unwrap();
                window = (w as i64 + wanted.0 - got.0, h as i64 + wanted.1 - got.1);
            }
        })
        .await;
        // The page draws at most ten times a second, and the tables take a
        // second frame to fit their new size.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    /// Checks the page's layout at its current size (see
    /// [`LAYOUT_PROBLEMS`]); returns whether "Log out" shows.
    pub(crate) async fn check_layout(&self, what: &str) -> bool {
        let found = self.browser.execute(LAYOUT_PROBLEMS, vec![]).await.unwrap();
        let problems: Vec<String> = serde_json::from_value(found["problems"].clone()).unwrap();
        let width = &found["width"];
        assert!(
            problems.is_empty(),
            "{what} at {width} px:\n  {}",
            problems.join("\n  ")
        );
        found["logout"].as_bool().unwrap()
    }

    /// Scrolls to the top of the page, or to the section `id`.
    pub(crate) async fn scroll_to(&self, id: Option<&str>) {
        let script = match id {
            None => "window.scrollTo(0, 0)".to_owned(),
            Some(id) => format!("document.getElementById('{id}').scrollIntoView()"),
        };
        self.browser.execute(&script, vec![]).await.unwrap();
    }

    /// At each of [`VIEWPORTS`]: checks the layout, and saves a screenshot
    /// of the top of the page and of each of `sections` (`name-WIDTH` and
    /// `name-WIDTH-SECTION`). Back at the desktop size after. Returns
    /// whether "Log out" showed.
    pub(crate) async fn at_each_size(&self, name: &str, sections: &[&str]) -> bool {
        let mut logout = Vec::new();
        for size in VIEWPORTS {
            self.set_viewport(size).await;
            self.scroll_to(None).await;
            logout.push(self.check_layout(name).await);
            self.screenshot(&format!("{name}-{}", size.0)).await;
            for section in sections {
                self.scroll_to(Some(section)).await;
                self.screenshot(&format!(
                    "{name}-{}-{}",
                    size.0,
                    section.trim_end_matches("-section")
                ))
                .await;
            }
        }
        self.set_viewport(DESKTOP).await;
        self.scroll_to(None).await;
        assert!(
            logout.iter().all(|&l| l == logout[0]),
            "\"Log out\" shows at some sizes only: {logout:?}"
        );
        logout[0]
    }

    /// Waits until the page at `path` is loaded (after a redirect).
    pub(crate) async fn wait_path(&self, what: &str, path: &str) {
        within(what, async {
            while self.browser.current_url().await.unwrap().path() != path {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    pub(crate) async fn wait_live(&self) {
        self.wait_text("the live feed", "#status", |t| {
            t.to_lowercase().contains("live")
        })
        .await;
    }

    /// Whether the server has an admin token, as the page found out (it
    /// asks once loaded).
    pub(crate) async fn knows_token(&self) -> bool {
        within("the page to know whether there is an admin token", async {
            loop {
                let auth = self
                    .browser
                    .execute("return document.body.dataset.auth || ''", vec![])
                    .await
                    .unwrap();
                match auth.as_str() {
                    Some("token") => return true,
                    Some("none") => return false,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
    }

    /// Asserts that the elements at `css` whose text is `text` (one at
    /// least) show it whole: not cut, no ellipsis.
    pub(crate) async fn assert_whole(&self, css: &str, text: &str) {
        let script = format!(
            "return Array.from(document.querySelectorAll({css:?})).filter((el) => el.textContent === {text:?}).map((el) => [el.scrollWidth, el.clientWidth])"
        );
        let found = self.browser.execute(&script, vec![]).await.unwrap();
        let found: Vec<(u32, u32)> = serde_json::from_value(found).unwrap();
        assert!(!found.is_empty(), "no {css} shows {text:?}");
        for (scroll, client) in found {
            assert!(
                scroll <= client,
                "{text:?} ({css}) is cut: {scroll} px of text in {client} px"
            );
        }
    }

    /// Waits until the element at `css` has text satisfying `wanted`.
    pub(crate) async fn wait_text(
        &self,
        what: &str,
        css: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_text_for(PATIENCE, what, css, wanted).await
    }

    /// [`Chrome::wait_text`], waiting up to `limit`.
    pub(crate) async fn wait_text_for(
        &self,
        limit: Duration,
        what: &str,
        css: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        within_for(limit, what, async {
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

    /// Says `line` in the watched room until the page shows it live (not
    /// as history): the watch has begun once it does. Repeats it, since
    /// what is said before the watch begins is not shown live.
    pub(crate) async fn say_until_live(&self, device: &mut Client, what: &str, line: &str) {
        within(what, async {
            loop {
                device.send_line(line).await.unwrap();
                let found = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.wait_text(what, ".traffic-item:not(.history) .text", |t| {
                        t.contains(line)
                    }),
                )
                .await;
                if found.is_ok() {
                    break;
                }
            }
        })
        .await;
    }

    pub(crate) async fn click(&self, css: &str) {
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

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self
            .browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    pub(crate) async fn select(&self, css: &str, value: &str) {
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
    chrome.set_viewport(DESKTOP).await;
    chrome
        .browser
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();
    // A new browser's first page: loading it is the browser's work.
    let live = chrome.wait_text_for(2 * BROWSER_PATIENCE, "the live feed", "#status", |t| {
        t.to_lowercase().contains("live")
    });
    if tokio::time::timeout(BROWSER_PATIENCE, live).await.is_err() {
        // What the page shows says which side failed; what it fetched
        // (with each answer's status: 0 is a network error) says whether
        // its scripts all came, or one failed and none of them ran (the
        // status chip then says "connecting": no feed was ever opened).
        let shown = chrome
            .browser
            .execute(
                "return [document.readyState, document.querySelector('#status')?.textContent, \
                 document.querySelector('#banner-text')?.textContent, \
                 performance.getEntriesByType('resource').map(e => \
                    e.name.replace(location.origin, '') + ' ' + e.responseStatus + ' ' + Math.round(e.duration) + 'ms')]",
                vec![],
            )
            .await;
        panic!("the console never went live ({http}): {shown:?}");
    }
    chrome
}

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
    chrome.screenshot("11-udp-module").await;
    chrome.browser.close().await.unwrap();
    drop((dtu, second, module));
    server.stop().await;
}

/// A Chrome DevTools command, sent through chromedriver (its
/// `goog/cdp/execute`): what WebDriver itself cannot do, such as failing
/// a request.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        let session = session_id.expect("a session");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

impl Chrome {
    /// Fails every request for a URL matching one of `patterns` (`*` is
    /// any text), as a network error would; none, to stop.
    async fn fail_requests(&self, patterns: &[&str]) {
        for (cmd, params) in [
            ("Network.enable", json!({})),
            ("Network.setBlockedURLs", json!({ "urls": patterns })),
        ] {
            self.browser
                .issue_cmd(DevTools { cmd, params })
                .await
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
    }
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
