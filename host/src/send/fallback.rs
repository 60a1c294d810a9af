//! When a send goes to the standby (fallback) connector, and the circuit breaker that skips a
//! failing live connector.
//!
//! A send fails over only when the live connector's provider provably took nothing: it could
//! not be reached (`DeliveryError::Unreachable`), or the plugin marked its error
//! `not_accepted` (credentials refused, throttling, 503). Never on a refusal of the message
//! itself, never after the provider returned an id, never when the outcome is unknown: one SMS
//! is never sent twice.
//!
//! The breaker counts the live connector's consecutive not-accepted failures. At
//! `failures_to_open` it opens: for `cool_off` sends go straight to the standby. Then it is
//! half-open: one send probes the live connector (the others still go to the standby); the
//! probe's success closes it, a not-accepted failure opens it again. Each host keeps its own
//! breaker: it reflects what this host sees of the provider (its network path, its share of
//! the provider's rate limit), needs no store write per send, and a host that restarts
//! simply probes again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::send::executor::DeliveryError;

/// `--fallback-after-failures` and `--fallback-cool-off-secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures_to_open: u32,
    pub cool_off: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            cool_off: Duration::from_secs(30),
        }
    }
}

/// Whether a failed send may go to the standby: its provider provably took nothing.
pub fn provider_took_nothing(error: &DeliveryError) -> bool {
    match error {
        DeliveryError::Unreachable(_) => true,
        DeliveryError::Connector(error) => error.is_not_accepted(),
        DeliveryError::OutcomeUnknown(_) => false,
    }
}

/// Why a send went to the standby: the `reason` of `sms_fallback_sends_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The live connector's provider could not be reached.
    Unreachable,
    /// It refused the request as a whole (credentials, throttling, 503).
    NotAccepted,
    /// The breaker is open: the live connector was not tried.
    BreakerOpen,
    /// The live connector cannot send on this host (its plugin is missing, the loaded build
    /// refuses its config, or its saved config cannot be opened): it was not tried.
    LiveUnavailable,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 4] = [
        FallbackReason::Unreachable,
        FallbackReason::NotAccepted,
        FallbackReason::BreakerOpen,
        FallbackReason::LiveUnavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FallbackReason::Unreachable => "unreachable",
            FallbackReason::NotAccepted => "not_accepted",
            FallbackReason::BreakerOpen => "breaker_open",
            FallbackReason::LiveUnavailable => "live_unavailable",
        }
    }

    /// The reason of a failure the standby may take.
    pub fn of(error: &DeliveryError) -> Self {
        match error {
            DeliveryError::Unreachable(_) => FallbackReason::Unreachable,
            _ => FallbackReason::NotAccepted,
        }
    }
}

/// Where the breaker sends a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The live connector (the standby if it provably took nothing).
    Live,
    /// The live connector, as the half-open breaker's one probe: report its outcome with
    /// [`Breaker::record`] (`probe: true`).
    Probe,
    /// The standby, without trying the live connector.
    Standby,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// `sms_fallback_breaker_state`: 0 closed, 1 open, 2 half-open.
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// See [`Breaker::probe_ticket`].
pub struct ProbeTicket<'a> {
    breaker: &'a Breaker,
    finished: bool,
}

impl ProbeTicket<'_> {
    /// The probe's outcome was recorded.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for ProbeTicket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker.cancel_probe();
        }
    }
}

/// What `/health` shows of the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    /// The live connector it watches; `None` before its first send.
    pub connector_id: Option<String>,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// The last not-accepted failure, secrets redacted.
    pub last_error: Option<String>,
    /// How long ago it opened, while open or half-open.
    pub open_for: Option<Duration>,
}

/// The breaker of this host's live connector; reset when another connector goes live.
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    connector_id: Option<String>,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// Set while open or half-open.
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl Inner {
    fn state(&self, settings: &BreakerSettings, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(opened) if now.duration_since(opened) < settings.cool_off => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Watching another connector: everything known is about the previous one.
    fn follow(&mut self, connector_id: &str) {
        if self.connector_id.as_deref() != Some(connector_id) {
            *self = Inner {
                connector_id: Some(connector_id.to_owned()),
                ..Inner::default()
            };
            metrics::gauge!("sms_fallback_breaker_state").set(BreakerState::Closed.gauge());
        }
    }
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        metrics::gauge!("sms_fallback_breaker_state").set(BreakerState::Closed.gauge());
        Self {
            settings,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Where a send through `connector_id` goes, when a standby is there to take it.
    pub fn route(&self, connector_id: &str, now: Instant) -> Route {
        let mut inner = self.lock();
        inner.follow(connector_id);
        match inner.state(&self.settings, now) {
            BreakerState::Closed => Route::Live,
            BreakerState::Open => Route::Standby,
            BreakerState::HalfOpen if inner.probe_in_flight => Route::Standby,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                metrics::gauge!("sms_fallback_breaker_state").set(BreakerState::HalfOpen.gauge());
                tracing::info!(%connector_id, "fallback breaker half-open: one send probes the live connector");
                Route::Probe
            }
        }
    }

    /// The outcome of a send through the live connector: `failure` is a not-accepted one
    /// (redacted text), `None` a success or a failure that says nothing of the provider's
    /// health (a bad number, an unknown outcome).
    pub fn record(&self, connector_id: &str, failure: Option<&str>, probe: bool, now: Instant) {
        let mut inner = self.lock();
        inner.follow(connector_id);
        if probe {
            inner.probe_in_flight = false;
        }
        match failure {
            None => {
                if inner.opened_at.is_some() && probe {
                    tracing::info!(%connector_id, "fallback breaker closed: the live connector's probe went through");
                    metrics::gauge!("sms_fallback_breaker_state").set(BreakerState::Closed.gauge());
                    inner.opened_at = None;
                }
                if inner.opened_at.is_none() {
                    inner.consecutive_failures = 0;
                }
            }
            Some(error) => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                inner.last_error = Some(error.to_owned());
                let reopen = probe && inner.opened_at.is_some();
                let open = inner.opened_at.is_none()
                    && inner.consecutive_failures >= self.settings.failures_to_open;
                if reopen || open {
                    inner.opened_at = Some(now);
                    metrics::gauge!("sms_fallback_breaker_state").set(BreakerState::Open.gauge());
                    tracing::warn!(
                        %connector_id,
                        consecutive_failures = inner.consecutive_failures,
                        cool_off_secs = self.settings.cool_off.as_secs(),
                        last_error = %error,
                        "fallback breaker open: sends go to the standby connector for the cool-off"
                    );
                }
            }
        }
    }

    /// A probe that did not happen (the send stopped before the live connector): another
    /// send may probe.
    pub fn cancel_probe(&self) {
        self.lock().probe_in_flight = false;
    }

    /// Held by the send that probes: dropped before [`ProbeTicket::finish`] (the send was
    /// refused as busy, or cancelled with its request), it lets another send probe, so the
    /// breaker never stays half-open with no probe running.
    pub fn probe_ticket(&self) -> ProbeTicket<'_> {
        ProbeTicket {
            breaker: self,
            finished: false,
        }
    }

    pub fn view(&self, now: Instant) -> BreakerView {
        let inner = self.lock();
        BreakerView {
            connector_id: inner.connector_id.clone(),
            state: inner.state(&self.settings, now),
            consecutive_failures: inner.consecutive_failures,
            last_error: inner.last_error.clone(),
            open_for: inner.opened_at.map(|opened| now.duration_since(opened)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain counters: still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use plugin_api::ConnectorError;

    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failures_to_open: 3,
            cool_off: Duration::from_secs(30),
        })
    }

    #[test]
    fn only_a_provider_that_provably_took_nothing_lets_the_standby_send() {
        assert!(provider_took_nothing(&DeliveryError::Unreachable(
            "connection refused".into()
        )));
        assert!(provider_took_nothing(&DeliveryError::Connector(
            ConnectorError::rate_limit_exceeded("429").not_accepted()
        )));
        assert!(!provider_took_nothing(&DeliveryError::Connector(
            ConnectorError::rate_limit_exceeded("a plugin that did not say")
        )));
        assert!(!provider_took_nothing(&DeliveryError::Connector(
            ConnectorError::invalid_request_parameters("bad number")
        )));
        assert!(!provider_took_nothing(&DeliveryError::OutcomeUnknown(
            "timed out after sending".into()
        )));
    }

    #[test]
    fn it_opens_after_consecutive_failures_and_a_success_in_between_resets_the_count() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.route("live", now), Route::Live);
            breaker.record("live", Some("503"), false, now);
        }
        breaker.record("live", None, false, now);
        assert_eq!(breaker.view(now).consecutive_failures, 0);
        for _ in 0..3 {
            assert_eq!(breaker.route("live", now), Route::Live);
            breaker.record("live", Some("503"), false, now);
        }
        let view = breaker.view(now);
        assert_eq!(view.state, BreakerState::Open);
        assert_eq!(view.last_error.as_deref(), Some("503"));
        assert_eq!(breaker.route("live", now), Route::Standby);
    }

    #[test]
    fn after_the_cool_off_one_probe_decides_and_the_others_keep_to_the_standby() {
        let breaker = breaker();
        let start = Instant::now();
        for _ in 0..3 {
            breaker.record("live", Some("refused"), false, start);
        }
        let later = start + Duration::from_secs(31);
        assert_eq!(breaker.view(later).state, BreakerState::HalfOpen);
        assert_eq!(breaker.route("live", later), Route::Probe);
        assert_eq!(
            breaker.route("live", later),
            Route::Standby,
            "one probe at a time"
        );
        // The probe fails: open again, for a whole cool-off from now.
        breaker.record("live", Some("refused"), true, later);
        assert_eq!(breaker.view(later).state, BreakerState::Open);
        assert_eq!(
            breaker.route("live", later + Duration::from_secs(29)),
            Route::Standby
        );
        let much_later = later + Duration::from_secs(31);
        assert_eq!(breaker.route("live", much_later), Route::Probe);
        breaker.record("live", None, true, much_later);
        let view = breaker.view(much_later);
        assert_eq!(
            (view.state, view.consecutive_failures),
            (BreakerState::Closed, 0)
        );
        assert_eq!(breaker.route("live", much_later), Route::Live);
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_send_probe() {
        let breaker = breaker();
        let start = Instant::now();
        for _ in 0..3 {
            breaker.record("live", Some("refused"), false, start);
        }
        let later = start + Duration::from_secs(31);
        assert_eq!(breaker.route("live", later), Route::Probe);
        breaker.cancel_probe();
        assert_eq!(breaker.route("live", later), Route::Probe);
        // A probing send cancelled with its request: its ticket lets the next one probe.
        drop(breaker.probe_ticket());
        assert_eq!(breaker.route("live", later), Route::Probe);
        // A finished probe's ticket leaves the next probe's flag alone.
        breaker.probe_ticket().finish();
        assert_eq!(breaker.route("live", later), Route::Standby);
    }

    #[test]
    fn another_live_connector_starts_closed() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            breaker.record("old", Some("refused"), false, now);
        }
        assert_eq!(breaker.route("old", now), Route::Standby);
        assert_eq!(breaker.route("new", now), Route::Live);
        let view = breaker.view(now);
        assert_eq!(view.connector_id.as_deref(), Some("new"));
        assert_eq!(view.consecutive_failures, 0);
    }
}
