//! The browser the console's and the playground's stories drive: Debian's
//! headless Chromium under chromedriver, over WebDriver, with what the
//! stories ask of it (waiting for text, typing, clicking, resizing,
//! checking the layout at each viewport, saving screenshots, and failing
//! requests through DevTools).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;
use switchboard::Client;
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
pub(crate) const BROWSER_PATIENCE: Duration = Duration::from_secs(30);

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
        Chrome::start_with(&[]).await
    }

    /// Chromium with `extra` arguments besides the harness's own.
    pub(crate) async fn start_with(extra: &[&str]) -> Chrome {
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
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1440,900",
            "--remote-debugging-pipe",
        ]
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        // Over a pipe, Chromium goes when chromedriver does (killed on
        // drop), even when a test fails before closing it.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args
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

pub(crate) async fn console(http: SocketAddr) -> Chrome {
    console_at(Chrome::start().await, &format!("http://{http}/")).await
}

/// The console served over HTTPS at `https`, by a server whose
/// certificate Chromium is told to accept.
pub(crate) async fn console_over_https(https: SocketAddr) -> Chrome {
    let chrome = Chrome::start_with(&["--ignore-certificate-errors"]).await;
    console_at(chrome, &format!("https://{https}/")).await
}

/// The console at `url`, in `chrome`, once its live feed is up.
async fn console_at(chrome: Chrome, url: &str) -> Chrome {
    chrome.set_viewport(DESKTOP).await;
    chrome.browser.goto(url).await.unwrap();
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
        panic!("the console never went live ({url}): {shown:?}");
    }
    chrome
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
    pub(crate) async fn fail_requests(&self, patterns: &[&str]) {
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
