//! The admin console end to end, in a real headless Chromium: the tests click and type as an
//! operator would, and check what the host did (the host's outbox, requests that reached a test
//! endpoint, the API's state). Every step saves a screenshot under
//! `target/console-screenshots/`.

use std::time::Duration;

use e2e_tests::browser::Browser;
use e2e_tests::{plugin_file, CaptureServer, HostFolders, TestHost, ADMIN_KEY, SEND_KEY};
use fantoccini::key::Key;
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const HTTP_SMS: &str = "http-sms";
const PHONE: &str = "+12015550123";

fn mock_and_http_host() -> TestHost {
    HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        ("libhttp_sms.so", &plugin_file("http_sms")),
    ])
    .start()
}

fn console_url(host: &TestHost) -> String {
    format!("{}/console", host.base_url)
}

async fn sign_in(browser: &Browser, host: &TestHost) {
    browser.goto(&console_url(host)).await;
    browser.fill("#admin-key", ADMIN_KEY).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("h1", "Connectors").await;
}

/// Saves a mock connector through the API (a precondition, not what the test is about); its
/// messages go to the host's outbox.
fn create_mock_connector(host: &TestHost) -> Value {
    let (status, connector) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {
            "templates": [{"usageType": "Generic", "content": "Generic code {{code}}"}],
            "outbox": true,
        }}),
    );
    assert_eq!(status, 200, "{connector}");
    connector
}

fn send_message(host: &TestHost) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "type": "SignIn", "payload": {"code": "123456"}})),
    )
}

/// The value of a form field's input, by its form key; for a code editor, its lines as shown.
async fn field_value(browser: &Browser, key: &str) -> String {
    let value = browser
        .eval(&format!(
            "const field = document.querySelector('[data-field-key=\"{key}\"]'); \
             const editor = field.querySelector('.cm-editor'); \
             if (editor) return editor.editorText(); \
             return field.querySelector('input, textarea').value"
        ))
        .await;
    value.as_str().unwrap_or_default().to_owned()
}

/// The code editor of a JSON field (CodeMirror's editable area).
fn code_editor(key: &str) -> String {
    format!("[data-field-key=\"{key}\"] .cm-content")
}

async fn is_disabled(browser: &Browser, button_text: &str) -> bool {
    let script = format!(
        "return [...document.querySelectorAll('button')].find(b => b.textContent.trim() === '{button_text}')?.disabled ?? null"
    );
    browser.eval(&script).await == json!(true)
}

/// Replaces a JSON field's text as an operator would: click in, select all, type.
async fn replace_json(browser: &Browser, key: &str, text: &str) {
    browser.click(&code_editor(key)).await;
    let select_all = format!("{}a{}", &*Key::Control, &*Key::Null);
    browser.press_keys(&select_all).await;
    browser.press_keys(&Key::Delete).await;
    browser.press_keys(text).await;
    // Enter indents the next line, as in any code editor.
    let unindented = |text: &str| {
        text.lines()
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let typed = field_value(browser, key).await;
    assert_eq!(
        unindented(&typed),
        unindented(text),
        "the editor holds what was typed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_then_set_up_test_and_save_the_mock_connector() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;

    // `/` leads to the console; a wrong key is refused with a message.
    browser.goto(&format!("{}/", host.base_url)).await;
    browser.wait_for("#admin-key").await;
    assert!(browser.current_url().await.ends_with("/console"));
    browser.fill("#admin-key", "not-the-key").await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("#sign-in-error", "That key is not valid")
        .await;
    browser.screenshot("01-sign-in-wrong-key").await;
    // A send key is not an admin key.
    browser.fill("#admin-key", SEND_KEY).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("#sign-in-error", "send key").await;
    browser.fill("#admin-key", ADMIN_KEY).await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("[data-testid=no-sms-connector]", "No SMS connector is live")
        .await;
    // The empty list is set apart from body text (a framed, quieter box), not a stray line.
    let empty = browser
        .eval(
            "const empty = getComputedStyle(document.querySelector('[data-testid=previous-sms-connectors] .empty-state')); \
             return [empty.borderTopStyle, empty.backgroundColor !== 'rgba(0, 0, 0, 0)']",
        )
        .await;
    assert_eq!(empty, json!(["dashed", true]));
    browser.screenshot("02-connectors-none-live").await;

    // Set up: Next stays disabled until a factory is picked.
    browser.click_button("Set up").await;
    browser
        .wait_for_text("[data-testid=factory-picker]", "Mock SMS Service")
        .await;
    assert!(is_disabled(&browser, "Next").await);
    // The mock is marked as a development connector.
    browser
        .wait_for_text(&format!("[data-factory-id=\"{MOCK}\"]"), "Demo")
        .await;
    browser.screenshot("03-set-up-picker").await;
    browser
        .click(&format!("[data-factory-id=\"{MOCK}\"]"))
        .await;
    assert!(!is_disabled(&browser, "Next").await);
    browser.click_button("Next").await;

    // The guide: README on the left, the form on the right.
    browser
        .wait_for_text("[data-testid=readme] h1", "Mock SMS connector")
        .await;
    browser
        .wait_for_text(".guide-steps", "Parameter configuration")
        .await;
    let templates = field_value(&browser, "templates").await;
    assert!(
        templates.contains("\"usageType\": \"Generic\""),
        "templates prefilled from the config template: {templates}"
    );
    assert!(browser
        .text_of(".templates-help")
        .await
        .contains("valid for 10 minutes"));
    // The outbox is a switch (on: the host's outbox), never a field a path could go into.
    let outbox_input = browser
        .eval("const input = document.querySelector('[data-field-key=\"outbox\"] input'); return [input.type, input.getAttribute('role'), input.checked, document.querySelectorAll('[data-field-key=\"outbox\"] input').length]")
        .await;
    assert_eq!(outbox_input, json!(["checkbox", "switch", true, 1]));
    browser.screenshot("04-guide").await;

    // Break the templates JSON: the error names the place, Save is disabled.
    replace_json(&browser, "templates", "[{\"usageType\": \"Generic\",}]").await;
    browser
        .wait_for_text(
            "[data-field-key=\"templates\"] .json-status",
            "Invalid JSON at line 1",
        )
        .await;
    assert!(is_disabled(&browser, "Save and Done").await);
    browser.screenshot("05-guide-broken-json").await;
    replace_json(
        &browser,
        "templates",
        "[{\"usageType\": \"Generic\", \"content\": \"Your code is {{code}}\"}]",
    )
    .await;
    browser
        .wait_for_text("[data-field-key=\"templates\"] .json-status", "Valid JSON")
        .await;
    assert!(!is_disabled(&browser, "Save and Done").await);

    // Test with a phone typed the way people type it: a Generic code reaches the outbox.
    browser.fill("input[type=tel]", "+1 201-555 0123").await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "Test message sent to +12015550123")
        .await;
    browser.screenshot("06-guide-test-sent").await;
    let sent = host.outbox_lines();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0]["to"].as_str(), sent[0]["type"].as_str()),
        (Some(PHONE), Some("Generic"))
    );
    let code = sent[0]["payload"]["code"].as_str().unwrap();
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(sent[0]["content"], format!("Your code is {code}"));
    assert_eq!(
        host.get("/api/connectors").1,
        json!([]),
        "testing saves nothing"
    );

    // Save and Done: the details page shows it live.
    browser.click_button("Save and Done").await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    browser.wait_for_text(".details-title .badge", "Live").await;
    browser.wait_for_text(".details-title .badge", "Demo").await;
    browser.screenshot("07-details-live").await;
    let (_, live) = host.get("/api/connectors");
    assert_eq!(live[0]["connectorId"], MOCK);
    assert_eq!(
        browser.text_of("[data-testid=connector-id]").await,
        live[0]["id"].as_str().unwrap()
    );
    assert_eq!(send_message(&host).0, 200);
    let live_id = live[0]["id"].as_str().unwrap();
    assert_eq!(
        host.outbox_lines_of(live_id).len(),
        1,
        "sends go to the host's outbox"
    );

    // The list shows the live connector.
    browser.click_button("← Connectors").await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "Mock SMS Service")
        .await;
    browser
        .wait_for_text("[data-testid=live-sms-connector] .badge", "Demo")
        .await;
    browser.screenshot("08-connectors-live").await;

    // Sign out forgets the key.
    browser.click_button("Sign out").await;
    browser.wait_for("#admin-key").await;
    let stored = browser
        .eval("return sessionStorage.getItem('connector-host.admin-key')")
        .await;
    assert_eq!(stored, Value::Null);
    assert!(browser
        .browser_log_errors()
        .await
        .iter()
        .all(|line| !line.contains("Uncaught")));
}

#[tokio::test(flavor = "multi_thread")]
async fn change_connector_to_http_sms_then_make_the_mock_live_again() {
    let host = mock_and_http_host();
    let mock = create_mock_connector(&host);
    let mock_id = mock["id"].as_str().unwrap();
    let endpoint = CaptureServer::start(200, "{}");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;

    browser.click_button("Open").await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    browser.click("[aria-haspopup=menu]").await;
    browser.screenshot("09-details-more-menu").await;
    browser.click_button("Change SMS connector").await;
    // The live connector's factory is marked as current.
    let current = browser
        .wait_for_text(&format!("[data-factory-id=\"{MOCK}\"]"), "Current")
        .await;
    drop(current);
    browser.screenshot("10-change-connector-picker").await;
    browser
        .click(&format!("[data-factory-id=\"{HTTP_SMS}\"]"))
        .await;
    browser.click_button("Next").await;
    browser
        .wait_for_text(".guide-steps", "moves to Previous SMS connectors")
        .await;
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            &format!("{}/sms", endpoint.url),
        )
        .await;
    browser
        .fill(
            "[data-field-key=\"authorization\"] input",
            "Bearer first-token",
        )
        .await;
    browser.fill("input[type=tel]", "12015550123").await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "Test message sent to +12015550123")
        .await;
    assert_eq!(
        endpoint.requests().len(),
        1,
        "the test send reached the endpoint"
    );
    assert_eq!(
        endpoint.requests()[0].header("authorization"),
        Some("Bearer first-token")
    );
    browser.screenshot("11-http-sms-guide-tested").await;
    browser.click_button("Save and Done").await;
    browser.wait_for_text(".details-title", "HTTP SMS").await;
    browser.wait_for_text(".details-title .badge", "Live").await;

    // A real send goes to the endpoint; the mock is under Previous SMS connectors.
    let (status, receipt) = send_message(&host);
    assert_eq!(
        (status, receipt["factoryId"].as_str()),
        (200, Some(HTTP_SMS))
    );
    assert_eq!(endpoint.requests().len(), 2);
    browser.click_button("← Connectors").await;
    let previous = format!("[data-connector-id=\"{}\"]", mock["id"].as_str().unwrap());
    browser.wait_for_text(&previous, "Mock SMS Service").await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "HTTP SMS")
        .await;
    browser.screenshot("12-connectors-with-previous").await;

    // Make live: one click, and sends go to the outbox again.
    browser.click(&format!("{previous} .button-primary")).await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "Mock SMS Service")
        .await;
    browser
        .wait_for_text("[data-testid=previous-sms-connectors]", "HTTP SMS")
        .await;
    browser.screenshot("13-mock-live-again").await;
    let before = host.outbox_lines_of(mock_id).len();
    let (status, receipt) = send_message(&host);
    assert_eq!((status, receipt["factoryId"].as_str()), (200, Some(MOCK)));
    assert_eq!(host.outbox_lines_of(mock_id).len(), before + 1);
    assert_eq!(
        endpoint.requests().len(),
        2,
        "nothing more reached the endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_show_next_to_what_caused_them() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;

    // A config the plugin rejects: the message sits on the endpoint field.
    browser
        .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
        .await;
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            "ftp://sms.example.com",
        )
        .await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(
            "[data-field-key=\"endpoint\"] .field-error",
            "is not an http:// or https:// URL",
        )
        .await;
    browser
        .wait_for_text(".test-outcome", "The configuration is invalid")
        .await;
    browser.screenshot("14-field-error-from-plugin").await;

    // A required field left empty is caught before anything is sent.
    browser
        .fill("[data-field-key=\"endpoint\"] input", "")
        .await;
    browser.click_button("Save and Done").await;
    browser
        .wait_for_text("[data-field-key=\"endpoint\"] .field-error", "is required")
        .await;

    // An invalid phone: on the phone input, from the browser's check and from the host's.
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            "http://127.0.0.1:9/sms",
        )
        .await;
    browser.fill("input[type=tel]", "12345").await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(
            "[data-testid=connector-tester] .field-error",
            "country code",
        )
        .await;
    browser.fill("input[type=tel]", "+1 555 123 4567").await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(
            "[data-testid=connector-tester] .field-error",
            "is not a valid phone number",
        )
        .await;
    let invalid = browser
        .eval("return document.querySelector('input[type=tel]').getAttribute('aria-invalid')")
        .await;
    assert_eq!(invalid, json!("true"));
    browser.screenshot("15-phone-error").await;

    // A vendor that cannot be reached: the message stays by the Send button; the page works on.
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "did not send to +12015550123")
        .await;
    browser.screenshot("16-vendor-error").await;

    // Going elsewhere with unsaved edits (here by address) asks first.
    browser
        .goto(&format!("{}#/guide/{MOCK}", console_url(&host)))
        .await;
    browser
        .wait_for_text("[data-testid=confirm-dialog]", "Discard unsaved changes?")
        .await;
    browser.click_button("Discard and leave").await;

    // No Generic template: the message sits on the templates editor.
    browser.wait_for(&code_editor("templates")).await;
    replace_json(
        &browser,
        "templates",
        "[{\"usageType\": \"SignIn\", \"content\": \"Sign-in code {{code}}\"}]",
    )
    .await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text("[data-field-key=\"templates\"] .field-error", "Generic")
        .await;
    browser.screenshot("17-template-not-found").await;

    // Console tests have their own budget: past the per-recipient limit they still go out,
    // and they use up none of the recipient's sends.
    drop(browser);
    drop(host);
    let host =
        HostFolders::new(&[("libmock_sms.so", &plugin_file("mock_sms"))]).start_with_args(&[
            "--admin-key",
            ADMIN_KEY,
            "--send-key",
            SEND_KEY,
            "--max-sends-per-recipient",
            "1",
        ]);
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/{MOCK}", console_url(&host)))
        .await;
    browser.fill("input[type=tel]", PHONE).await;
    for _ in 0..2 {
        browser.click_button("Send").await;
        browser
            .wait_for_text(".test-outcome", "Test message sent")
            .await;
    }
    create_mock_connector(&host);
    assert_eq!(
        send_message(&host).0,
        200,
        "the phone's real send is intact"
    );
    assert_eq!(send_message(&host).0, 429, "and its limit still holds");
    // Still capped: the budget spent (20 per 10 minutes), the wait shows next to Send.
    let config =
        json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": true});
    for _ in 2..20 {
        let (status, body) = host.post(
            &format!("/api/connectors/{MOCK}/test"),
            &json!({"phone": PHONE, "config": config}),
        );
        assert_eq!(status, 204, "{body}");
    }
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "Too many test messages from the console")
        .await;
    assert!(browser.text_of(".test-outcome").await.contains("retry in"));
    browser.screenshot("18-console-test-budget").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_field_is_masked_kept_and_replaced() {
    let host = mock_and_http_host();
    let endpoint = CaptureServer::start(200, "{}");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
        .await;
    let authorization = "[data-field-key=\"authorization\"] input";
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            &format!("{}/first", endpoint.url),
        )
        .await;
    browser.fill(authorization, "Bearer kept-secret").await;
    let input_type = browser
        .eval(&format!(
            "return document.querySelector('{authorization}').type"
        ))
        .await;
    assert_eq!(input_type, json!("password"), "typed as a password");
    browser.click_button("Show").await;
    assert_eq!(
        browser
            .eval(&format!(
                "return document.querySelector('{authorization}').type"
            ))
            .await,
        json!("text")
    );
    browser.click_button("Save and Done").await;
    browser.wait_for_text(".details-title", "HTTP SMS").await;

    // Shown masked after saving: the page never holds the secret.
    assert_eq!(field_value(&browser, "authorization").await, "******");
    let page = browser
        .eval("return document.documentElement.outerHTML")
        .await;
    assert!(!page.as_str().unwrap().contains("kept-secret"));
    browser.screenshot("19-secret-masked").await;
    // A test from this page sends with the saved secret behind the mask.
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "Test message sent")
        .await;
    assert_eq!(
        endpoint.requests().last().unwrap().header("authorization"),
        Some("Bearer kept-secret")
    );

    // Moving the endpoint while keeping the saved secret is refused: the secret must be typed
    // again, so a changed destination never receives the stored credential.
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            &format!("{}/second", endpoint.url),
        )
        .await;
    browser.wait_for_text(".save-bar", "unsaved changes").await;
    browser.screenshot("20-save-bar").await;
    browser.click_button("Save changes").await;
    browser
        .wait_for_text(
            "[data-field-key=\"authorization\"] .field-error",
            "enter it again",
        )
        .await;
    let (_, saved) = host.get("/api/connectors");
    assert!(saved[0]["config"]["endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/first"));

    // Typed anew, it is saved with the new endpoint and replaces the old secret.
    browser.fill(authorization, "Bearer new-secret").await;
    browser.click_button("Save changes").await;
    browser.wait_for_text(".toast", "Saved").await;
    browser.wait_for(".save-bar[hidden]").await;
    send_message(&host);
    let last = endpoint.requests().pop().expect("a request");
    assert!(
        last.request_line.contains("/second"),
        "{}",
        last.request_line
    );
    assert_eq!(last.header("authorization"), Some("Bearer new-secret"));
    assert_eq!(field_value(&browser, "authorization").await, "******");

    // Unsaved edits: leaving asks first; Cancel stays, Discard leaves.
    browser
        .fill(
            "[data-field-key=\"endpoint\"] input",
            "http://127.0.0.1:9/unsaved",
        )
        .await;
    browser.click_button("← Connectors").await;
    browser
        .wait_for_text("[data-testid=confirm-dialog]", "Discard unsaved changes?")
        .await;
    browser.screenshot("21-unsaved-changes").await;
    browser.click_button("Cancel").await;
    browser
        .wait_until_gone("[data-testid=confirm-dialog]")
        .await;
    assert_eq!(
        field_value(&browser, "endpoint").await,
        "http://127.0.0.1:9/unsaved"
    );
    browser.click_button("← Connectors").await;
    browser.click_button("Discard and leave").await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "HTTP SMS")
        .await;
    let (_, live) = host.get("/api/connectors");
    assert!(live[0]["config"]["endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/second"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_confirmation_and_the_plugins_page() {
    let folders = HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        (
            "libnot_a_connector.so",
            &plugin_file("fixture_not_a_connector"),
        ),
    ]);
    let host = folders.start();
    let first = create_mock_connector(&host);
    let second = create_mock_connector(&host);
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;

    // Delete the retired one: Cancel keeps it, Delete removes it.
    let row = format!("[data-connector-id=\"{}\"]", first["id"].as_str().unwrap());
    browser.wait_for(&row).await;
    browser.click(&format!("{row} .button-danger-plain")).await;
    browser
        .wait_for_text("[data-testid=confirm-dialog]", "deleted for good")
        .await;
    browser.screenshot("22-delete-confirmation").await;
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=confirm-dialog]")
        .await;
    assert_eq!(
        host.get(&format!(
            "/api/connectors/{}",
            first["id"].as_str().unwrap()
        ))
        .0,
        200
    );
    browser.click(&format!("{row} .button-danger-plain")).await;
    browser
        .click("[data-testid=confirm-dialog] .button-danger")
        .await;
    browser.wait_until_gone(&row).await;
    assert_eq!(
        host.get(&format!(
            "/api/connectors/{}",
            first["id"].as_str().unwrap()
        ))
        .0,
        404
    );

    // Delete the live one from its details page, through More.
    browser.click_button("Open").await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    browser.click("[aria-haspopup=menu]").await;
    browser.click_button("Delete").await;
    browser
        .wait_for_text("[data-testid=confirm-dialog]", "no SMS connector is live")
        .await;
    browser
        .click("[data-testid=confirm-dialog] .button-danger")
        .await;
    browser.wait_for("[data-testid=no-sms-connector]").await;
    assert_eq!(
        host.get(&format!(
            "/api/connectors/{}",
            second["id"].as_str().unwrap()
        ))
        .0,
        404
    );

    // Plugins: the refused file with its reason; a file dropped in shows after Rescan.
    browser.click_button("Plugins").await;
    browser
        .wait_for_text(
            "tr[data-file=\"libnot_a_connector.so\"]",
            "not a connector plugin",
        )
        .await;
    browser
        .wait_for_text("tr[data-file=\"libmock_sms.so\"]", MOCK)
        .await;
    browser.screenshot("23-plugins").await;
    e2e_tests::install_plugin(
        &host.plugins_dir,
        &plugin_file("http_sms"),
        "libhttp_sms.so",
    );
    browser.click_button("Rescan").await;
    browser
        .wait_for_text("tr[data-file=\"libhttp_sms.so\"]", "loaded")
        .await;
    browser.wait_for_text(".toast", "Rescanned").await;
    browser.screenshot("24-plugins-rescanned").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_plugin_runs_no_script_and_calls_nowhere() {
    let host = HostFolders::new(&[
        ("libhostile.so", &plugin_file("fixture_hostile_metadata")),
        ("libmock_sms.so", &plugin_file("mock_sms")),
    ])
    .start();
    let browser = Browser::start().await;

    // The console's pages carry a strict policy.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for path in ["/console", "/console/assets/app.js"] {
        let response = agent
            .get(&format!("{}{path}", host.base_url))
            .call()
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let policy = header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
    }

    sign_in(&browser, &host).await;
    browser.click_button("Set up").await;
    // The name is shown as text, markup and all.
    browser
        .wait_for_text("[data-factory-id=\"hostile-sms\"]", "<img src=x onerror=")
        .await;
    browser.screenshot("25-hostile-picker").await;
    browser.click("[data-factory-id=\"hostile-sms\"]").await;
    browser.click_button("Next").await;
    browser
        .wait_for_text("[data-testid=readme] h2", "Safe section")
        .await;
    // The README's safe parts render; its scripts, handlers and foreign URLs are gone.
    browser
        .wait_for_text("[data-testid=readme] table td", "apiKey")
        .await;
    browser
        .wait_for_text("[data-testid=readme] pre code", "\"templates\"")
        .await;
    for gone in [
        "[data-testid=readme] script",
        "[data-testid=readme] iframe",
        "[data-testid=readme] svg",
        "[data-testid=readme] [onerror]",
        "[data-testid=readme] [style]",
        "[data-testid=readme] a[href^=javascript]",
    ] {
        assert!(!browser.exists(gone).await, "{gone} is in the page");
    }
    // Labels, descriptions, placeholders and select titles are text.
    browser
        .wait_for_text("[data-field-key=\"apiKey\"] label", "<img src=x onerror=")
        .await;
    let select_titles = browser
        .eval("return [...document.querySelectorAll('[data-field-key=\"region\"] option')].map(o => o.textContent)")
        .await;
    assert!(
        select_titles.to_string().contains("onerror"),
        "{select_titles}"
    );
    browser.screenshot("26-hostile-guide").await;

    // Its error messages are text too: a refused config, then a failed send.
    browser
        .fill("[data-field-key=\"apiKey\"] input", "reject")
        .await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text("[data-field-key=\"apiKey\"] .field-error", "bad key")
        .await;
    browser
        .fill("[data-field-key=\"apiKey\"] input", "accept")
        .await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "vendor said no")
        .await;
    browser.click_button("Save and Done").await;
    browser.wait_for_text(".details-title", "Hostile SMS").await;
    browser.click_button("Check README").await;
    browser
        .wait_for_text("[data-testid=readme-drawer] h2", "Safe section")
        .await;
    browser.screenshot("27-hostile-details-readme").await;
    browser.press_keys(&Key::Escape).await;
    browser.wait_until_gone("[data-testid=readme-drawer]").await;
    browser.click_button("← Connectors").await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "Hostile SMS")
        .await;
    // Let anything that would run, run.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No payload ran, no dialog opened, nothing left 127.0.0.1.
    assert_eq!(
        browser.eval("return window.__pwned ?? null").await,
        Value::Null
    );
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "a dialog is open"
    );
    let addresses = browser
        .eval("return performance.getEntries().filter(e => e.entryType === 'resource' || e.entryType === 'navigation').map(e => e.name)")
        .await;
    let origin = format!("{}/", host.base_url);
    for address in addresses.as_array().unwrap() {
        let address = address.as_str().unwrap();
        assert!(
            address.starts_with(&origin) || address.starts_with("data:"),
            "the page requested {address}"
        );
    }
    assert!(!addresses.as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_set_up_flow_with_the_keyboard_alone() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    browser.goto(&console_url(&host)).await;
    browser.wait_for("#admin-key").await;
    // The key field has the focus; Enter submits.
    browser.press_keys(ADMIN_KEY).await;
    browser.press_keys(&Key::Enter).await;
    browser.wait_for("[data-testid=set-up]").await;

    // Tab to Set up (the skip link and the nav come first).
    let mut presses = 0;
    loop {
        browser.press_keys(&Key::Tab).await;
        presses += 1;
        let focused = browser
            .eval("return document.activeElement.dataset.testid ?? null")
            .await;
        if focused == json!("set-up") {
            break;
        }
        assert!(presses < 15, "Set up is not reachable by Tab");
    }
    browser.press_keys(&Key::Enter).await;
    browser
        .wait_for("[data-testid=factory-picker] input[type=radio]")
        .await;
    // Focus moved into the dialog; Escape closes it and gives the focus back.
    let focus_in_dialog = browser
        .eval("return document.activeElement.closest('[role=dialog]') !== null")
        .await;
    assert_eq!(focus_in_dialog, json!(true));
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=factory-picker]")
        .await;
    assert_eq!(
        browser
            .eval("return document.activeElement.dataset.testid ?? null")
            .await,
        json!("set-up")
    );
    browser.press_keys(&Key::Enter).await;
    browser
        .wait_for("[data-testid=factory-picker] input[type=radio]")
        .await;

    // Arrow keys pick a card (radio group); move to the mock one.
    for _ in 0..5 {
        let picked = browser
            .eval("return document.activeElement.value ?? null")
            .await;
        if picked == json!(MOCK) {
            break;
        }
        browser.press_keys(&Key::Down).await;
    }
    browser.press_keys(" ").await;
    assert_eq!(
        browser
            .eval("return document.querySelector('input[type=radio]:checked')?.value ?? null")
            .await,
        json!(MOCK)
    );
    browser.screenshot("28-keyboard-picker").await;
    browser.press_keys(&Key::Enter).await;

    // The guide: focus starts in the form. Leave the templates editor with Escape, then Tab.
    browser
        .wait_for_text(".guide-steps", "Parameter configuration")
        .await;
    let focused_key = browser
        .eval("return document.activeElement.closest('[data-field-key]')?.dataset.fieldKey ?? null")
        .await;
    assert_eq!(focused_key, json!("templates"));
    browser.press_keys(&Key::Tab).await;
    let indented = field_value(&browser, "templates").await;
    assert!(indented.starts_with("  "), "Tab indents: {indented:?}");
    browser.press_keys(&Key::Backspace).await;
    browser.press_keys(&Key::Backspace).await;
    browser.press_keys(&Key::Escape).await;
    // Tab past the Format button to the outbox switch; Space turns it off.
    for _ in 0..6 {
        browser.press_keys(&Key::Tab).await;
        let key = browser
            .eval("return document.activeElement.closest('[data-field-key]')?.dataset.fieldKey ?? null")
            .await;
        if key == json!("outbox") {
            break;
        }
    }
    browser.press_keys(" ").await;
    assert_eq!(
        browser
            .eval("return document.activeElement.checked ?? null")
            .await,
        json!(false)
    );
    // Focusing the switch scrolled its pane, not the whole guide (once a white band below it).
    assert_eq!(
        browser
            .eval(
                "const guide = document.querySelector('.guide').getBoundingClientRect(); \
                 return [guide.top, guide.bottom === window.innerHeight]"
            )
            .await,
        json!([0, true])
    );
    browser.screenshot("29-keyboard-guide").await;
    // Tab on to Save and Done; Enter saves.
    for _ in 0..20 {
        browser.press_keys(&Key::Tab).await;
        let text = browser
            .eval("return document.activeElement.textContent ?? null")
            .await;
        if text == json!("Save and Done") {
            break;
        }
    }
    browser.press_keys(&Key::Enter).await;
    browser.wait_for_text(".details-title .badge", "Live").await;
    let (_, live) = host.get("/api/connectors");
    assert_eq!(live[0]["connectorId"], MOCK);
    assert_eq!(live[0]["config"]["outbox"], json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn layouts_fit_a_phone() {
    let host = mock_and_http_host();
    create_mock_connector(&host);
    let browser = Browser::start_with_window(390, 844).await;
    sign_in(&browser, &host).await;
    let fits = || async {
        browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await
    };
    browser.wait_for("[data-testid=live-sms-connector]").await;
    assert_eq!(fits().await, json!(true), "the list scrolls sideways");
    browser.screenshot("30-phone-connectors").await;
    browser.click_button("Open").await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    assert_eq!(
        fits().await,
        json!(true),
        "the details page scrolls sideways"
    );
    browser.screenshot("31-phone-details").await;
    browser
        .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
        .await;
    browser
        .wait_for_text(".guide-steps", "Parameter configuration")
        .await;
    assert_eq!(fits().await, json!(true), "the guide scrolls sideways");
    browser.screenshot("32-phone-guide").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_form_item_type_is_drawn_and_saved_typed() {
    let host = HostFolders::new(&[
        ("libevery.so", &plugin_file("fixture_every_form_item")),
        ("libwithout.so", &plugin_file("fixture_without_form_items")),
    ])
    .start();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/every-form-item", console_url(&host)))
        .await;
    browser.wait_for("[data-field-key=\"sender\"] input").await;
    assert_eq!(
        field_value(&browser, "maxParts").await,
        "3",
        "default value"
    );
    let placeholder = browser
        .eval("return document.querySelector('[data-field-key=\"sender\"] input').placeholder")
        .await;
    assert_eq!(placeholder, json!("Acme"));
    assert!(browser
        .text_of("[data-field-key=\"sender\"]")
        .await
        .contains("Shown as the sender name."));
    browser
        .fill("[data-field-key=\"sender\"] input", "Acme Ltd")
        .await;
    browser
        .fill(
            "[data-field-key=\"signature\"] textarea",
            "Line one\nLine two",
        )
        .await;
    browser
        .fill("[data-field-key=\"maxParts\"] input", "5")
        .await;
    browser.click("[data-field-key=\"unicode\"] label").await;
    browser
        .click("[data-field-key=\"priority\"] option:nth-child(3)")
        .await;
    browser
        .click("[data-field-key=\"channels\"] label:nth-of-type(1)")
        .await;
    browser
        .click("[data-field-key=\"channels\"] label:nth-of-type(3)")
        .await;
    replace_json(&browser, "extraHeaders", "{\"X-Trace\": \"on\"}").await;
    let token_type = browser
        .eval("return document.querySelector('[data-field-key=\"apiToken\"] input').type")
        .await;
    assert_eq!(
        token_type,
        json!("password"),
        "a key ending in Token is a secret"
    );
    browser
        .fill("[data-field-key=\"apiToken\"] input", "tok-123")
        .await;
    browser.screenshot("33-every-form-item").await;
    browser.click_button("Save and Done").await;
    browser
        .wait_for_text(".details-title", "Every Form Item")
        .await;

    let (_, live) = host.get("/api/connectors");
    let config = &live[0]["config"];
    assert_eq!(config["sender"], "Acme Ltd");
    assert_eq!(config["signature"], "Line one\nLine two");
    assert_eq!(config["maxParts"], json!(5), "a number, not text");
    assert_eq!(config["unicode"], json!(true));
    assert_eq!(config["priority"], json!(5), "the select item's value");
    assert_eq!(config["channels"], json!(["sms", "whatsapp"]));
    assert_eq!(
        config["extraHeaders"],
        json!({"X-Trace": "on"}),
        "parsed JSON"
    );
    assert_eq!(config["apiToken"], "******");
    assert_eq!(config["templates"][0]["usageType"], "Generic");

    // The details page shows the saved values in the same fields.
    assert_eq!(field_value(&browser, "maxParts").await, "5");
    let shown = browser
        .eval(
            "return {unicode: document.querySelector('[data-field-key=\"unicode\"] input').checked, \
             priority: document.querySelector('[data-field-key=\"priority\"] select').selectedOptions[0].textContent, \
             channels: [...document.querySelectorAll('[data-field-key=\"channels\"] input')].map(i => i.checked)}",
        )
        .await;
    assert_eq!(
        shown,
        json!({"unicode": true, "priority": "High", "channels": [true, false, true]})
    );

    // A factory without form items: one JSON editor, prefilled from its config template.
    browser
        .goto(&format!("{}#/guide/without-form-items", console_url(&host)))
        .await;
    browser
        .wait_for_text("[data-field-key=\".\"] label", "Configuration (JSON)")
        .await;
    let template = field_value(&browser, ".").await;
    assert!(template.contains("\"region\": \"eu-west\""), "{template}");
    browser.screenshot("34-without-form-items").await;
    browser.click_button("Save and Done").await;
    browser
        .wait_for_text(".details-title", "Without Form Items")
        .await;
    let (_, live) = host.get("/api/connectors");
    assert_eq!(
        live[0]["config"],
        json!({"region": "eu-west", "retries": 2, "senderKey": "******"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orphaned_and_unloaded_connectors_are_flagged() {
    let host = mock_and_http_host();
    let (status, retired) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": "http://127.0.0.1:9/sms"}}),
    );
    assert_eq!(status, 200, "{retired}");
    create_mock_connector(&host);
    std::fs::remove_file(host.plugins_dir.join("libhttp_sms.so")).unwrap();
    std::fs::remove_file(host.plugins_dir.join("libmock_sms.so")).unwrap();
    assert_eq!(host.post("/api/plugins/rescan", &json!(null)).0, 200);

    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "Orphaned")
        .await;
    browser
        .wait_for_text(
            "[data-testid=live-sms-connector] [data-testid=orphaned]",
            "keeps sending",
        )
        .await;
    let row = format!(
        "[data-connector-id=\"{}\"]",
        retired["id"].as_str().unwrap()
    );
    browser.wait_for_text(&row, "Not loaded").await;
    browser
        .wait_for_text(&format!("{row} [data-testid=load-error]"), "http-sms")
        .await;
    let make_live_disabled = browser
        .eval(&format!(
            "return document.querySelector('{} .button-primary').disabled",
            row.replace('\'', "\\'")
        ))
        .await;
    assert_eq!(make_live_disabled, json!(true));
    browser.screenshot("35-orphaned-and-unloaded").await;

    // Its details page keeps the saved config visible without a form it cannot draw.
    browser.click(&format!("{row} a.button")).await;
    browser.wait_for_text(".details-title", "http-sms").await;
    browser.wait_for_text(".code-block", "127.0.0.1:9").await;
    assert!(!browser.exists("#details-form").await);

    // The orphaned live one keeps its name (from the build it runs on), and its page says one
    // consistent thing: it sends, it cannot be edited or tested until its file is back.
    browser.click_button("← Connectors").await;
    browser
        .wait_for_text(
            "[data-testid=live-sms-connector] .connector-name",
            "Mock SMS Service",
        )
        .await;
    browser
        .click("[data-testid=live-sms-connector] a.button")
        .await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    browser
        .wait_for_text("[data-testid=test-unavailable]", "needs the plugin file")
        .await;
    browser
        .wait_for_text("[data-testid=saved-config]", "Generic code")
        .await;
    assert!(!browser.exists("[data-testid=load-error]").await);
    assert!(browser
        .text_of(".details-columns")
        .await
        .contains("keeps sending"));
    browser.screenshot("45-orphaned-live-details").await;
}

/// The admin key is not offered to password managers: the sign-in field has
/// `autocomplete="off"`, is not a password field (which browsers offer to save whatever
/// `autocomplete` says) but is masked by CSS, carries the password-manager extensions' ignore
/// hints, keeps its visible label, and still signs in.
#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_field_is_masked_and_not_offered_to_password_managers() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    browser.goto(&console_url(&host)).await;
    browser.wait_for("#admin-key").await;
    let field = browser
        .eval(
            "const input = document.querySelector('#admin-key');
             const label = document.querySelector('label[for=admin-key]');
             return {
               autocomplete: input.getAttribute('autocomplete'),
               type: input.type,
               masked: getComputedStyle(input).webkitTextSecurity,
               onePassword: input.hasAttribute('data-1p-ignore'),
               lastPass: input.getAttribute('data-lpignore'),
               bitwarden: input.getAttribute('data-bwignore'),
               passwordFields: document.querySelectorAll('input[type=password]').length,
               label: label.textContent,
               labelVisible: label.offsetParent !== null && label.getBoundingClientRect().height > 0,
               labelled: input.labels.length,
             };",
        )
        .await;
    assert_eq!(
        field,
        json!({
            "autocomplete": "off",
            "type": "text",
            "masked": "disc",
            "onePassword": true,
            "lastPass": "true",
            "bitwarden": "true",
            "passwordFields": 0,
            "label": "Admin key",
            "labelVisible": true,
            "labelled": 1,
        })
    );
    browser.fill("#admin-key", ADMIN_KEY).await;
    browser.click_button("Sign in").await;
    browser.wait_until_gone("#admin-key").await;
}

/// A piece of the page's state, by script.
async fn active_element(browser: &Browser) -> Value {
    browser
        .eval(
            "const a = document.activeElement; return {tag: a.tagName, text: a.textContent.trim().slice(0, 40), \
             inDialog: a.closest('[role=dialog]') !== null, inTopbar: a.closest('#topbar') !== null, \
             inForm: a.closest('#details-form') !== null, skip: a.classList.contains('skip-link')}",
        )
        .await
}

/// Buttons and button-like links whose accessible name does not contain their visible label
/// (WCAG 2.5.3), and how many labelled ones were checked.
async fn names_not_matching_labels(browser: &Browser) -> (Value, u64) {
    let result = browser
        .eval(
            "const problems = []; let checked = 0;
             for (const element of document.querySelectorAll('button, a.button')) {
               if (element.getClientRects().length === 0) continue;
               const visible = element.textContent.trim();
               const label = element.getAttribute('aria-label');
               if (!label || !/[A-Za-z]/.test(visible)) continue;
               checked += 1;
               if (!label.toLowerCase().startsWith(visible.toLowerCase())) problems.push([visible, label]);
             }
             return [problems, checked];",
        )
        .await;
    (result[0].clone(), result[1].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn feedback_goes_when_what_it_was_about_changes() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
        .await;
    let endpoint = "[data-field-key=\"endpoint\"] input";
    browser.fill(endpoint, "ftp://sms.example.com").await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text("[data-field-key=\"endpoint\"] .field-error", "http://")
        .await;
    browser
        .wait_for_text(".test-outcome", "The configuration is invalid")
        .await;
    // Fixing the endpoint takes the red text away, there and by Send.
    browser.fill(endpoint, "http://127.0.0.1:9/sms").await;
    let stale = browser
        .eval(
            "return {fieldError: !document.querySelector('[data-field-key=\"endpoint\"] .field-error').hidden, \
             outcome: document.querySelector('.test-outcome').textContent, \
             invalid: document.querySelectorAll('.field-invalid').length}",
        )
        .await;
    assert_eq!(
        stale,
        json!({"fieldError": false, "outcome": "", "invalid": 0})
    );

    // A template the connector refuses: the message sits right under the editor (before the
    // help), the editor's status no longer says "Valid JSON", and the text names Generic once.
    browser
        .goto(&format!("{}#/guide/{MOCK}", console_url(&host)))
        .await;
    browser.click_button("Discard and leave").await;
    browser.wait_for(&code_editor("templates")).await;
    replace_json(
        &browser,
        "templates",
        "[{\"usageType\": \"SignIn\", \"content\": \"Sign-in code {{code}}\"}]",
    )
    .await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    let error = browser
        .wait_for_text(
            "[data-field-key=\"templates\"] .field-error",
            "No Generic template",
        )
        .await;
    drop(error);
    let placement = browser
        .eval(
            "const field = document.querySelector('[data-field-key=\"templates\"]'); \
             const error = field.querySelector('.field-error'); const help = field.querySelector('.templates-help'); \
             return {errorBeforeHelp: Boolean(error.compareDocumentPosition(help) & Node.DOCUMENT_POSITION_FOLLOWING), \
             status: field.querySelector('.json-status').textContent, text: error.textContent}",
        )
        .await;
    assert_eq!(placement["errorBeforeHelp"], json!(true), "{placement}");
    assert!(
        !placement["status"].as_str().unwrap().contains("Valid JSON"),
        "{placement}"
    );
    assert!(
        !placement["text"]
            .as_str()
            .unwrap()
            .contains("none for Generic"),
        "{placement}"
    );
    browser.screenshot("36-template-refused").await;

    // A template without {{code}} is flagged before anything is sent.
    replace_json(
        &browser,
        "templates",
        "[{\"usageType\": \"Generic\", \"content\": \"Welcome!\"}]",
    )
    .await;
    browser
        .wait_for_text(
            "[data-testid=template-warning]",
            "No {{code}} in the Generic template",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelector('[data-field-key=\"templates\"] .field-error').hidden")
            .await,
        json!(true),
        "the edit took the refusal away"
    );
    browser.screenshot("37-template-without-code").await;

    // Discard takes the test's verdict and the highlights with it.
    let (status, saved) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": "http://127.0.0.1:9/sms"}}),
    );
    assert_eq!(status, 200, "{saved}");
    browser
        .goto(&format!(
            "{}#/connectors/{}",
            console_url(&host),
            saved["id"].as_str().unwrap()
        ))
        .await;
    browser.click_button("Discard and leave").await;
    browser.wait_for(endpoint).await;
    browser.fill(endpoint, "ftp://sms.example.com").await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(".test-outcome", "The configuration is invalid")
        .await;
    browser.click_button("Discard").await;
    browser.wait_for(".save-bar[hidden]").await;
    let after = browser
        .eval(
            "return {outcome: document.querySelector('.test-outcome').textContent, \
             invalid: document.querySelectorAll('.field-invalid, [aria-invalid=true]').length, \
             status: document.querySelector('.save-status').textContent}",
        )
        .await;
    assert_eq!(after, json!({"outcome": "", "invalid": 0, "status": ""}));
}

#[tokio::test(flavor = "multi_thread")]
async fn focus_is_never_lost_and_what_is_hidden_is_inert() {
    let host = mock_and_http_host();
    create_mock_connector(&host);
    create_mock_connector(&host);
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.wait_for("[data-testid=previous-connector]").await;

    // The main buttons' accessible names start with what they show.
    let (problems, checked) = names_not_matching_labels(&browser).await;
    assert_eq!(problems, json!([]));
    assert!(checked >= 2, "only {checked} labelled buttons");
    let make_live = browser
        .eval("return document.querySelector('[data-testid=previous-connector] .button-primary').getAttribute('aria-label')")
        .await;
    assert!(
        make_live.as_str().unwrap().starts_with("Make live"),
        "{make_live}"
    );

    // Send keeps the focus while it is busy and after.
    browser
        .click("[data-testid=live-sms-connector] a.button")
        .await;
    browser.wait_for("[data-testid=connector-tester]").await;
    browser.fill("input[type=tel]", PHONE).await;
    browser
        .eval(
            "document.querySelector('[data-testid=connector-tester] button[type=submit]').focus()",
        )
        .await;
    browser.press_keys(&Key::Enter).await;
    browser
        .wait_for_text(".test-outcome", "Test message sent")
        .await;
    let focused = active_element(&browser).await;
    assert_eq!(
        (focused["tag"].as_str(), focused["text"].as_str()),
        (Some("BUTTON"), Some("Send")),
        "{focused}"
    );

    // Discard: the bar goes, the focus goes to the form.
    browser.click("[data-field-key=\"outbox\"] label").await;
    browser.wait_for(".save-bar:not([hidden])").await;
    browser
        .eval("[...document.querySelectorAll('.save-bar button')].find(b => b.textContent === 'Discard').focus()")
        .await;
    browser.press_keys(&Key::Enter).await;
    browser.wait_for(".save-bar[hidden]").await;
    let focused = active_element(&browser).await;
    assert_eq!(focused["inForm"], json!(true), "{focused}");

    // A dialog: Tab stays inside, and the page behind is inert.
    browser.click("[aria-haspopup=menu]").await;
    browser.click_button("Delete").await;
    browser.wait_for("[data-testid=confirm-dialog]").await;
    for _ in 0..6 {
        browser.press_keys(&Key::Tab).await;
        let focused = active_element(&browser).await;
        assert_eq!(focused["inDialog"], json!(true), "{focused}");
    }
    assert_eq!(
        browser
            .eval("return [document.getElementById('main').inert, document.getElementById('topbar').inert]")
            .await,
        json!([true, true])
    );
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=confirm-dialog]")
        .await;
    assert_eq!(
        browser
            .eval("return [document.getElementById('main').inert, document.getElementById('topbar').inert]")
            .await,
        json!([false, false])
    );

    // The full-screen guide: Tab never reaches the hidden top bar, whose Sign out cannot be
    // focused (so Enter cannot sign out).
    browser
        .goto(&format!("{}#/guide/{MOCK}", console_url(&host)))
        .await;
    browser
        .wait_for_text(".guide-steps", "Parameter configuration")
        .await;
    browser.press_keys(&Key::Escape).await;
    let mut seen_in_guide = 0;
    for _ in 0..40 {
        // The templates editor keeps Tab for indenting until Escape.
        let in_editor = browser
            .eval("return document.activeElement.matches('.cm-content')")
            .await;
        if in_editor == json!(true) {
            browser.press_keys(&Key::Escape).await;
        }
        browser.press_keys(&Key::Tab).await;
        let focused = active_element(&browser).await;
        assert_eq!(
            (focused["inTopbar"].clone(), focused["skip"].clone()),
            (json!(false), json!(false)),
            "{focused}"
        );
        if focused["tag"] != json!("BODY") {
            seen_in_guide += 1;
        }
    }
    assert!(seen_in_guide > 10, "Tab moved through the guide");
    let sign_out_focusable = browser
        .eval("document.getElementById('sign-out').focus(); return document.activeElement.id === 'sign-out'")
        .await;
    assert_eq!(sign_out_focusable, json!(false));
    browser.screenshot("38-guide-inert-topbar").await;
    browser.click("a.guide-close").await;
    browser.wait_for("[data-testid=live-sms-connector]").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('topbar').inert")
            .await,
        json!(false)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_on_a_phone_opens_at_its_readme() {
    let host = mock_and_http_host();
    let browser = Browser::start_with_window(390, 844).await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
        .await;
    browser.wait_for("[data-testid=readme] h1").await;
    browser
        .wait_for_text(".guide-steps", "Parameter configuration")
        .await;
    let state = browser
        .eval(
            "const heading = document.querySelector('.guide-readme-heading').getBoundingClientRect(); \
             return {focused: document.activeElement.classList.contains('guide-title'), \
             readmeInView: heading.top >= 0 && heading.bottom <= window.innerHeight}",
        )
        .await;
    assert_eq!(state, json!({"focused": true, "readmeInView": true}));
    browser.screenshot("39-phone-guide-opens-at-readme").await;
}

/// Copies under a hidden name, then renames into place, as an operator drops a plugin in.
fn drop_plugin(plugins_dir: &std::path::Path, source: &std::path::Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let temporary = plugins_dir.join(format!(".{name}.tmp"));
    std::fs::copy(source, &temporary).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&temporary, plugins_dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_plugin_appears_without_a_reload_and_a_renamed_copy_is_refused() {
    let host = HostFolders::new(&[("libmock_sms.so", &plugin_file("mock_sms"))]).start();
    create_mock_connector(&host);
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.eval("window.__sameDocument = true").await;

    // The picker is open when the plugin arrives.
    browser.click_button("Change SMS connector").await;
    browser
        .wait_for(&format!("[data-factory-id=\"{MOCK}\"]"))
        .await;
    assert!(
        !browser
            .exists(&format!("[data-factory-id=\"{HTTP_SMS}\"]"))
            .await
    );
    drop_plugin(
        &host.plugins_dir,
        &plugin_file("http_sms"),
        "libhttp_sms.so",
    );
    browser
        .wait_for_text(&format!("[data-factory-id=\"{HTTP_SMS}\"]"), "HTTP SMS")
        .await;
    browser.screenshot("40-picker-plugin-dropped").await;
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=factory-picker]")
        .await;

    // The Plugins page follows the folder: a renamed copy of the working plugin (sorting
    // first by name) is refused with its reason, and the original keeps serving.
    browser.click("[data-nav=plugins]").await;
    browser.wait_for("tr[data-file=\"libhttp_sms.so\"]").await;
    drop_plugin(
        &host.plugins_dir,
        &plugin_file("mock_sms"),
        "liba_copy_sms.so",
    );
    let refused = browser
        .wait_for_text(
            "tr[data-file=\"liba_copy_sms.so\"][data-status=rejected]",
            "keeps serving",
        )
        .await;
    drop(refused);
    assert!(browser
        .text_of("tr[data-file=\"liba_copy_sms.so\"]")
        .await
        .contains("libmock_sms.so"));
    assert!(
        browser
            .exists("tr[data-file=\"libmock_sms.so\"][data-status=loaded]")
            .await
    );
    browser.screenshot("41-plugins-renamed-copy-refused").await;
    assert_eq!(
        browser.eval("return window.__sameDocument ?? null").await,
        json!(true),
        "the page was not reloaded"
    );
    let (status, receipt) = send_message(&host);
    assert_eq!((status, receipt["factoryId"].as_str()), (200, Some(MOCK)));
}

/// The control that has the focus: its connector row (if any) and its text.
async fn focused_control(browser: &Browser) -> Value {
    browser
        .eval(
            "const a = document.activeElement; \
             return [a.closest('[data-connector-id]')?.dataset.connectorId ?? null, a.id || a.tagName, \
             a.tagName === 'BUTTON' ? a.textContent.trim() : null]",
        )
        .await
}

/// The connectors list follows changes made elsewhere (the API, another host) without a
/// reload, and a redraw leaves the focus where it was: on the same button of the same
/// connector, or on the screen when that connector left the list, never on `<body>`.
#[tokio::test(flavor = "multi_thread")]
async fn the_connectors_list_follows_changes_made_elsewhere_and_keeps_the_focus() {
    let host = mock_and_http_host();
    let first = create_mock_connector(&host);
    let second = create_mock_connector(&host);
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.eval("window.__sameDocument = true").await;
    let first_row = format!("[data-testid=previous-connector][data-connector-id=\"{first_id}\"]");
    browser.wait_for(&first_row).await;
    assert!(
        !browser
            .text_of("[data-testid=live-sms-connector]")
            .await
            .contains("HTTP SMS"),
        "the HTTP SMS connector is not live yet"
    );
    browser
        .eval(&format!(
            "document.querySelector('{}').querySelector('button.button-danger-plain').focus()",
            first_row.replace('\'', "\\'")
        ))
        .await;
    assert_eq!(
        focused_control(&browser).await,
        json!([first_id, "BUTTON", "Delete"])
    );

    // Another client makes an HTTP SMS connector live: it shows up, the mock that was live
    // joins the previous ones, and the focus stays on the first mock's Delete.
    let (status, third) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": "http://127.0.0.1:9/sms"}}),
    );
    assert_eq!(status, 200, "{third}");
    browser
        .wait_for_text("[data-testid=live-sms-connector]", "HTTP SMS")
        .await;
    browser
        .wait_for(&format!(
            "[data-testid=previous-connector][data-connector-id=\"{second_id}\"]"
        ))
        .await;
    assert_eq!(
        focused_control(&browser).await,
        json!([first_id, "BUTTON", "Delete"]),
        "the redraw kept the focus"
    );
    browser.screenshot("49-connectors-changed-elsewhere").await;

    // The focused connector is made live elsewhere: its row leaves the list, and the focus
    // goes to the screen, not to <body>.
    assert_eq!(
        host.post(&format!("/api/connectors/{first_id}/enable"), &json!({}))
            .0,
        200
    );
    browser.wait_until_gone(&first_row).await;
    browser
        .wait_for_text("[data-testid=live-sms-connector]", &first_id)
        .await;
    assert_eq!(focused_control(&browser).await, json!([null, "main", null]));
    assert_eq!(
        browser.eval("return window.__sameDocument ?? null").await,
        json!(true),
        "the page was not reloaded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_host_decides_is_said_on_the_page() {
    let host = HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        ("libhttp_sms.so", &plugin_file("http_sms")),
        ("libtwilio_sms.so", &plugin_file("twilio_sms")),
    ])
    .start();
    let mock = create_mock_connector(&host);
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;

    // Changing: the live factory is shown but cannot be picked again.
    browser.click_button("Change SMS connector").await;
    let current = format!("[data-factory-id=\"{MOCK}\"]");
    browser.wait_for_text(&current, "Live now").await;
    assert_eq!(
        browser
            .eval(&format!(
                "return document.querySelector('{} input').disabled",
                current.replace('\'', "\\'")
            ))
            .await,
        json!(true)
    );
    // A long unbroken description (a vendor's URL, say) wraps inside its card.
    let overflows = browser
        .eval(
            "const card = document.querySelector('.factory-card'); \
             card.querySelector('.factory-card-description').textContent = 'https://example.com/' + 'x'.repeat(400); \
             return card.scrollWidth > card.clientWidth",
        )
        .await;
    assert_eq!(overflows, json!(false));
    browser.screenshot("42-picker-live-factory").await;
    browser.press_keys(&Key::Escape).await;

    // Twilio without a sender: both fields say either will do.
    browser
        .goto(&format!(
            "{}#/guide/twilio-short-message-service",
            console_url(&host)
        ))
        .await;
    browser
        .fill("[data-field-key=\"accountSID\"] input", "AC123")
        .await;
    browser
        .fill("[data-field-key=\"authToken\"] input", "token")
        .await;
    browser.fill("input[type=tel]", PHONE).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text("[data-field-key=\"from\"] .field-error", "or a sender")
        .await;
    browser
        .wait_for_text(
            "[data-field-key=\"fromMessagingServiceSID\"] .field-error",
            "one of the two",
        )
        .await;
    browser.screenshot("43-twilio-sender").await;

    // Templates come back with usageType first, as written.
    browser
        .goto(&format!(
            "{}#/connectors/{}",
            console_url(&host),
            mock["id"].as_str().unwrap()
        ))
        .await;
    browser.click_button("Discard and leave").await;
    browser
        .wait_for_text(".details-title", "Mock SMS Service")
        .await;
    let templates = field_value(&browser, "templates").await;
    assert!(
        templates.find("usageType") < templates.find("content"),
        "{templates}"
    );

    // Show on a saved secret says it is kept and hidden instead of showing the mask.
    let (status, saved) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": "http://127.0.0.1:9/sms", "authorization": "Bearer hidden"}}),
    );
    assert_eq!(status, 200, "{saved}");
    browser
        .goto(&format!(
            "{}#/connectors/{}",
            console_url(&host),
            saved["id"].as_str().unwrap()
        ))
        .await;
    browser
        .wait_for("[data-field-key=\"authorization\"] input")
        .await;
    browser.click_button("Show").await;
    browser
        .wait_for_text(".reveal-note", "kept and hidden")
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelector('[data-field-key=\"authorization\"] input').type")
            .await,
        json!("password")
    );
    browser.screenshot("44-saved-secret-show").await;
}

/// Every screen at both sizes, light and dark, into `target/console-screenshots/` (named
/// `screens-<size>-<scheme>-<screen>`), with what the polish promised checked on the way.
#[tokio::test(flavor = "multi_thread")]
async fn every_screen_at_both_sizes_in_light_and_dark() {
    // Protection blocks a prefix at its second send, so its page has a block to show.
    let host = HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        ("libhttp_sms.so", &plugin_file("http_sms")),
    ])
    .start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--prefix-velocity-max",
        "1",
        "--first-seen-country-max",
        "0",
        "--public-url",
        PUBLIC_URL,
        "--message-log",
        "on",
    ]);
    // The Messages page's statuses: the HTTP gateway's provider reports on what it sent (one
    // send per number prefix, under the protection's prefix velocity).
    let provider = CaptureServer::start(200, r#"{"id": "gw-1"}"#);
    let (status, retired) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": format!("{}/sms", provider.url), "authorization": "Bearer x"}}),
    );
    assert_eq!(status, 200, "{retired}");
    let reported = [
        ("+14155550134", json!({"status": "delivered"})),
        (
            "+13125550178",
            json!({"status": "undelivered", "errorCode": "30003"}),
        ),
        ("+12125550190", json!({"status": "sent"})),
    ];
    let reported_ids: Vec<String> = reported
        .into_iter()
        .map(|(phone, report)| {
            let message_id = send_logged(&host, phone);
            report_delivery(&host, &provider, &message_id, report);
            message_id
        })
        .collect();
    // The undelivered one: its timeline has the provider's error code.
    let timeline_message = &reported_ids[1];
    let live = create_mock_connector(&host);
    let live_id = live["id"].as_str().unwrap();
    make_prefix_block(&host, "+120155500");
    assert_eq!(
        host.post("/api/protection/countries/GB/allow", &json!({}))
            .0,
        204
    );
    for (width, height, size) in [(1280, 800, "desktop"), (390, 844, "phone")] {
        for dark in [false, true] {
            let scheme = if dark { "dark" } else { "light" };
            let browser = Browser::start_with_window(width, height).await;
            browser.set_dark_mode(dark).await;
            let shot = |screen: &'static str| {
                let browser = &browser;
                async move {
                    let fits = browser
                        .eval(
                            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
                        )
                        .await;
                    assert_eq!(
                        fits,
                        json!(true),
                        "{size} {scheme} {screen} scrolls sideways"
                    );
                    browser
                        .screenshot(&format!("screens-{size}-{scheme}-{screen}"))
                        .await;
                }
            };
            browser.goto(&console_url(&host)).await;
            browser.wait_for("#admin-key").await;
            let background = browser
                .eval("return getComputedStyle(document.documentElement).backgroundColor")
                .await;
            let expected = if dark {
                "rgb(19, 21, 23)"
            } else {
                "rgb(244, 245, 247)"
            };
            assert_eq!(background, json!(expected), "{scheme}");
            shot("01-sign-in").await;
            browser.fill("#admin-key", ADMIN_KEY).await;
            browser.click_button("Sign in").await;
            browser
                .wait_for_text("[data-testid=live-sms-connector]", "Mock SMS Service")
                .await;
            browser.wait_for("[data-testid=previous-connector]").await;
            // Every row shows a drawn logo (the plugin's, or the SMS placeholder), never a
            // letter; "Last changed …" stays on one line.
            let rows = browser
                .eval(
                    "return [...document.querySelectorAll('.connector-row')].map((row) => { \
                       const logo = row.querySelector('img.logo'); \
                       const changed = row.querySelector('.connector-meta .nowrap'); \
                       return [Boolean(logo && logo.complete && logo.naturalWidth > 0), \
                               changed ? changed.getClientRects().length : 1]; })",
                )
                .await;
            assert_eq!(rows, json!([[true, 1], [true, 1]]), "{size} {scheme}");
            shot("02-connectors").await;

            browser.click_button("Change SMS connector").await;
            browser
                .wait_for(&format!("[data-factory-id=\"{HTTP_SMS}\"]"))
                .await;
            shot("03-picker").await;
            browser.press_keys(&Key::Escape).await;
            browser
                .wait_until_gone("[data-testid=factory-picker]")
                .await;

            browser
                .goto(&format!("{}#/guide/{HTTP_SMS}", console_url(&host)))
                .await;
            browser.wait_for("[data-testid=readme] h1").await;
            browser
                .wait_for_text(".guide-steps", "Test connection")
                .await;
            shot("04-guide").await;
            if size == "desktop" {
                // Save and Done stays in sight however long the form.
                let in_view = browser
                    .eval("const r = [...document.querySelectorAll('button')].find(b => b.textContent === 'Save and Done').getBoundingClientRect(); return r.bottom <= window.innerHeight && r.top >= 0")
                    .await;
                assert_eq!(in_view, json!(true), "Save and Done below the fold");
            }

            browser
                .goto(&format!("{}#/connectors/{live_id}", console_url(&host)))
                .await;
            browser
                .wait_for_text(".details-title", "Mock SMS Service")
                .await;
            browser.wait_for_text(".details-title .badge", "SMS").await;
            let gap = browser
                .eval("const b = [...document.querySelectorAll('.details-title .badge')]; return b[2].getBoundingClientRect().left - b[1].getBoundingClientRect().right")
                .await;
            assert!(gap.as_f64().unwrap() >= 4.0, "badges touch: {gap}");
            assert!(browser.exists("[aria-label='Copy connector ID']").await);
            shot("05-details").await;
            browser.click_button("Check README").await;
            browser.wait_for("[data-testid=readme-drawer] h1").await;
            shot("06-readme-drawer").await;
            browser.press_keys(&Key::Escape).await;
            browser.wait_until_gone("[data-testid=readme-drawer]").await;
            browser
                .goto(&format!(
                    "{}#/connectors/{}",
                    console_url(&host),
                    retired["id"].as_str().unwrap()
                ))
                .await;
            browser.wait_for_text(".details-title", "HTTP SMS").await;
            shot("07-retired-details").await;

            browser.click("[data-nav=plugins]").await;
            browser.wait_for("[data-testid=plugins-table]").await;
            let folder = browser.text_of("[data-testid=plugins-folder]").await;
            assert_eq!(folder, host.plugins_dir.display().to_string());
            assert!(
                !browser
                    .text_of("[data-testid=plugins-table] thead")
                    .await
                    .contains("Error"),
                "no empty Error column"
            );
            let loaded_at_lines = browser
                .eval("return [...document.querySelectorAll('[data-testid=plugins-table] td[data-label=\"Loaded at\"] .nowrap')].map((date) => date.getClientRects().length)")
                .await;
            assert_eq!(
                loaded_at_lines,
                json!([1, 1]),
                "dates wrap: {size} {scheme}"
            );
            // No column hidden on a phone: each cell shows, as a labelled line of a card.
            let hidden_cells = browser
                .eval("return [...document.querySelectorAll('[data-testid=plugins-table] td')].filter((cell) => cell.getClientRects().length === 0).length")
                .await;
            assert_eq!(hidden_cells, json!(0), "hidden columns: {size} {scheme}");
            shot("08-plugins").await;

            browser.click("[data-nav=protection]").await;
            browser
                .wait_for_text("tr[data-reason=prefix_velocity]", "+1201555")
                .await;
            browser.wait_for("[data-region=GB]").await;
            shot("09-protection").await;
            browser
                .eval("document.querySelector('[data-testid=protection-thresholds]').scrollIntoView()")
                .await;
            shot("10-protection-thresholds").await;

            browser.click("[data-nav=messages]").await;
            browser
                .wait_for(&format!("tr[data-message-id=\"{timeline_message}\"]"))
                .await;
            shot("11-messages").await;
            browser
                .click(&format!("tr[data-message-id=\"{timeline_message}\"]"))
                .await;
            browser
                .wait_for_text("[data-testid=timeline]", "Delivery report")
                .await;
            shot("12-message-timeline").await;
            browser.press_keys(&Key::Escape).await;
            browser
                .wait_until_gone("[data-testid=message-timeline]")
                .await;
            let errors = browser.browser_log_errors().await;
            assert!(
                errors
                    .iter()
                    .all(|line| !line.contains("Uncaught")
                        && !line.contains("Content Security Policy")),
                "{errors:?}"
            );
        }
    }
}

/// The host unreachable: the page says so and offers Retry, not a way "back" to a page that
/// cannot load either.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_unreachable_offers_retry() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.click("[data-nav=plugins]").await;
    browser.wait_for("[data-testid=plugins-table]").await;
    let _folders = host.kill();
    browser.click("[data-nav=connectors]").await;
    browser
        .wait_for_text("[data-testid=page-error]", "did not answer")
        .await;
    let buttons = browser
        .eval("return [...document.querySelectorAll('[data-testid=page-error] .button')].map(b => b.textContent)")
        .await;
    assert_eq!(buttons, json!(["Retry"]));
    browser.screenshot("46-host-unreachable").await;
    browser.click_button("Retry").await;
    browser
        .wait_for_text("[data-testid=page-error]", "did not answer")
        .await;
}

/// The templates editor is a code editor (CodeMirror, vendored and served by the host): line
/// numbers for the lines errors cite, highlighting, no soft wrapping, Copy and Format, and
/// the keyboard never trapped; under the page's CSP, with nothing fetched from elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn the_templates_editor_is_a_code_editor() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser
        .goto(&format!("{}#/guide/{MOCK}", console_url(&host)))
        .await;
    browser.wait_for(&code_editor("templates")).await;
    let long_line = format!(
        "[{{\"usageType\": \"Generic\", \"content\": \"{} {{{{code}}}}\"}},\n{{\"usageType\": \"SignIn\",}}]",
        "a long line ".repeat(20)
    );
    replace_json(&browser, "templates", &long_line).await;
    browser
        .wait_for_text(
            "[data-field-key=\"templates\"] .json-status",
            "Invalid JSON at line 2",
        )
        .await;
    let editor = browser
        .eval(
            "const field = document.querySelector('[data-field-key=\"templates\"]'); \
             const scroller = field.querySelector('.cm-scroller'); \
             const content = field.querySelector('.cm-content'); \
             return {lineNumbers: [...field.querySelectorAll('.cm-lineNumbers .cm-gutterElement')].filter(e => getComputedStyle(e).visibility !== 'hidden').map(e => e.textContent), \
             highlighted: field.querySelectorAll('.tok-propertyName, .tok-string').length > 0, \
             unwrapped: scroller.scrollWidth > scroller.clientWidth, \
             role: content.getAttribute('role'), invalid: content.getAttribute('aria-invalid'), \
             labelled: document.getElementById(content.getAttribute('aria-labelledby'))?.textContent ?? null, \
             buttons: [...field.querySelectorAll('.json-editor-bar button')].map(b => b.textContent)}",
        )
        .await;
    assert_eq!(
        editor,
        json!({
            "lineNumbers": ["1", "2"],
            "highlighted": true,
            "unwrapped": true,
            "role": "textbox",
            "invalid": "true",
            "labelled": "Templates*",
            "buttons": ["Copy", "Format"],
        })
    );
    browser.screenshot("47-code-editor-error-line").await;

    // Format (once valid) lays it out; the keyboard: Tab indents, Escape then Tab moves on to
    // the editor's buttons, Shift+Tab moves back out.
    replace_json(
        &browser,
        "templates",
        "[{\"usageType\": \"Generic\", \"content\": \"{{code}}\"}]",
    )
    .await;
    browser.click_button("Format").await;
    assert!(field_value(&browser, "templates")
        .await
        .contains("\n  {\n    \"usageType\": \"Generic\""));
    browser.click(&code_editor("templates")).await;
    browser.press_keys(&Key::Escape).await;
    browser.press_keys(&Key::Tab).await;
    assert_eq!(
        browser
            .eval("return document.activeElement.textContent")
            .await,
        json!("Copy")
    );
    browser
        .eval("document.querySelector('.cm-content').focus()")
        .await;
    let shift_tab = format!("{}{}{}", &*Key::Shift, &*Key::Tab, &*Key::Null);
    browser.press_keys(&shift_tab).await;
    assert_eq!(
        browser
            .eval("return document.activeElement.closest('.cm-editor') === null")
            .await,
        json!(true),
        "Shift+Tab leaves the editor"
    );
    let errors = browser.browser_log_errors().await;
    assert!(
        errors
            .iter()
            .all(|line| !line.contains("Content Security Policy")),
        "{errors:?}"
    );
    // Its styles come in under the page's nonce, which changes with every page.
    let styled = browser
        .eval("return getComputedStyle(document.querySelector('.cm-editor')).display")
        .await;
    assert_eq!(styled, json!("flex"), "CodeMirror's own styles apply");
}

/// The Plugins page names who signed a plugin (with `--trusted-plugin-key`), as the API does.
#[tokio::test(flavor = "multi_thread")]
async fn the_plugins_page_shows_the_signer() {
    use std::process::Command;
    let keys = tempfile::tempdir().unwrap();
    let public_key = keys.path().join("key.pub");
    let secret_key = keys.path().join("key.sec");
    let plugin = keys.path().join("libmock_sms.so");
    std::fs::copy(plugin_file("mock_sms"), &plugin).unwrap();
    for args in [
        vec![
            "-G",
            "-W",
            "-p",
            public_key.to_str().unwrap(),
            "-s",
            secret_key.to_str().unwrap(),
        ],
        vec![
            "-S",
            "-s",
            secret_key.to_str().unwrap(),
            "-t",
            "mock-sms console e2e",
            "-m",
            plugin.to_str().unwrap(),
        ],
    ] {
        let status = Command::new("minisign")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .status()
            .expect("minisign runs (scripts/install-counterparts)");
        assert!(status.success(), "minisign {args:?}");
    }
    let signature = keys.path().join("libmock_sms.so.minisig");
    let host = HostFolders::new(&[
        ("libmock_sms.so", &plugin),
        ("libmock_sms.so.minisig", &signature),
    ])
    .start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--trusted-plugin-key",
        public_key.to_str().unwrap(),
    ]);
    let (_, files) = host.get("/api/plugins");
    let key_id = files[0]["signerKeyId"].as_str().expect("signed").to_owned();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.click("[data-nav=plugins]").await;
    browser
        .wait_for_text("[data-testid=plugins-table] thead", "Signed by")
        .await;
    let signer = browser
        .eval("const cell = document.querySelector('tr[data-file=\"libmock_sms.so\"] td[data-label=\"Signed by\"] span'); return [cell.textContent, cell.title]")
        .await;
    assert_eq!(signer, json!([key_id, "mock-sms console e2e"]));
    browser.screenshot("48-plugins-signer").await;
}

/// With `--plugin-isolation process` the Plugins page says where plugins run and shows each
/// build's workers, with the last crash as text (its last words come from the plugin).
#[tokio::test(flavor = "multi_thread")]
async fn the_plugins_page_shows_the_worker_processes_and_their_last_crash() {
    let host = HostFolders::new(&[(
        "misbehaving.so",
        &plugin_file("fixture_misbehaving_connector"),
    )])
    .start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--plugin-isolation",
        "process",
    ]);
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "misbehaving-test-connector", "config": {"endpoint": "http://127.0.0.1:9/send", "behaviour": "abort"}}),
    );
    assert_eq!(status, 200, "{created}");
    let (status, _) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": "+12015550123", "payload": {"code": "1"}})),
    );
    assert_eq!(status, 502);
    // Both workers died on the send (the call and its replay); they are replaced in the
    // background: the page shows the pool back at strength and the restarts it took.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pool = loop {
        let (_, plugins) = host.get("/api/plugins");
        let pool = plugins[0]["workers"].clone();
        if pool["running"] == 2 || std::time::Instant::now() > deadline {
            break pool;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pool["running"], 2, "{pool}");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.click("[data-nav=plugins]").await;
    browser
        .wait_for_text("[data-testid=plugins-table] thead", "Workers")
        .await;
    let isolation = browser.text_of("[data-testid=plugin-isolation]").await;
    assert!(
        isolation.contains("sandboxed worker processes"),
        "{isolation}"
    );
    let workers = browser.text_of("[data-testid=plugin-workers]").await;
    assert_eq!(
        workers,
        format!("2/2 running · {} restarts", pool["restarts"])
    );
    let crash = browser.text_of("[data-testid=plugin-last-crash]").await;
    assert!(crash.contains("SIGABRT"), "{crash}");
    browser.screenshot("70-plugins-workers").await;

    // On a phone: the Workers column and the crash text fit without sideways scrolling.
    let phone = Browser::start_with_window(390, 844).await;
    sign_in(&phone, &host).await;
    phone.click("[data-nav=plugins]").await;
    phone
        .wait_for_text("[data-testid=plugin-workers]", "running")
        .await;
    let fits = phone
        .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, json!(true), "the Plugins page scrolls sideways");
    phone.screenshot("71-phone-plugins-workers").await;
}

/// A host whose protection blocks a number prefix at its second send (`--prefix-velocity-max
/// 1`), with the mock connector live; `extra` adds flags. `first_seen_country` is off, so the
/// few sends to one country never meet it, whatever its default.
fn protection_host(extra: &[&str]) -> TestHost {
    let mut args = vec![
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--prefix-velocity-max",
        "1",
        "--first-seen-country-max",
        "0",
    ];
    args.extend_from_slice(extra);
    let host =
        HostFolders::new(&[("libmock_sms.so", &plugin_file("mock_sms"))]).start_with_args(&args);
    create_mock_connector(&host);
    host
}

fn send_to(host: &TestHost, phone: &str) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": phone, "type": "SignIn", "payload": {"code": "123456"}})),
    )
}

/// Sends to a fresh prefix twice: the second send is blocked; the block's id.
fn make_prefix_block(host: &TestHost, prefix_phone: &str) -> String {
    assert_eq!(send_to(host, &format!("{prefix_phone}01")).0, 200);
    let (status, refused) = send_to(host, &format!("{prefix_phone}02"));
    assert_eq!(
        (status, refused["data"]["reason"].as_str()),
        (429, Some("prefix_velocity")),
        "{refused}"
    );
    refused["data"]["blockId"].as_str().unwrap().to_owned()
}

/// Waits until `script` returns true: for what the page's own 10 s refresh brings, longer
/// than the helpers' wait.
async fn wait_until_true(browser: &Browser, what: &str, script: &str) {
    for _ in 0..150 {
        if browser.eval(script).await == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("waited 30 s for {what}");
}

/// The Protection page: a block made by real sends is listed with its reason and counts,
/// lifted through the confirmation (with the keyboard), after which sends go again; a block
/// already lifted elsewhere is a calm notice; a country is allowed from the form, and a
/// malformed one gets the host's message at the field. The page refreshes itself without
/// taking the focus or the scroll.
#[tokio::test(flavor = "multi_thread")]
async fn the_protection_page_lifts_blocks_and_allows_countries() {
    let host = protection_host(&[]);
    let block_id = make_prefix_block(&host, "+120155500");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.eval("window.__sameDocument = true").await;
    browser.click("[data-nav=protection]").await;
    let row = format!("tr[data-block-id=\"{block_id}\"]");
    browser
        .wait_for_text(&row, "Too many sends to one number prefix")
        .await;
    let cells = browser
        .eval(&format!(
            "const row = document.querySelector('{row}'); \
             const cell = (column) => row.querySelector(`td[data-column=\"${{column}}\"]`).textContent; \
             return [cell('subject'), cell('kind'), cell('reason'), cell('blocked')]"
        ))
        .await;
    assert_eq!(
        cells,
        json!([
            "+1201555",
            "Number prefix",
            "Too many sends to one number prefixprefix_velocity",
            "1"
        ])
    );
    // Since and until: relative, then absolute.
    let since = browser
        .text_of(&format!("{row} td[data-column=since]"))
        .await;
    assert!(
        since.contains("ago") || since.contains("now"),
        "relative: {since}"
    );
    assert!(
        browser
            .exists(&format!("{row} td[data-column=since] time[datetime]"))
            .await
    );
    browser
        .wait_for_text("[data-testid=protection-mode]", "Enforce:")
        .await;
    assert!(!browser.exists("[data-testid=monitor-banner]").await);
    browser
        .wait_for_text(
            "[data-setting=prefixVelocityMax]",
            "--prefix-velocity-max 1",
        )
        .await;
    browser
        .wait_for_text("[data-testid=protection-thresholds]", "restart the host")
        .await;
    browser
        .wait_for_text("[data-layer=prefix_velocity] .badge", "On")
        .await;
    browser
        .wait_for_text("[data-layer=first_seen_country] .badge", "Off")
        .await;
    browser
        .wait_for_text("[data-testid=safe-list-empty]", "Empty")
        .await;
    let (problems, checked) = names_not_matching_labels(&browser).await;
    assert_eq!(problems, json!([]));
    assert!(checked >= 1, "only {checked} labelled buttons");
    browser.screenshot("50-protection-blocked").await;

    // The page refreshes itself: a send refused meanwhile shows in the count, while the focus
    // stays in the half-typed country field and the page stays where it was scrolled to.
    browser
        .click("[data-testid=allow-country-form] input")
        .await;
    browser.press_keys("g").await;
    let scrolled = browser
        .eval("window.scrollTo(0, document.documentElement.scrollHeight); return window.scrollY")
        .await;
    assert!(scrolled.as_f64().unwrap() > 0.0, "the page scrolls");
    assert_eq!(send_to(&host, "+12015550003").0, 429);
    wait_until_true(
        &browser,
        "the refreshed count",
        &format!(
            "return document.querySelector('{row} td[data-column=\"blocked\"]')?.textContent === '2'"
        ),
    )
    .await;
    let after = browser
        .eval(&format!(
            "return [document.activeElement.matches('[data-testid=allow-country-form] input'), \
             document.activeElement.value, window.scrollY === {scrolled}]"
        ))
        .await;
    assert_eq!(after, json!([true, "g", true]));

    // Lift, with the keyboard: Enter on Lift, Tab to the confirmation, Enter.
    browser
        .eval(&format!(
            "document.querySelector('{row} .lift-button').focus()"
        ))
        .await;
    browser.press_keys(&Key::Enter).await;
    browser
        .wait_for_text(
            "[data-testid=confirm-dialog]",
            "Lift the block on +1201555?",
        )
        .await;
    browser.screenshot("51-protection-lift-confirm").await;
    browser.press_keys(&Key::Tab).await;
    assert_eq!(active_element(&browser).await["text"], json!("Lift block"));
    browser.press_keys(&Key::Enter).await;
    browser.wait_until_gone(&row).await;
    browser
        .wait_for_text("[data-testid=no-blocks]", "No sends are blocked")
        .await;
    browser.wait_for_text(".toast", "Lifted the block").await;
    let focused = active_element(&browser).await;
    assert_eq!(
        (focused["tag"].as_str(), focused["text"].as_str()),
        (Some("H2"), Some("Current blocks")),
        "{focused}"
    );
    let (status, sent) = send_to(&host, "+12015550004");
    assert_eq!(status, 200, "a send goes again: {sent}");
    let (_, listed) = host.get("/api/protection");
    assert_eq!(listed["blocks"], json!([]), "{listed}");
    browser.screenshot("52-protection-no-blocks").await;

    // A block lifted elsewhere while the question is open: a calm notice, and the list
    // follows.
    let second = make_prefix_block(&host, "+120255500");
    browser.click("[data-nav=connectors]").await;
    browser.wait_for("[data-testid=live-sms-connector]").await;
    browser.click("[data-nav=protection]").await;
    let second_row = format!("tr[data-block-id=\"{second}\"]");
    browser.click(&format!("{second_row} .lift-button")).await;
    browser.wait_for("[data-testid=confirm-dialog]").await;
    assert_eq!(
        host.delete(&format!("/api/protection/blocks/{second}")).0,
        204
    );
    browser.click_button("Lift block").await;
    browser
        .wait_for_text(
            "[data-testid=blocks-notice]",
            "had already ended or been lifted",
        )
        .await;
    browser.wait_until_gone(&second_row).await;
    assert!(
        !browser
            .eval("return document.querySelector('[data-testid=blocks-notice]').classList.contains('notice-error')")
            .await
            .as_bool()
            .unwrap(),
        "a calm notice, not an error"
    );
    browser.screenshot("53-protection-already-lifted").await;

    // Allow a country: a malformed one gets the host's 400 message at the field.
    let input = "[data-testid=allow-country-form] input";
    browser.fill(input, "USA").await;
    browser.click_button("Allow country").await;
    browser
        .wait_for_text(
            "[data-testid=allow-country-form] .field-error",
            "\"USA\" is not a region",
        )
        .await;
    assert_eq!(
        browser
            .eval(&format!(
                "return document.querySelector('{input}').getAttribute('aria-invalid')"
            ))
            .await,
        json!("true")
    );
    browser.screenshot("54-protection-country-error").await;
    browser.fill(input, "gb").await;
    assert!(
        !browser
            .exists("[data-testid=allow-country-form] .field-error:not([hidden])")
            .await,
        "typing takes the error away"
    );
    browser.click_button("Allow country").await;
    browser
        .wait_for_text("[data-testid=allowed-countries] [data-region=GB]", "GB")
        .await;
    let (_, listed) = host.get("/api/protection");
    assert_eq!(listed["allowedCountries"], json!(["GB"]), "{listed}");
    assert_eq!(
        browser
            .eval(&format!("return document.querySelector('{input}').value"))
            .await,
        json!("")
    );
    browser.screenshot("55-protection-country-allowed").await;

    assert_eq!(
        browser.eval("return window.__sameDocument ?? null").await,
        json!(true),
        "the page was not reloaded"
    );
    let errors = browser.browser_log_errors().await;
    assert!(
        errors
            .iter()
            .all(|line| !line.contains("Uncaught") && !line.contains("Content Security Policy")),
        "{errors:?}"
    );
}

/// Monitor mode: the banner says that nothing is blocked, what would be is listed as such,
/// and the safe-list is shown. Off: a banner says so, and nothing is listed.
#[tokio::test(flavor = "multi_thread")]
async fn the_protection_page_in_monitor_and_off_modes() {
    let host = protection_host(&[
        "--protection",
        "monitor",
        "--protection-safe-list",
        "+12015550999,+1301555*",
    ]);
    assert_eq!(send_to(&host, "+12015550001").0, 200);
    assert_eq!(send_to(&host, "+12015550002").0, 200, "monitor sends");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.click("[data-nav=protection]").await;
    browser
        .wait_for_text(
            "[data-testid=monitor-banner]",
            "deciding and counting, blocking nothing",
        )
        .await;
    browser
        .wait_for_text("[data-testid=protection-blocks]", "would block")
        .await;
    browser
        .wait_for_text("tr[data-reason=prefix_velocity]", "+1201555")
        .await;
    let safe_list = browser
        .eval("return [...document.querySelectorAll('[data-testid=safe-list] li')].map(li => li.textContent)")
        .await;
    assert_eq!(safe_list, json!(["+12015550999", "+1301555*"]));
    browser.screenshot("56-protection-monitor").await;

    let host = protection_host(&["--protection", "off"]);
    assert_eq!(send_to(&host, "+12015550001").0, 200);
    assert_eq!(send_to(&host, "+12015550002").0, 200, "off sends");
    sign_in(&browser, &host).await;
    browser.click("[data-nav=protection]").await;
    browser
        .wait_for_text("[data-testid=off-banner]", "Protection is off")
        .await;
    browser
        .wait_for_text("[data-testid=no-blocks]", "No sends are blocked")
        .await;
    assert!(!browser.exists("[data-testid=monitor-banner]").await);
    // Its thresholds are set, but no layer runs.
    browser
        .wait_for_text("[data-layer=prefix_velocity] .badge", "Off")
        .await;
    browser.screenshot("57-protection-off").await;
}

/// Signing out ends the screen that was open: a page that refreshes itself (Plugins polls each
/// second, Protection every 10 s) asks nothing more, so it cannot answer the missing key with
/// a second sign-out over the form being filled in.
#[tokio::test(flavor = "multi_thread")]
async fn signing_out_stops_the_pages_that_refresh_themselves() {
    let host = mock_and_http_host();
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.click("[data-nav=plugins]").await;
    browser.wait_for("[data-testid=plugins-table]").await;
    // Counts the page's requests from here on.
    browser
        .eval(
            "window.__requests = []; const original = window.fetch; \
             window.fetch = (url, options) => { window.__requests.push(String(url)); return original(url, options); };",
        )
        .await;
    wait_until_true(
        &browser,
        "the Plugins page's poll",
        "return window.__requests.includes('/api/plugins')",
    )
    .await;
    browser.click("#sign-out").await;
    browser
        .wait_for_text("main", "Signed out. The key was removed from this tab.")
        .await;
    browser.eval("window.__requests = []").await;
    browser.fill("#admin-key", "half-typed").await;
    // Three of the Plugins page's poll intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = browser
        .eval(
            "return [window.__requests, document.getElementById('admin-key').value, \
             document.querySelector('main').textContent.includes('Signed out.')]",
        )
        .await;
    assert_eq!(after, json!([[], "half-typed", true]));
}

/// The base of the report URLs a message-log host hands out: nothing listens there; the tests
/// post each report to the host itself, at the path the provider was given.
const PUBLIC_URL: &str = "http://127.0.0.1:1";

/// A host with the message log on (and report URLs), the mock and the HTTP gateway loaded.
fn message_log_host() -> TestHost {
    HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        ("libhttp_sms.so", &plugin_file("http_sms")),
    ])
    .start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--max-sends-per-recipient",
        "1000000",
        "--resend-cooldown-secs",
        "0",
        "--public-url",
        PUBLIC_URL,
        "--message-log",
        "on",
        // Fifty sends to one number: more than the protection's prefix velocity lets through.
        "--protection",
        "off",
    ])
}

/// Makes an HTTP gateway connector sending to `provider` live; its id.
fn create_gateway(host: &TestHost, provider: &CaptureServer) -> String {
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": format!("{}/send", provider.url)}}),
    );
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Sends through the live connector; the message's id.
fn send_logged(host: &TestHost, phone: &str) -> String {
    let (status, sent) = send_to(host, phone);
    assert_eq!(status, 200, "{sent}");
    sent["messageId"].as_str().unwrap().to_owned()
}

/// Posts a delivery report for `message_id` as the gateway's provider would: to the callback
/// URL the gateway was given with that message.
fn report_delivery(host: &TestHost, provider: &CaptureServer, message_id: &str, report: Value) {
    let callback = provider
        .requests()
        .iter()
        .map(|request| serde_json::from_str::<Value>(&request.body).unwrap())
        .find(|body| body["messageId"] == message_id)
        .unwrap_or_else(|| panic!("the provider never got {message_id}"))["callbackUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = host.request_raw(
        "POST",
        callback.trim_start_matches(PUBLIC_URL),
        None,
        Some(("application/json", &report.to_string())),
    );
    assert_eq!(status, 200, "{body}");
}

/// Each row of the messages table: `[message id, status, badge text]`.
async fn message_rows(browser: &Browser) -> Vec<(String, String, String)> {
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=messages-table] tbody tr')].map((row) => \
               [row.dataset.messageId, row.dataset.status, row.querySelector('.badge').textContent])",
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// Waits until the table shows `count` rows (a filter or a page loaded).
async fn wait_for_rows(browser: &Browser, count: usize) {
    wait_until_true(
        browser,
        &format!("{count} message rows"),
        &format!(
            "return document.querySelectorAll('[data-testid=messages-table] tbody tr').length === {count}"
        ),
    )
    .await;
}

/// Chooses an option of one of the page's filters, as a click on it does.
async fn choose_filter(browser: &Browser, filter: &str, value: &str) {
    browser
        .click(&format!("[data-testid={filter}] option[value=\"{value}\"]"))
        .await;
}

/// The Messages page and the connectors' delivered rates, from real sends: 50 through the mock
/// and 4 through the HTTP gateway, whose provider's reports (posted to the URL it was given)
/// say delivered twice and undelivered once. The list shows them newest first with their
/// badges and "Load more", filters by status and connector, opens a timeline with a click and
/// with Enter (the focus back on the row when it closes), and follows a new message and a new
/// report without losing the focus. A host with the log off says how to turn it on.
#[tokio::test(flavor = "multi_thread")]
async fn the_messages_page_lists_filters_and_opens_timelines() {
    let host = message_log_host();
    let mock_id = create_mock_connector(&host)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..50 {
        send_logged(&host, PHONE);
    }
    let provider = CaptureServer::start(200, r#"{"id": "gw-1"}"#);
    let gateway_id = create_gateway(&host, &provider);
    let sent: Vec<String> = (0..4).map(|_| send_logged(&host, PHONE)).collect();
    report_delivery(&host, &provider, &sent[0], json!({"status": "delivered"}));
    report_delivery(&host, &provider, &sent[1], json!({"status": "delivered"}));
    report_delivery(
        &host,
        &provider,
        &sent[2],
        json!({"status": "undelivered", "errorCode": "30003"}),
    );

    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    browser.eval("window.__sameDocument = true").await;
    // The connectors list: each connector's delivered rate over the last day.
    browser
        .wait_for_text(
            "[data-testid=live-sms-connector] [data-testid=delivery-rate]",
            "67% delivered (24 h, 4 messages)",
        )
        .await;
    browser
        .wait_for_text(
            &format!("[data-connector-id=\"{mock_id}\"] [data-testid=delivery-rate]"),
            "No delivery reports yet (24 h, 50 messages)",
        )
        .await;
    browser.screenshot("58-connectors-delivered-rate").await;

    browser.click("[data-nav=messages]").await;
    browser.wait_for("[data-testid=messages-table]").await;
    wait_for_rows(&browser, 50).await;
    let rows = message_rows(&browser).await;
    let newest: Vec<(&str, &str, &str)> = rows[..4]
        .iter()
        .map(|(id, status, badge)| (id.as_str(), status.as_str(), badge.as_str()))
        .collect();
    assert_eq!(
        newest,
        [
            (sent[3].as_str(), "queued", "queued"),
            (sent[2].as_str(), "undelivered", "undelivered"),
            (sent[1].as_str(), "delivered", "delivered"),
            (sent[0].as_str(), "delivered", "delivered"),
        ],
        "newest first, each with its status badge"
    );
    assert!(rows[4..].iter().all(|(_, status, _)| status == "queued"));
    let badge_kinds = browser
        .eval(&format!(
            "return ['{}', '{}'].map((id) => document.querySelector(`tr[data-message-id=\"${{id}}\"] .badge`).className)",
            sent[2], sent[1]
        ))
        .await;
    assert_eq!(
        badge_kinds,
        json!(["badge badge-error", "badge badge-live"])
    );
    // Only the phone's last digits, in the page's own form.
    let phones = browser
        .eval("return [...new Set([...document.querySelectorAll('[data-testid=messages-table] td[data-label=Phone]')].map((cell) => cell.textContent))]")
        .await;
    assert_eq!(phones, json!(["••••0123"]));
    assert!(
        !browser.text_of("main").await.contains("201555"),
        "more of the phone than its tail"
    );
    browser.screenshot("59-messages").await;

    browser.click_button("Load more").await;
    wait_for_rows(&browser, 54).await;
    // No Load more past the last message.
    wait_until_true(
        &browser,
        "Load more hidden",
        "return document.querySelector('[data-testid=load-more]').offsetParent === null",
    )
    .await;

    // Filters: by status, then by connector too.
    choose_filter(&browser, "status-filter", "delivered").await;
    wait_for_rows(&browser, 2).await;
    let rows = message_rows(&browser).await;
    assert_eq!(
        rows.iter()
            .map(|(id, status, _)| (id.as_str(), status.as_str()))
            .collect::<Vec<_>>(),
        [
            (sent[1].as_str(), "delivered"),
            (sent[0].as_str(), "delivered")
        ]
    );
    browser.screenshot("60-messages-delivered").await;
    choose_filter(&browser, "status-filter", "undelivered").await;
    choose_filter(&browser, "connector-filter", &mock_id).await;
    browser
        .wait_for_text(
            "[data-testid=messages-empty]",
            "No messages match these filters",
        )
        .await;
    choose_filter(&browser, "connector-filter", &gateway_id).await;
    wait_for_rows(&browser, 1).await;
    assert_eq!(message_rows(&browser).await[0].0, sent[2]);
    choose_filter(&browser, "status-filter", "").await;
    wait_for_rows(&browser, 4).await;
    choose_filter(&browser, "connector-filter", "").await;
    wait_for_rows(&browser, 50).await;
    browser.click_button("Load more").await;
    wait_for_rows(&browser, 54).await;

    // A click opens the timeline: the send's answer, then the provider's report.
    let undelivered_row = format!("tr[data-message-id=\"{}\"]", sent[2]);
    browser.click(&undelivered_row).await;
    browser
        .wait_for_text(
            "[data-testid=message-timeline] [data-testid=timeline]",
            "Delivery report",
        )
        .await;
    let events = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=timeline] li')].map((event) => \
               [event.dataset.source, event.dataset.status, event.textContent.includes('30003')])",
        )
        .await;
    assert_eq!(
        events,
        json!([["send", "queued", false], ["report", "undelivered", true]])
    );
    let dialog_text = browser.text_of("[data-testid=message-timeline]").await;
    assert!(dialog_text.contains(&sent[2]), "{dialog_text}");
    assert!(dialog_text.contains("••••0123"), "{dialog_text}");
    browser.screenshot("61-message-timeline").await;
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=message-timeline]")
        .await;
    assert_eq!(
        browser
            .eval("return document.activeElement.dataset.messageId ?? null")
            .await,
        json!(sent[2]),
        "the focus is back on the row"
    );

    // With the keyboard: a row is a Tab stop; Enter opens it, Escape closes it.
    let stops = browser
        .eval("return [...document.querySelectorAll('[data-testid=messages-table] tbody tr')].every((row) => row.tabIndex === 0)")
        .await;
    assert_eq!(stops, json!(true));
    browser.press_keys(&Key::Tab).await;
    browser.press_keys(&Key::Tab).await;
    let focused = browser
        .eval("return document.activeElement.dataset.messageId ?? null")
        .await;
    assert_eq!(focused, json!(sent[0]), "Tab goes from row to row");
    browser.press_keys(&Key::Enter).await;
    browser
        .wait_for_text(
            "[data-testid=message-timeline] [data-testid=timeline]",
            "delivered",
        )
        .await;
    browser.press_keys(&Key::Escape).await;
    browser
        .wait_until_gone("[data-testid=message-timeline]")
        .await;
    assert_eq!(
        browser
            .eval("return document.activeElement.dataset.messageId ?? null")
            .await,
        json!(sent[0])
    );

    // A new message and a late report show up by themselves; the focus stays on its row.
    let scrolled = browser
        .eval("window.scrollTo(0, 200); return window.scrollY")
        .await;
    let newer = send_logged(&host, PHONE);
    report_delivery(&host, &provider, &sent[3], json!({"status": "delivered"}));
    wait_until_true(
        &browser,
        "the new message and the report",
        &format!(
            "const first = document.querySelector('[data-testid=messages-table] tbody tr'); \
             const reported = document.querySelector('tr[data-message-id=\"{}\"]'); \
             return first?.dataset.messageId === '{newer}' && reported?.dataset.status === 'delivered'",
            sent[3]
        ),
    )
    .await;
    assert_eq!(
        browser
            .eval("return document.activeElement.dataset.messageId ?? null")
            .await,
        json!(sent[0]),
        "the focus stays on its row"
    );
    // The scroll stays (or moves down by the new row, keeping what was in sight in place).
    let scroll = browser.eval("return window.scrollY").await;
    assert!(
        scroll.as_f64().unwrap() >= scrolled.as_f64().unwrap() && scrolled.as_f64().unwrap() > 0.0,
        "scrolled {scrolled}, now {scroll}"
    );
    assert_eq!(
        browser
            .eval(
                "return document.querySelectorAll('[data-testid=messages-table] tbody tr').length"
            )
            .await,
        json!(55),
        "what Load more brought stays"
    );
    let errors = browser.browser_log_errors().await;
    assert!(
        errors
            .iter()
            .all(|line| !line.contains("Uncaught") && !line.contains("Content Security Policy")),
        "{errors:?}"
    );
    assert_eq!(
        browser.eval("return window.__sameDocument ?? false").await,
        json!(true),
        "no reload"
    );

    // The log off: the page says so and how to turn it on; the connectors show no rate.
    let quiet = mock_and_http_host();
    create_mock_connector(&quiet);
    assert_eq!(send_message(&quiet).0, 200);
    sign_in(&browser, &quiet).await;
    browser.wait_for("[data-testid=live-sms-connector]").await;
    assert!(!browser.exists("[data-testid=delivery-rate]").await);
    browser.click("[data-nav=messages]").await;
    let notice = browser
        .wait_for_text("[data-testid=message-log-off]", "--message-log on")
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("--public-url"), "{notice}");
    browser
        .wait_for_text("[data-testid=messages-empty]", "the message log is off")
        .await;
    browser.screenshot("62-messages-log-off").await;

    // The log on without a public URL: recorded, but no provider is asked to report.
    let unreported = HostFolders::new(&[("libmock_sms.so", &plugin_file("mock_sms"))])
        .start_with_args(&[
            "--admin-key",
            ADMIN_KEY,
            "--send-key",
            SEND_KEY,
            "--message-log",
            "on",
        ]);
    create_mock_connector(&unreported);
    let recorded = send_logged(&unreported, PHONE);
    sign_in(&browser, &unreported).await;
    browser
        .wait_for_text(
            "[data-testid=live-sms-connector] [data-testid=delivery-rate]",
            "No delivery reports yet (24 h, 1 message)",
        )
        .await;
    browser.click("[data-nav=messages]").await;
    browser
        .wait_for(&format!(
            "tr[data-message-id=\"{recorded}\"][data-status=queued]"
        ))
        .await;
    let notice = browser.text_of("[data-testid=delivery-reports-off]").await;
    assert!(notice.contains("--public-url"), "{notice}");
    assert!(!browser.exists("[data-testid=message-log-off]").await);
    browser.screenshot("63-messages-reports-off").await;
}

/// The standby from the connectors page: Use as fallback on a previous connector, its badge,
/// the breaker's state in words when the live provider fails, and Stop using as fallback.
#[tokio::test(flavor = "multi_thread")]
async fn a_previous_connector_is_used_as_fallback_and_the_breaker_is_said() {
    let refusing = CaptureServer::start(503, "try later");
    let host = HostFolders::new(&[
        ("libmock_sms.so", &plugin_file("mock_sms")),
        ("libhttp_sms.so", &plugin_file("http_sms")),
    ])
    .start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--max-sends-per-recipient",
        "1000000",
        "--resend-cooldown-secs",
        "0",
        "--fallback-after-failures",
        "2",
        "--fallback-cool-off-secs",
        "600",
    ]);
    let standby = create_mock_connector(&host)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, live) = host.post(
        "/api/connectors",
        &json!({"connectorId": HTTP_SMS, "config": {"endpoint": format!("{}/sms", refusing.url)}}),
    );
    assert_eq!(status, 200, "{live}");
    let browser = Browser::start().await;
    sign_in(&browser, &host).await;
    let row = format!("[data-testid=previous-connector][data-connector-id=\"{standby}\"]");
    browser.wait_for(&row).await;
    browser
        .wait_for_text("[data-testid=no-fallback]", "No fallback")
        .await;

    browser
        .click(&format!("{row} [data-testid=use-as-fallback]"))
        .await;
    browser.wait_for_text(&row, "Fallback").await;
    browser
        .wait_for_text("[data-testid=fallback-state]", &standby)
        .await;
    let (_, connector) = host.get(&format!("/api/connectors/{standby}"));
    assert_eq!(connector["fallback"], true, "{connector}");

    // The live provider refuses: the standby sends, and after two failures the breaker opens.
    for _ in 0..2 {
        let (status, sent) = send_message(&host);
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["connectorId"], standby.as_str(), "{sent}");
    }
    browser
        .wait_for_text("[data-testid=fallback-state]", "Breaker open")
        .await;
    let said = browser.text_of("[data-testid=fallback-state]").await;
    assert!(said.contains("503"), "the last error is said: {said}");
    browser.screenshot("64-fallback-breaker-open").await;

    browser
        .click(&format!("{row} [data-testid=clear-fallback]"))
        .await;
    browser
        .wait_for_text("[data-testid=no-fallback]", "No fallback")
        .await;
    let (_, connector) = host.get(&format!("/api/connectors/{standby}"));
    assert_eq!(connector["fallback"], false, "{connector}");
    assert!(browser.browser_log_errors().await.is_empty());
}
