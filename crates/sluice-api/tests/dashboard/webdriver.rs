//! A small W3C WebDriver client over reqwest, driving headless Chromium through chromedriver:
//! new session, navigate, find by CSS, click, type, read text, run a script, wait, screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver, stopped on drop.
pub struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free loopback port; fails (never skips) when Chromium or
    /// chromedriver is missing.
    pub async fn start() -> Driver {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the dashboard's browser tests need the Debian package {package} \
                 (run scripts/browser, which scripts/test calls, to install it); they never skip"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.base)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// A new headless Chromium session.
    pub async fn session(&self) -> Browser {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            },
        }}});
        let v: Value = http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver could not start Chromium: {v}"))
            .to_owned();
        Browser {
            http,
            session: format!("{}/session/{id}", self.base),
            shots: screenshot_dir(),
        }
    }
}

/// Where screenshots go: `<target>/ui-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the tmp dir is inside the target dir")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory can be made");
    dir
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
}

/// An element of the page.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("chromedriver answers");
        let status = resp.status();
        let v: Value = resp.json().await.expect("a JSON answer");
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn try_call(&self, path: &str, body: Value) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok().map(|v| v["value"].clone())
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, if any.
    pub async fn find_now(&self, css: &str) -> Option<Element> {
        let v = self
            .try_call("/element", json!({"using": "css selector", "value": css}))
            .await?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("missing-element").await;
                panic!(
                    "no element matches {css:?} after 10 s (screenshot {})",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into an element.
    pub async fn send_keys(&self, e: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The visible text of the first element matching `css` (empty when none, or when the page
    /// replaced the element between finding and reading it).
    pub async fn text_of(&self, css: &str) -> String {
        let Some(e) = self.find_now(css).await else {
            return String::new();
        };
        let Ok(resp) = self
            .http
            .get(format!("{}/element/{}/text", self.session, e.0))
            .send()
            .await
        else {
            return String::new();
        };
        if !resp.status().is_success() {
            return String::new();
        }
        resp.json::<Value>()
            .await
            .ok()
            .and_then(|v| v["value"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Clicks the first element matching `css`, finding it again when the page replaced it
    /// (a row re-read after an action) before the click landed; up to 10 s.
    pub async fn click_on(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css).await;
            if self
                .try_call(&format!("/element/{}/click", e.0), json!({}))
                .await
                .is_some()
            {
                return;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("click-failed").await;
                panic!("cannot click {css:?} (screenshot {})", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits up to `seconds` until the value of `script` satisfies `ok`; returns it.
    pub async fn wait_script(
        &self,
        script: &str,
        seconds: u64,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let v = self.execute(script).await;
            if ok(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("wait-failed").await;
                panic!(
                    "{script:?} still gives {v} after {seconds} s (screenshot {})",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `seconds` until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, seconds: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let text = self.text_of(css).await;
            if ok(&text) {
                return text;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("wait-failed").await;
                panic!(
                    "{css:?} still reads {text:?} after {seconds} s (screenshot {})",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `<target>/ui-screenshots/<name>.png` and prints its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot can be written");
        println!("screenshot: {}", path.display());
        path
    }

    /// Resizes the window to `width` × `height` CSS pixels.
    pub async fn window_size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Ends the session (closes Chromium).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
