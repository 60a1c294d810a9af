//! Prometheus metrics: the recorder and its upkeep.
//!
//! The recorder is installed once per process (the `metrics` facade is global by design). The
//! exporter has no HTTP listener of its own (`/metrics` is a route of ours), so nothing drains
//! its histogram buckets but [`PrometheusHandle::run_upkeep`]: without the periodic upkeep
//! below, every recorded sample would be kept until the next scrape.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Send durations, seconds: a local mock answers in microseconds, a provider in tens of
/// milliseconds, a stalled one at the timeout.
const SEND_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Operations per SQLite commit (group commit): 1 at low load, up to the writer's cap of 256.
/// Buckets rather than the exporter's default summary: they show how often batches of each
/// size formed, which is what tells whether group commit is at work.
const STORE_BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub fn install_metrics_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sms_send_duration_seconds".to_owned()),
            SEND_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("store_batch_size".to_owned()),
            STORE_BATCH_SIZE_BUCKETS,
        )?
        .install_recorder()
}

/// Drains the recorder's buckets every few seconds, for as long as the host runs.
pub async fn run_metrics_upkeep(handle: PrometheusHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}
