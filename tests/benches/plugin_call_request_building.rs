//! Cost of one plugin call (preparing a send) through the loaded `.so` versus the same code
//! called directly in-process. The `.so` path includes everything a send pays at the boundary:
//! the call through the vtable, `catch_unwind` and converting the step back (the message is
//! laid out for the boundary, so the plugin reads it in place).
//!
//! `cargo bench -p e2e-tests --bench plugin_call_request_building`

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn plugin_call(criterion: &mut Criterion) {
    let config = json!({"endpoint": "http://127.0.0.1:9/sms", "authorization": "Bearer secret", "templates": support::templates()});
    support::compare::<fixture_request_building_connector::RequestBuildingConnector>(
        criterion,
        "request_building_prepare_send",
        "fixture_request_building_connector",
        config,
    );
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
