//! The HTTP API in process: the router of a host loaded in this process, called with tower's
//! `oneshot` ([`in_process_host`]). For what is a request and its answer: the key checks on
//! every route, malformed bodies and queries, and the refusals and Logto differences of the
//! connector, message and code routes. What needs the real process (kill -9, descriptors,
//! the connection loop, the log, browsers, counterparts) stays in the end-to-end suites.
//!
//! `E2E_STORE=postgres` runs it on PostgreSQL, as it does the end-to-end suites.

mod connectors;
mod in_process_host;
mod keys;
mod message_summary;
mod messages;
mod metrics;
mod phones;
mod protection;
mod request_bodies;
mod verification_codes;

use std::path::PathBuf;

use e2e_tests::plugin_file;
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const PHONE: &str = "+12015550123";

/// The mock's plugin file, as the plugins folders here name it.
fn mock_plugin() -> (&'static str, PathBuf) {
    ("mock.so", plugin_file("mock_sms"))
}

/// The mock with its outbox on: its messages land in the host's outbox.
fn mock_config() -> Value {
    json!({
        "templates": [
            {"usageType": "Generic", "content": "Generic code {{code}}"},
            {"usageType": "SignIn", "content": "Sign-in code {{code}}"}
        ],
        "outbox": true
    })
}

/// A host whose plugins folder holds the mock only.
fn mock_host() -> in_process_host::InProcessHost {
    let (name, file) = mock_plugin();
    in_process_host::InProcessHost::start(&[(name, &file)])
}
