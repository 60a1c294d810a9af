//! The `forward` scenario: a real round trip to a provider. `POST /api/messages` through the
//! host's http-sms connector to a local HTTP sink, against `bare-forwarder` (an axum handler
//! that forwards the same JSON with one pooled reqwest client) to the same sink, alternating
//! rounds with distinct recipients.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::{compare_alternating, spawn_server, start_host_with_connector, Comparison, Recipients};

pub(crate) fn bench_forward(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<Comparison, String> {
    let sink = spawn_server(Command::new(release.join("sms-sink")), None)?;
    let sink_endpoint = format!("{}/sms", sink.url);
    let host = start_host_with_connector(
        release,
        None,
        "libhttp_sms.so",
        "http-sms",
        &json!({"endpoint": sink_endpoint}),
    )?;
    let mut forwarder_command = Command::new(release.join("bare-forwarder"));
    forwarder_command.arg(&sink_endpoint);
    let forwarder = spawn_server(forwarder_command, None)?;
    println!("POST /api/messages forwarded to a local HTTP sink: host with http-sms vs bare forwarder (axum + pooled reqwest), distinct recipients");
    compare_alternating(
        ("connector-host", &host),
        ("bare forwarder", &forwarder),
        duration_secs,
        connections,
        Recipients::Distinct,
    )
}
