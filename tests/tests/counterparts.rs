//! Vendor connectors against real counterparts, end to end through the host: Twilio's
//! official OpenAPI description served by Prism (which answers 422 to a request that violates
//! the spec and 401 without auth), and a real Kannel with its fake SMS centre.
//! `scripts/install-counterparts` installs them; a missing one fails the test, naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{
    counterparts_dir, free_port, plugin_file, wait_for_port, CaptureServer, HostFolders,
    KillOnDrop, TestHost, ADMIN_KEY, SEND_KEY,
};
use serde_json::{json, Value};

const PHONE: &str = "+12015550123";
const INSTALL_HINT: &str = "run scripts/install-counterparts (the README's test command does)";

fn require(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
    path.to_owned()
}

fn start_prism() -> (KillOnDrop, String) {
    let prism = require(&counterparts_dir().join("node_modules/.bin/prism"));
    let spec = require(
        &counterparts_dir()
            .join("node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json"),
    );
    let port = free_port();
    let child = Command::new(prism)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prism");
    let guard = KillOnDrop(child);
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "prism did not start on port {port}"
    );
    (guard, format!("http://127.0.0.1:{port}"))
}

fn twilio_config(base_url: &str) -> Value {
    json!({
        "accountSID": "AC0123456789abcdef0123456789abcdef",
        "authToken": "twilio-secret-token",
        "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef",
        "baseUrl": base_url,
        "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
    })
}

#[test]
fn twilio_requests_satisfy_twilios_openapi_description() {
    let (_prism, prism_url) = start_prism();
    // The counterpart is strict: a request without auth or without `To` is refused.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let messages_url =
        format!("{prism_url}/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json");
    let no_auth = agent
        .post(&messages_url)
        .send_form([("To", PHONE), ("Body", "x"), ("From", "+12015550100")])
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    let no_to = agent
        .post(&messages_url)
        .header("Authorization", "Basic QUM6dA==")
        .send_form([("Body", "x"), ("From", "+12015550100")])
        .unwrap();
    assert_eq!(no_to.status(), 422);

    let host = HostFolders::new(&[("twilio.so", &plugin_file("twilio_sms"))]).start();
    let (status, connector) = host.post("/api/connectors", &json!({"connectorId": "twilio-short-message-service", "config": twilio_config(&prism_url)}));
    assert_eq!(status, 200, "{connector}");
    assert_eq!(connector["config"]["authToken"], "******");
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "123456"}})),
    );
    assert_eq!(status, 200, "Prism refused the request: {receipt}");
    assert!(
        receipt["providerMessageId"]
            .as_str()
            .is_some_and(|sid| sid.starts_with("SM") || sid.starts_with("MM")),
        "{receipt}"
    );

    // The config test goes through the same request.
    let (status, body) = host.post(
        "/api/connectors/twilio-short-message-service/test",
        &json!({"phone": PHONE, "config": twilio_config(&prism_url)}),
    );
    assert_eq!(status, 204, "{body}");
    assert!(!host.log().contains("twilio-secret-token"));
}

struct Kannel {
    _processes: Vec<KillOnDrop>,
    fake_smsc_log: PathBuf,
    sendsms_url: String,
}

fn start_kannel(scratch: &Path) -> Kannel {
    let fakesmsc = require(Path::new("/usr/lib/kannel/test/fakesmsc"));
    let bearerbox = require(Path::new("/usr/sbin/bearerbox"));
    let smsbox = require(Path::new("/usr/sbin/smsbox"));
    let [admin, smsbox_port, smsc, sendsms] = [free_port(), free_port(), free_port(), free_port()];
    let config = scratch.join("kannel.conf");
    std::fs::write(
        &config,
        format!(
            "group = core\nadmin-port = {admin}\nadmin-password = admin\nsmsbox-port = {smsbox_port}\nbox-allow-ip = 127.0.0.1\n\
             admin-interface = 127.0.0.1\nlog-level = 1\n\n\
             group = smsc\nsmsc = fake\nsmsc-id = fake1\nhost = 127.0.0.1\nport = {smsc}\n\n\
             group = smsbox\nbearerbox-host = 127.0.0.1\nsendsms-port = {sendsms}\nsendsms-interface = 127.0.0.1\n\n\
             group = sendsms-user\nusername = tester\npassword = kannel-pass-5309\nmax-messages = 3\nconcatenation = true\n"
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::File::create(scratch.join(name)).unwrap();
    let spawn = |command: &mut Command, name: &str| {
        KillOnDrop(
            command
                .stdout(log(name))
                .stderr(log(&format!("{name}.err")))
                .spawn()
                .expect("start kannel"),
        )
    };
    let bearer = spawn(Command::new(&bearerbox).arg(&config), "bearerbox.log");
    assert!(
        wait_for_port(smsbox_port, Duration::from_secs(10)),
        "bearerbox did not start"
    );
    let fake_smsc_log = scratch.join("fakesmsc.log");
    let fake = KillOnDrop(
        Command::new(&fakesmsc)
            .args([
                "-H",
                "127.0.0.1",
                "-r",
                &smsc.to_string(),
                "-i",
                "1",
                "-m",
                "0",
                "123 345 text nop",
            ])
            // fakesmsc logs what it receives on stderr.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&fake_smsc_log).unwrap())
            .spawn()
            .expect("start fakesmsc"),
    );
    let sms = spawn(Command::new(&smsbox).arg(&config), "smsbox.log");
    assert!(
        wait_for_port(sendsms, Duration::from_secs(10)),
        "smsbox did not start"
    );
    // Until fakesmsc is connected Kannel answers `202 3: Queued for later delivery`, which the
    // plugin treats as an error, and a fixed sleep was too short on a loaded machine: poll
    // bearerbox's admin status until the SMSC's line reads `fake1[fake1] FAKE:... (online ...)`.
    // Errors while bearerbox is still starting are retried.
    let status_url = format!("http://127.0.0.1:{admin}/status.txt?password=admin");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = match agent.get(&status_url).call() {
            Ok(mut response) => response.body_mut().read_to_string().unwrap_or_default(),
            Err(error) => format!("no status: {error}"),
        };
        let online =
            |line: &str| line.trim_start().starts_with("fake1[") && line.contains("(online");
        if status.lines().any(online) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fake SMSC did not come online within 30 s; last bearerbox status:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Kannel {
        _processes: vec![sms, fake, bearer],
        fake_smsc_log,
        sendsms_url: format!("http://127.0.0.1:{sendsms}"),
    }
}

fn kannel_config(url: &str, password: &str) -> Value {
    json!({"baseUrl": url, "username": "tester", "password": password, "from": "Acme",
        "templates": [{"usageType": "SignIn", "content": "Acme sign-in code {{code}}"}, {"usageType": "Generic", "content": "Acme code {{code}}"}]})
}

fn received(kannel: &Kannel) -> Vec<String> {
    let log = std::fs::read(&kannel.fake_smsc_log).unwrap_or_default();
    String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|line| {
            line.split_once("Got message ")
                .map(|(_, rest)| rest.to_owned())
        })
        .collect()
}

#[test]
fn kannel_delivers_the_rendered_code_to_the_fake_smsc_and_bad_credentials_are_invalid_config() {
    let host: TestHost = HostFolders::new(&[("kannel.so", &plugin_file("kannel_sms"))]).start();
    let kannel = start_kannel(&host.folders().scratch_path(""));
    let (status, body) = host.post("/api/connectors", &json!({"connectorId": "kannel-sms", "config": kannel_config(&kannel.sendsms_url, "kannel-pass-5309")}));
    assert_eq!(status, 200, "{body}");

    let (status, body) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": "12015550123", "type": "SignIn"})),
    );
    assert_eq!(status, 204, "{body}");
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = received(&kannel);
        if !delivered.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delivered.len(), 1, "fakesmsc received {delivered:?}");
    // `1: <Acme +12015550123 text Acme sign-in code 123456>`
    let message = &delivered[0];
    let prefix = "1: <Acme +12015550123 text Acme sign-in code ";
    assert!(
        message.starts_with(prefix) && message.ends_with('>'),
        "{message}"
    );
    let code = &message[prefix.len()..message.len() - 1];
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{message}"
    );
    let verify = json!({"phone": PHONE, "verificationCode": code, "type": "SignIn"});
    assert_eq!(
        host.request(
            "POST",
            "/api/verification-codes/verify",
            Some(SEND_KEY),
            Some(&verify)
        )
        .0,
        204
    );

    // A wrong password: Kannel answers 403, the connector says invalid_config.
    let (status, body) = host.post("/api/connectors", &json!({"connectorId": "kannel-sms", "config": kannel_config(&kannel.sendsms_url, "wrong")}));
    assert_eq!(status, 200, "{body}");
    let (status, error) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(
        (status, error["code"].clone()),
        (502, json!("connector.invalid_config")),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("403"),
        "{error}"
    );
    let (status, error) = host.post(
        "/api/connectors/kannel-sms/test",
        &json!({"phone": PHONE, "config": kannel_config(&kannel.sendsms_url, "wrong")}),
    );
    assert_eq!(
        (status, error["code"].clone()),
        (400, json!("connector.invalid_config")),
        "{error}"
    );
    assert_eq!(received(&kannel).len(), 1, "nothing else reached the SMSC");
    assert!(
        !host.log().contains("kannel-pass-5309"),
        "the Kannel password reached the log"
    );
}

#[test]
fn kannel_reports_delivery_of_a_code_through_its_dlr_url_and_the_message_reaches_delivered() {
    // The host's address is its public URL here: Kannel's smsbox calls it back.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public_url = format!("http://127.0.0.1:{port}");
    let host = HostFolders::new(&[("kannel.so", &plugin_file("kannel_sms"))]).start_with_args(&[
        "--listen",
        &listen,
        "--public-url",
        &public_url,
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
    ]);
    let kannel = start_kannel(&host.folders().scratch_path(""));
    let (status, body) = host.post("/api/connectors", &json!({"connectorId": "kannel-sms", "config": kannel_config(&kannel.sendsms_url, "kannel-pass-5309")}));
    assert_eq!(status, 200, "{body}");

    let (status, sent) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "type": "SignIn", "payload": {"code": "424242"}})),
    );
    assert_eq!(status, 200, "{sent}");
    let message_id = sent["messageId"].as_str().unwrap().to_owned();
    // bearerbox reports "accepted by the SMS centre" (8) and fakesmsc's "delivered" (1);
    // smsbox fetches the dlr-url for each, concurrently, so "sent" may arrive after
    // "delivered" (it is then kept in the timeline and the status stays delivered).
    let report_statuses = |message: &Value| -> Vec<String> {
        message["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| event["source"] == "report")
            .filter_map(|event| event["status"].as_str().map(str::to_owned))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let message = loop {
        let (status, message) = host.get(&format!("/api/messages/{message_id}"));
        assert_eq!(status, 200, "{message}");
        let reports = report_statuses(&message);
        if message["status"] == "delivered"
            && ["sent", "delivered"]
                .iter()
                .all(|expected| reports.iter().any(|status| status == expected))
        {
            break message;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Kannel's sent and delivered reports did not both reach the host: {message}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let reports: Vec<(&str, &str)> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["source"] == "report")
        .map(|event| {
            (
                event["status"].as_str().unwrap(),
                event["providerStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        reports.iter().all(|(_, provider)| !provider.is_empty()),
        "Kannel's own status kept: {message}"
    );
    assert_eq!(received(&kannel).len(), 1, "one SMS reached the SMSC");
}

/// Runs `script` with the vendors' helper libraries' Python (`vendor-helpers` venv), the
/// parameters as a JSON object after `arguments`; what it prints, trimmed.
fn vendor_helper(script: &str, arguments: &[&str], parameters: &[(&str, &str)]) -> String {
    let python = require(&counterparts_dir().join("vendor-helpers/bin/python"));
    let parameters: serde_json::Map<String, Value> = parameters
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(arguments)
        .arg(Value::Object(parameters).to_string())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Twilio's signature of a request to `url` with these POST parameters, computed by Twilio's
/// own helper library (`twilio.request_validator.RequestValidator`).
fn twilio_signature(auth_token: &str, url: &str, parameters: &[(&str, &str)]) -> String {
    vendor_helper(
        "import json, sys\n\
         from twilio.request_validator import RequestValidator\n\
         token, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n\
         print(RequestValidator(token).compute_signature(url, params))",
        &[auth_token, url],
        parameters,
    )
}

#[test]
fn twilio_status_callbacks_signed_by_twilios_helper_library_are_taken_and_forged_ones_refused() {
    // Twilio's API as a capture: what matters is the StatusCallback URL the host asks for.
    let twilio = CaptureServer::start(
        201,
        r#"{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}"#,
    );
    let public_url = "https://sms.example.com";
    let host = HostFolders::new(&[("twilio.so", &plugin_file("twilio_sms"))]).start_with_args(&[
        "--public-url",
        public_url,
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
    ]);
    let (status, body) = host.post("/api/connectors", &json!({"connectorId": "twilio-short-message-service", "config": twilio_config(&twilio.url)}));
    assert_eq!(status, 200, "{body}");
    let (status, sent) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "135790"}})),
    );
    assert_eq!(status, 200, "{sent}");
    let message_id = sent["messageId"].as_str().unwrap();
    let request = twilio.requests().pop().unwrap();
    let callback = form_urlencoded::parse(request.body.as_bytes())
        .find(|(name, _)| name == "StatusCallback")
        .map(|(_, value)| value.into_owned())
        .expect("a StatusCallback in the request to Twilio");
    assert!(
        callback.starts_with(&format!("{public_url}/dlr/")),
        "{callback}"
    );
    let path = callback.trim_start_matches(public_url).to_owned();

    // What Twilio posts when the handset confirms.
    let delivered = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+12015550100"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "delivered"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("SmsStatus", "delivered"),
        ("To", PHONE),
    ];
    let post = |parameters: &[(&str, &str)], signature: &str| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(parameters)
            .finish();
        let mut response = ureq::post(&format!("{}{path}", host.base_url))
            .config()
            .http_status_as_error(false)
            .build()
            .header("X-Twilio-Signature", signature)
            .content_type("application/x-www-form-urlencoded")
            .send(&body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    // Signed with another account's token: refused, nothing recorded.
    let (status, body) = post(
        &delivered,
        &twilio_signature("another-accounts-token", &callback, &delivered),
    );
    assert_eq!(status, 403, "{body}");
    // Signed right, then one parameter changed on the way: refused.
    let signature = twilio_signature("twilio-secret-token", &callback, &delivered);
    let mut tampered = delivered;
    tampered[4] = ("MessageStatus", "failed");
    let (status, body) = post(&tampered, &signature);
    assert_eq!(status, 403, "{body}");
    let (_, message) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(message["status"], "queued", "{message}");

    let (status, body) = post(&delivered, &signature);
    assert_eq!(status, 200, "Twilio's own signature is taken: {body}");
    let (_, message) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(message["status"], "delivered", "{message}");
    assert_eq!(
        message["providerMessageId"], "SM0123456789abcdef0123456789abcdef",
        "{message}"
    );
    // Replayed: the same event once.
    assert_eq!(post(&delivered, &signature).0, 200);
    let (_, replayed) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(
        replayed["events"].as_array().unwrap().len(),
        message["events"].as_array().unwrap().len(),
        "{replayed}"
    );
}

/// Vonage's signature of a receipt's parameters, computed by Vonage's own Python SDK
/// (`vonage.Client.signature`, 3.x) with `method` (`None`: its default, `md5hash`).
fn vonage_signature(secret: &str, method: Option<&str>, parameters: &[(&str, &str)]) -> String {
    vendor_helper(
        "import json, sys\n\
         import vonage\n\
         secret, method, params = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3])\n\
         client = vonage.Client(key='abcd1234', secret='unused', signature_secret=secret, signature_method=method)\n\
         print(client.signature(params))",
        &[secret, method.unwrap_or_default()],
        parameters,
    )
}

#[test]
fn vonage_receipts_signed_by_vonages_sdk_are_taken_with_each_method_and_forged_ones_refused() {
    let vonage = CaptureServer::start(
        200,
        r#"{"message-count": "1", "messages": [{"to": "12015550123", "message-id": "0A0000001234ABCD", "status": "0"}]}"#,
    );
    let public_url = "https://sms.example.com";
    let host = HostFolders::new(&[("vonage.so", &plugin_file("vonage_sms"))]).start_with_args(&[
        "--public-url",
        public_url,
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
    ]);
    let secret = "vonage-signature-secret-42";
    for (method, sdk_method) in [("sha256", Some("sha256")), ("md5hash", None)] {
        let config = json!({
            "apiKey": "abcd1234", "apiSecret": "vonage-api-secret", "brandName": "Acme",
            "baseUrl": vonage.url, "signatureSecret": secret, "signatureMethod": method,
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        });
        let (status, body) = host.post(
            "/api/connectors",
            &json!({"connectorId": "vonage-sms", "config": config}),
        );
        assert_eq!(status, 200, "{body}");
        let (status, sent) = host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "975310"}})),
        );
        assert_eq!(status, 200, "{sent}");
        let message_id = sent["messageId"].as_str().unwrap();
        let request = vonage.requests().pop().unwrap();
        let form: Vec<(String, String)> = form_urlencoded::parse(request.body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(field("status-report-req").as_deref(), Some("1"));
        let callback = field("callback").expect("a callback in the request to Vonage");
        let path = callback.trim_start_matches(public_url).to_owned();

        // Vonage's receipt, as query parameters appended to the callback URL.
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let receipt = [
            ("msisdn", "12015550123"),
            ("to", "Acme"),
            ("network-code", "310090"),
            ("messageId", "0A0000001234ABCD"),
            ("price", "0.00750000"),
            ("status", "delivered"),
            ("scts", "2612062230"),
            ("err-code", "0"),
            ("api-key", "abcd1234"),
            ("message-timestamp", "2026-12-06 22:30:00"),
            ("timestamp", timestamp.as_str()),
            ("nonce", "7c1b2a9e-5f3d-4e8a-9b6c-0d1e2f3a4b5c"),
        ];
        let get = |parameters: &[(&str, &str)], sig: &str| {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(parameters)
                .append_pair("sig", sig)
                .finish();
            host.request_raw("GET", &format!("{path}&{query}"), None, None)
        };
        let sig = vonage_signature(secret, sdk_method, &receipt);
        let mut forged = receipt;
        forged[5] = ("status", "failed");
        let (status, body) = get(&forged, &sig);
        assert_eq!(status, 403, "{method}: a changed receipt: {body}");
        let (status, body) = get(
            &receipt,
            &vonage_signature("another-secret", sdk_method, &receipt),
        );
        assert_eq!(status, 403, "{method}: another secret: {body}");

        let (status, body) = get(&receipt, &sig);
        assert_eq!(
            status, 200,
            "{method}: Vonage's own signature is taken: {body}"
        );
        let (_, message) = host.get(&format!("/api/messages/{message_id}"));
        assert_eq!(message["status"], "delivered", "{method}: {message}");
        assert_eq!(message["providerMessageId"], "0A0000001234ABCD");
        // Signed over every parameter of the request, the report URL's own too: also taken.
        let (_, url_query) = callback.split_once('?').unwrap();
        let url_parameters: Vec<(String, String)> = form_urlencoded::parse(url_query.as_bytes())
            .into_owned()
            .collect();
        let mut everything: Vec<(&str, &str)> = receipt.to_vec();
        everything.extend(url_parameters.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let (status, body) = get(&receipt, &vonage_signature(secret, sdk_method, &everything));
        assert_eq!(
            status, 200,
            "{method}: signed with the URL's parameters: {body}"
        );
    }
}
