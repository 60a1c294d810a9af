//! Cost of one plugin call (preparing a send) through the loaded `.so` versus the same code
//! called directly in-process. The `.so` path includes everything a send pays at the boundary:
//! the call through the vtable, `catch_unwind` and converting the step back (the message is
//! laid out for the boundary, so the plugin reads it in place).
//!
//! `cargo bench -p e2e-tests --bench plugin_call_mock`

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn plugin_call(criterion: &mut Criterion) {
    let config = json!({"templates": support::templates(), "outbox": false});
    support::compare::<mock_sms::MockSms>(criterion, "mock_prepare_send", "mock_sms", config);
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
