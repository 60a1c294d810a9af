//! A headless Chromium driven through chromedriver (WebDriver), for tests of the admin console.
//!
//! [`Browser::start`] starts Debian's `/usr/bin/chromedriver` on a free loopback port and opens
//! one session of `/usr/bin/chromium` with a fresh profile (`scripts/install-counterparts`
//! installs both). The helpers wait instead of sleeping: they retry every 50 ms for up to 10 s
//! and then panic, naming what they waited for and the page's URL.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn shows_the_list() {
//!     let browser = Browser::start().await;
//!     browser.goto(&format!("{}/console", host.base_url)).await;
//!     browser.click("button.add").await;
//!     browser.wait_for_text(".toast", "Saved").await;
//!     browser.screenshot("list").await;
//! }
//! ```
//!
//! Dropping a [`Browser`] ends its session (which closes Chromium) and kills chromedriver.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{free_port, wait_for_port, workspace_root, KillOnDrop};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the helpers wait for a condition before they panic.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One Chromium session. Dropping it closes the browser.
pub struct Browser {
    /// The WebDriver client, for whatever the helpers do not cover.
    pub client: Client,
    webdriver_url: String,
    session_id: Option<String>,
    screenshot_dir: PathBuf,
    chromedriver: KillOnDrop,
    /// Holds the profile (`--user-data-dir`) and chromedriver's log; removed after both ended.
    scratch: tempfile::TempDir,
}

impl Browser {
    /// A desktop-sized browser: a 1280x800 page.
    pub async fn start() -> Browser {
        Self::start_with_window(1280, 800).await
    }

    /// A browser whose page area (`innerWidth` x `innerHeight`, and screenshots) is exactly
    /// `width` x `height`, e.g. 390x844 for a phone. Narrower than 768 px it is a phone:
    /// Chromium honours `<meta name="viewport">` (a page without one is laid out 980 px wide
    /// and scaled down, as on a real phone) and emulates touch.
    pub async fn start_with_window(width: u32, height: u32) -> Browser {
        let phone = width < 768;
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: the browser tests need Debian's chromium and \
                 chromium-driver; run scripts/install-counterparts (as root)"
            );
        }
        // A recognizable name: `pgrep -af e2e-browser-` lists this harness's Chromium processes.
        let scratch = tempfile::Builder::new()
            .prefix("e2e-browser-")
            .tempdir()
            .expect("browser scratch dir");
        let profile = scratch.path().join("profile");
        std::fs::create_dir(&profile).expect("profile dir");
        let log_path = scratch.path().join("chromedriver.log");
        let log_file = std::fs::File::create(&log_path).expect("chromedriver log");
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start chromedriver");
        let chromedriver = KillOnDrop(child);
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let listening =
            tokio::task::spawn_blocking(move || wait_for_port(port, Duration::from_secs(10)))
                .await
                .expect("wait for chromedriver");
        assert!(
            listening,
            "chromedriver did not listen on port {port}:\n{}",
            read_log()
        );

        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--window-size={width},{height}"),
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
                // `--window-size` sizes the window, not the page: headless Chromium keeps room
                // for browser UI (a 1280x800 window shows a 1280x657 page) and no window is
                // narrower than 500 px. Device metrics make the page exactly width x height.
                "mobileEmulation": {
                    "deviceMetrics": {
                        "width": width,
                        "height": height,
                        "pixelRatio": 1.0,
                        "mobile": phone,
                        "touch": phone,
                    },
                },
            },
            // For browser_log_errors.
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let webdriver_url = format!("http://127.0.0.1:{port}");
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver_url)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "no Chromium session from chromedriver: {error}\n{}",
                    read_log()
                )
            });
        let session_id = client.session_id().await.ok().flatten();
        Browser {
            client,
            webdriver_url,
            session_id,
            screenshot_dir: workspace_root().join("target/console-screenshots"),
            chromedriver,
            scratch,
        }
    }

    /// What chromedriver logged so far (it logs little unless something goes wrong).
    pub fn chromedriver_log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Opens a URL and waits for its `load` event.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("goto {url}: {error}"));
    }

    /// The page's URL now (`<unknown>` if the browser cannot tell).
    pub async fn current_url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => format!("<unknown: {error}>"),
        }
    }

    /// Saves a PNG of the viewport to `<workspace>/target/console-screenshots/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|error| panic!("screenshot {name}: {error}"));
        std::fs::create_dir_all(&self.screenshot_dir).expect("screenshot dir");
        let path = self.screenshot_dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// The first element matching `css`, once there is one (present in the DOM; not
    /// necessarily visible).
    pub async fn wait_for(&self, css: &str) -> Element {
        self.poll(&format!("an element matching {css:?}"), || async {
            self.client
                .find(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }

    /// The first element matching `css` whose rendered text contains `substring`, once there
    /// is one. (Rendered text: what a user sees, so hidden elements have none.)
    pub async fn wait_for_text(&self, css: &str, substring: &str) -> Element {
        let what = format!("an element matching {css:?} with text containing {substring:?}");
        self.poll(&what, || async {
            let elements = self
                .client
                .find_all(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())?;
            let mut texts = Vec::new();
            for element in elements {
                // An element replaced meanwhile is stale; the next round finds its successor.
                let text = element.text().await.map_err(|error| error.to_string())?;
                if text.contains(substring) {
                    return Ok(element);
                }
                texts.push(text);
            }
            Err(format!("texts now: {texts:?}"))
        })
        .await
    }

    /// Returns once no element matches `css`.
    pub async fn wait_until_gone(&self, css: &str) {
        self.poll(&format!("no element matching {css:?}"), || async {
            let count = self
                .client
                .find_all(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())?
                .len();
            if count == 0 {
                Ok(())
            } else {
                Err(format!("{count} still match"))
            }
        })
        .await
    }

    /// Clicks the first element matching `css`, once there is one that takes the click (an
    /// element still covered by an overlay, or not yet interactable, is retried).
    pub async fn click(&self, css: &str) {
        self.poll(&format!("a click on {css:?}"), || async {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())?;
            self.click_in_view(element).await
        })
        .await
    }

    /// Scrolls `element` to the middle of its scroll container (as a person would bring it
    /// into sight: WebDriver itself would click an element under a sticky bar), then clicks.
    async fn click_in_view(&self, element: Element) -> Result<(), String> {
        let reference = serde_json::to_value(&element).map_err(|error| error.to_string())?;
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})",
                vec![reference],
            )
            .await
            .map_err(|error| error.to_string())?;
        element.click().await.map_err(|error| error.to_string())
    }

    /// Clicks the button, link or menu item whose visible text is exactly `text` (what a
    /// person reads on it), once one takes the click.
    pub async fn click_button(&self, text: &str) {
        let xpath = format!(
            "//*[self::button or self::a or @role='menuitem'][normalize-space(.)={}]",
            xpath_string(text)
        );
        self.poll(&format!("a click on the button {text:?}"), || async {
            let element = self
                .client
                .find(Locator::XPath(&xpath))
                .await
                .map_err(|error| error.to_string())?;
            self.click_in_view(element).await
        })
        .await
    }

    /// Clears the first field matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        self.poll(&format!("typing {text:?} into {css:?}"), || async {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())?;
            element.clear().await.map_err(|error| error.to_string())?;
            element
                .send_keys(text)
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }

    /// The rendered text of the first element matching `css`, once there is one.
    pub async fn text_of(&self, css: &str) -> String {
        self.poll(&format!("the text of {css:?}"), || async {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|error| error.to_string())?;
            element.text().await.map_err(|error| error.to_string())
        })
        .await
    }

    /// Whether an element matches `css` right now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .is_ok_and(|elements| !elements.is_empty())
    }

    /// Runs `js` as the body of a function in the page and returns what it `return`s
    /// (`Value::Null` without a `return`), e.g. `eval("return window.__pwned ?? null")`.
    pub async fn eval(&self, js: &str) -> Value {
        self.client
            .execute(js, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("script {js:?} failed: {error}"))
    }

    /// Types `keys` into whatever has the focus, e.g. `press_keys(&Key::Escape)` or
    /// `press_keys("abc")` (`fantoccini::key::Key` derefs to its key code). A modifier
    /// (`Key::Control`, `Key::Shift`, ...) stays down until `Key::Null` or the end, as with
    /// WebDriver's element send keys.
    ///
    /// As keyboard actions, not keys sent to an element: they go where the focus is when
    /// they are dispatched. A page that redraws itself (the Messages page every few seconds)
    /// moves the focus to the redrawn element, and keys sent to the element that had it
    /// would fail (stale, or not interactable mid-redraw).
    pub async fn press_keys(&self, keys: &str) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        const MODIFIERS: [char; 8] = [
            '\u{e008}', '\u{e009}', '\u{e00a}', '\u{e03d}', // shift, control, alt, meta
            '\u{e050}', '\u{e051}', '\u{e052}', '\u{e053}', // their right-hand keys
        ];
        const NULL: char = '\u{e000}';
        let mut actions = KeyActions::new("keyboard".to_owned());
        let mut held: Vec<char> = Vec::new();
        for key in keys.chars() {
            if key == NULL {
                for modifier in held.drain(..) {
                    actions = actions.then(KeyAction::Up { value: modifier });
                }
            } else if MODIFIERS.contains(&key) {
                actions = actions.then(KeyAction::Down { value: key });
                held.push(key);
            } else {
                actions = actions
                    .then(KeyAction::Down { value: key })
                    .then(KeyAction::Up { value: key });
            }
        }
        for modifier in held {
            actions = actions.then(KeyAction::Up { value: modifier });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|error| panic!("pressing keys {keys:?}: {error}"));
        self.client
            .release_actions()
            .await
            .unwrap_or_else(|error| panic!("releasing keys {keys:?}: {error}"));
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light again), through chromedriver's
    /// DevTools passthrough (`Emulation.setEmulatedMedia`); it holds across navigations.
    pub async fn set_dark_mode(&self, dark: bool) {
        let session_id = self.session_id.clone().expect("a WebDriver session");
        let url = format!(
            "{}/session/{session_id}/goog/cdp/execute",
            self.webdriver_url
        );
        let scheme = if dark { "dark" } else { "light" };
        let (status, body) = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut response = agent
                .post(&url)
                .send_json(json!({
                    "cmd": "Emulation.setEmulatedMedia",
                    "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
                }))
                .expect("chromedriver DevTools request");
            let status = response.status().as_u16();
            let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
            (status, body)
        })
        .await
        .expect("DevTools request task");
        assert_eq!(status, 200, "Emulation.setEmulatedMedia: {body}");
    }

    /// The messages of the `SEVERE` browser log entries (uncaught exceptions, `console.error`,
    /// failed loads, CSP violations) since the previous call: chromedriver hands each entry out
    /// once.
    pub async fn browser_log_errors(&self) -> Vec<String> {
        let Some(session_id) = self.session_id.clone() else {
            return Vec::new();
        };
        let url = format!("{}/session/{session_id}/se/log", self.webdriver_url);
        let (status, body) = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut response = agent
                .post(&url)
                .send_json(json!({"type": "browser"}))
                .expect("chromedriver log request");
            let status = response.status().as_u16();
            let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
            (status, body)
        })
        .await
        .expect("log request task");
        assert_eq!(status, 200, "chromedriver's browser log: {body}");
        body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Retries `attempt` every 50 ms until it succeeds; after [`WAIT_TIMEOUT`] panics with
    /// `what`, the last failure and the page's URL.
    async fn poll<T, Attempt, Fut>(&self, what: &str, mut attempt: Attempt) -> T
    where
        Attempt: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let failure = match attempt().await {
                Ok(value) => return value,
                Err(failure) => failure,
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT_TIMEOUT:?} waiting for {what} on {} (last: {failure})",
                    self.current_url().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Browser {
    /// Ends the session, which makes chromedriver close Chromium and wait for it, then kills
    /// chromedriver. Blocking, since a destructor cannot await: a plain HTTP request to
    /// chromedriver, at most a few seconds.
    fn drop(&mut self) {
        let Some(session_id) = self.session_id.take() else {
            return;
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let _ = agent
            .delete(format!("{}/session/{session_id}", self.webdriver_url))
            .call();
        let _ = self.chromedriver.0.kill();
        let _ = self.chromedriver.0.wait();
    }
}

/// `text` as an XPath string literal (XPath 1.0 has no escapes: quotes are split with concat).
fn xpath_string(text: &str) -> String {
    if !text.contains('\'') {
        return format!("'{text}'");
    }
    let parts: Vec<String> = text.split('\'').map(|part| format!("'{part}'")).collect();
    format!("concat({})", parts.join(", \"'\", "))
}
