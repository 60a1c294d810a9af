//! The limits on connections and requests: their flags and the values they resolve to.

use std::time::Duration;

/// Request bodies are small JSON documents; anything bigger is refused with 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

/// Descriptors kept for everything but client connections when `--max-connections` is derived:
/// the store and its WAL, the log, the plugin watcher, the runtime's own, a PostgreSQL pool.
const DESCRIPTORS_FOR_THE_HOST_ITSELF: u64 = 64;
/// A derived `--max-connections` stays at or below this: past it, memory rather than
/// descriptors runs out first (and a host behind a load balancer needs far fewer).
const MOST_DERIVED_CONNECTIONS: u64 = 10_000;
/// ... and at or above this, whatever the descriptor limit (a tiny limit is logged).
const FEWEST_DERIVED_CONNECTIONS: u64 = 16;

/// The flags of `serve` that bound connections and requests in time and number.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Seconds a client may take to send a request's head (request line and headers), counted
    /// from when the host waits for it: from accept, or on a kept-alive connection from the
    /// previous response, so it is also how long an idle kept-alive connection stays open.
    /// Then the connection is closed.
    #[arg(long, env = "CONNECTOR_HOST_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_read_timeout_secs: u64,
    /// Seconds a client may take to send a request's body once its head is in; then `408
    /// request.timeout` and the connection is closed.
    #[arg(long, env = "CONNECTOR_HOST_BODY_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub body_read_timeout_secs: u64,
    /// Seconds a response write may go without the client taking a byte (a client that stops
    /// reading, after pipelining requests for large responses, say); then the connection is
    /// closed. A slow client that keeps reading is never cut.
    #[arg(long, env = "CONNECTOR_HOST_RESPONSE_WRITE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub response_write_timeout_secs: u64,
    /// Seconds an API request may take before its client gets `503 server.timeout`; the work
    /// itself goes on to its end and is logged. Must be above `--request-timeout-secs` (the
    /// provider timeout). Default: twice the provider timeout plus 5 (a token fetch and a send).
    #[arg(long, env = "CONNECTOR_HOST_API_REQUEST_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_request_timeout_secs: Option<u64>,
    /// Open client connections at most. When full, a new connection replaces the one that has
    /// waited on its client longest (for a request head, or to take a response), or is closed
    /// at once when the host is working on a request of every connection. Default: what the
    /// open file limit leaves after the host's own files and two vendor connections per
    /// request in flight (16 to 10,000).
    #[arg(long, env = "CONNECTOR_HOST_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// API requests in progress at most; past it, new ones get `503 server.overloaded` with
    /// `Retry-After` at once instead of queueing. `/health` and `/metrics` are never refused.
    #[arg(long, env = "CONNECTOR_HOST_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Sends in progress through one connector at most; past it, `503 connector.busy` at once,
    /// so a stalled provider cannot hold every request. Default: half of `--max-in-flight`.
    #[arg(long, env = "CONNECTOR_HOST_MAX_VENDOR_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_vendor_concurrency: Option<u32>,
}

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub response_write_timeout: Duration,
    /// Above the provider timeout: a send is answered by its own outcome, not by this.
    pub api_request_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: u32,
    pub max_vendor_concurrency: u32,
}

impl Default for HttpLimits {
    /// The defaults with a provider timeout of 10 s and a descriptor limit of 1024.
    fn default() -> Self {
        LimitArgs {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            response_write_timeout_secs: 10,
            api_request_timeout_secs: None,
            max_connections: None,
            max_in_flight: 256,
            max_vendor_concurrency: None,
        }
        .resolve(Duration::from_secs(10), Some(1024))
        .unwrap_or_else(|_| unreachable!("the defaults are consistent"))
    }
}

/// A combination of limit flags that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("--api-request-timeout-secs ({} s) must be above --request-timeout-secs ({} s): a send must be answered by its own outcome", .api_request_timeout.as_secs(), .provider_timeout.as_secs())]
    RequestTimeoutNotAboveProviderTimeout {
        api_request_timeout: Duration,
        provider_timeout: Duration,
    },
}

impl LimitArgs {
    /// The limits, with defaults derived from the provider timeout and the open file limit
    /// (`None`: unlimited). Refuses a request timeout at or below the provider timeout: a
    /// client would then be told "timed out" about sends that go on and may be delivered.
    pub fn resolve(
        &self,
        provider_timeout: Duration,
        open_file_limit: Option<u64>,
    ) -> Result<HttpLimits, LimitsError> {
        let api_request_timeout = match self.api_request_timeout_secs {
            Some(seconds) => Duration::from_secs(seconds),
            None => provider_timeout * 2 + Duration::from_secs(5),
        };
        if api_request_timeout <= provider_timeout {
            return Err(LimitsError::RequestTimeoutNotAboveProviderTimeout {
                api_request_timeout,
                provider_timeout,
            });
        }
        let max_connections = match self.max_connections {
            Some(count) => count as usize,
            None => derived_max_connections(open_file_limit, self.max_in_flight),
        };
        Ok(HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            response_write_timeout: Duration::from_secs(self.response_write_timeout_secs),
            api_request_timeout,
            max_connections,
            max_in_flight: self.max_in_flight,
            max_vendor_concurrency: self
                .max_vendor_concurrency
                .unwrap_or((self.max_in_flight / 2).max(1)),
        })
    }
}

/// What the open file limit leaves for client connections: each request in flight may hold a
/// vendor connection and another idle in the client's pool (after a connector change, to the
/// previous provider).
fn derived_max_connections(open_file_limit: Option<u64>, max_in_flight: u32) -> usize {
    let reserved = DESCRIPTORS_FOR_THE_HOST_ITSELF + 2 * u64::from(max_in_flight);
    let left = open_file_limit.unwrap_or(u64::MAX).saturating_sub(reserved);
    if left < FEWEST_DERIVED_CONNECTIONS {
        tracing::warn!(
            open_file_limit,
            "the open file limit leaves almost no room for client connections; raise it (ulimit -n) or lower --max-in-flight"
        );
    }
    let connections = left.clamp(FEWEST_DERIVED_CONNECTIONS, MOST_DERIVED_CONNECTIONS);
    usize::try_from(connections).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn resolve(flags: &[&str], open_file_limit: Option<u64>) -> Result<HttpLimits, String> {
        let parsed = Flags::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .map_err(|error| error.to_string())?;
        parsed
            .limits
            .resolve(Duration::from_secs(10), open_file_limit)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_derive_from_the_provider_timeout_and_the_descriptor_limit() {
        let limits = resolve(&[], Some(1024)).unwrap();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.response_write_timeout, Duration::from_secs(10));
        assert_eq!(limits.api_request_timeout, Duration::from_secs(25));
        assert_eq!(limits.max_in_flight, 256);
        assert_eq!(limits.max_vendor_concurrency, 128);
        assert_eq!(limits.max_connections, 1024 - 64 - 512);
        assert_eq!(limits, HttpLimits::default());
        assert_eq!(
            resolve(&[], Some(1_048_576)).unwrap().max_connections,
            10_000
        );
        assert_eq!(resolve(&[], None).unwrap().max_connections, 10_000);
        assert_eq!(resolve(&[], Some(256)).unwrap().max_connections, 16);
    }

    #[test]
    fn explicit_flags_win_and_a_request_timeout_below_the_provider_s_is_refused() {
        let limits = resolve(
            &[
                "--max-connections",
                "50",
                "--max-in-flight",
                "8",
                "--max-vendor-concurrency",
                "3",
                "--api-request-timeout-secs",
                "11",
            ],
            Some(1024),
        )
        .unwrap();
        assert_eq!(
            (
                limits.max_connections,
                limits.max_in_flight,
                limits.max_vendor_concurrency
            ),
            (50, 8, 3)
        );
        let refused = resolve(&["--api-request-timeout-secs", "10"], Some(1024)).unwrap_err();
        assert!(refused.contains("must be above"), "{refused}");
        assert!(resolve(&["--max-in-flight", "0"], Some(1024)).is_err());
        assert!(resolve(&["--header-read-timeout-secs", "0"], Some(1024)).is_err());
        assert!(resolve(&["--response-write-timeout-secs", "0"], Some(1024)).is_err());
        assert_eq!(
            resolve(&["--response-write-timeout-secs", "3"], Some(1024))
                .unwrap()
                .response_write_timeout,
            Duration::from_secs(3)
        );
    }
}
