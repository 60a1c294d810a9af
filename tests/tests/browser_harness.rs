//! The browser harness itself: Chromium starts, loads a page, clicks, reads text, takes a
//! screenshot, and goes away with its Browser. Serves its own page; builds nothing.

use std::io::{BufRead, BufReader, Write};

use e2e_tests::browser::Browser;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>harness</title></head>
<body>
<button id="go" onclick="document.getElementById('out').textContent = 'clicked ' + document.getElementById('name').value">Go</button>
<input id="name" value="prefilled">
<p id="out"></p>
</body></html>"#;

/// Serves [`PAGE`] for every request, from a thread, on 127.0.0.1:0.
fn serve_page() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_clicks_and_reads_text() {
    let url = serve_page();
    let browser = Browser::start().await;
    browser.goto(&url).await;
    assert!(browser.exists("#go").await);
    assert!(!browser.exists("#missing").await);
    browser.fill("#name", "harness").await;
    browser.click("#go").await;
    browser.wait_for_text("#out", "clicked harness").await;
    assert_eq!(browser.text_of("#out").await, "clicked harness");
    assert_eq!(
        browser.eval("return document.title").await,
        serde_json::json!("harness")
    );
    assert_eq!(
        browser.eval("return [innerWidth, innerHeight]").await,
        serde_json::json!([1280, 800])
    );

    browser
        .eval("document.getElementById('name').focus(); document.getElementById('name').value = ''")
        .await;
    browser.press_keys("typed").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('name').value")
            .await,
        serde_json::json!("typed")
    );

    browser.eval("document.getElementById('go').remove()").await;
    browser.wait_until_gone("#go").await;

    browser.eval("console.error('harness error')").await;
    let errors = browser.browser_log_errors().await;
    assert!(
        errors.iter().any(|error| error.contains("harness error")),
        "{errors:?}"
    );

    let path = browser.screenshot("harness-smoke").await;
    let png = std::fs::read(&path).expect("screenshot file");
    assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_sized_window() {
    let url = serve_page();
    let browser = Browser::start_with_window(390, 844).await;
    browser.goto(&url).await;
    assert_eq!(
        browser.eval("return [innerWidth, innerHeight]").await,
        serde_json::json!([390, 844])
    );
    let path = browser.screenshot("harness-smoke-phone").await;
    assert!(std::fs::metadata(&path).is_ok_and(|file| file.len() > 0));
}
