//! The protection's `serve` flags (issue 24's contract: names fixed, values the defaults of
//! [`ProtectionSettings`]).

use clap::Args;

use super::{ProtectionMode, ProtectionSettings, SafeList};

#[derive(Debug, Clone, Args)]
pub struct ProtectionArgs {
    /// SMS-pumping protection: `enforce` refuses what a layer blocks (429 `sms.blocked`),
    /// `monitor` decides, counts and logs but refuses nothing, `off` decides nothing.
    #[arg(long = "protection", env = "CONNECTOR_HOST_PROTECTION", value_enum, default_value_t = ProtectionMode::Enforce)]
    pub mode: ProtectionMode,
    /// Numbers (`+12015550123`) and prefixes (`+1201555*`), comma-separated, that bypass every
    /// protection layer.
    #[arg(long, env = "CONNECTOR_HOST_PROTECTION_SAFE_LIST", value_parser = SafeList::parse)]
    pub protection_safe_list: Option<SafeList>,
    /// Sends per client IP (IPv6 per /64) per window, when the request gives `ip` (0: off).
    #[arg(long, env = "CONNECTOR_HOST_IP_VELOCITY_MAX", default_value_t = ProtectionSettings::default().ip_velocity_max)]
    pub ip_velocity_max: u32,
    #[arg(long, env = "CONNECTOR_HOST_IP_VELOCITY_WINDOW_SECS", default_value_t = ProtectionSettings::default().ip_velocity_window_secs, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub ip_velocity_window_secs: u64,
    /// Sends per number prefix (E.164 without its last 4 digits) per window (0: off).
    #[arg(long, env = "CONNECTOR_HOST_PREFIX_VELOCITY_MAX", default_value_t = ProtectionSettings::default().prefix_velocity_max)]
    pub prefix_velocity_max: u32,
    #[arg(long, env = "CONNECTOR_HOST_PREFIX_VELOCITY_WINDOW_SECS", default_value_t = ProtectionSettings::default().prefix_velocity_window_secs, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub prefix_velocity_window_secs: u64,
    /// The window over which codes' conversion (verified ÷ decided) is measured per prefix
    /// and per country.
    #[arg(long, env = "CONNECTOR_HOST_LOW_CONVERSION_WINDOW_SECS", default_value_t = ProtectionSettings::default().low_conversion_window_secs, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub low_conversion_window_secs: u64,
    /// Decided codes (verified, or expired unverified) a prefix or country needs before its
    /// conversion is judged (0: the layer is off).
    #[arg(long, env = "CONNECTOR_HOST_LOW_CONVERSION_MIN_SAMPLES", default_value_t = ProtectionSettings::default().low_conversion_min_samples)]
    pub low_conversion_min_samples: u32,
    /// Below this share of verified codes (0..1), the prefix or country is blocked.
    #[arg(long, env = "CONNECTOR_HOST_LOW_CONVERSION_MIN_RATE", default_value_t = ProtectionSettings::default().low_conversion_min_rate, value_parser = parse_rate)]
    pub low_conversion_min_rate: f64,
    /// How long a low-conversion block lasts.
    #[arg(long, env = "CONNECTOR_HOST_LOW_CONVERSION_BLOCK_SECS", default_value_t = ProtectionSettings::default().low_conversion_block_secs, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub low_conversion_block_secs: u64,
    /// Sends per window to a country where no code was ever verified (and that neither
    /// `--allowed-countries` nor an admin allowed) (0: off).
    #[arg(long, env = "CONNECTOR_HOST_FIRST_SEEN_COUNTRY_MAX", default_value_t = ProtectionSettings::default().first_seen_country_max)]
    pub first_seen_country_max: u32,
    #[arg(long, env = "CONNECTOR_HOST_FIRST_SEEN_COUNTRY_WINDOW_SECS", default_value_t = ProtectionSettings::default().first_seen_country_window_secs, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub first_seen_country_window_secs: u64,
    /// Messages allowed per budget window in total (0: no budget).
    #[arg(long, env = "CONNECTOR_HOST_DAILY_BUDGET", default_value_t = 0)]
    pub daily_budget: u64,
    /// Messages allowed per budget window to each country (0: no budget).
    #[arg(
        long,
        env = "CONNECTOR_HOST_DAILY_BUDGET_PER_COUNTRY",
        default_value_t = 0
    )]
    pub daily_budget_per_country: u64,
    #[arg(long, env = "CONNECTOR_HOST_BUDGET_WINDOW_SECS", default_value_t = ProtectionSettings::default().budget_window_secs, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub budget_window_secs: u64,
    /// Exponential backoff per recipient: after each send without a verified code the next
    /// waits the base, then twice it, up to 32 times it.
    #[arg(long, env = "CONNECTOR_HOST_RECIPIENT_BACKOFF", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub recipient_backoff: bool,
    #[arg(long, env = "CONNECTOR_HOST_RECIPIENT_BACKOFF_BASE_SECS", default_value_t = ProtectionSettings::default().recipient_backoff_base_secs, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub recipient_backoff_base_secs: u64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a rate between 0 and 1")),
    }
}

impl ProtectionArgs {
    pub fn settings(&self) -> ProtectionSettings {
        ProtectionSettings {
            mode: self.mode,
            safe_list: self.protection_safe_list.clone().unwrap_or_default(),
            ip_velocity_max: self.ip_velocity_max,
            ip_velocity_window_secs: self.ip_velocity_window_secs,
            prefix_velocity_max: self.prefix_velocity_max,
            prefix_velocity_window_secs: self.prefix_velocity_window_secs,
            low_conversion_window_secs: self.low_conversion_window_secs,
            low_conversion_min_samples: self.low_conversion_min_samples,
            low_conversion_min_rate: self.low_conversion_min_rate,
            low_conversion_block_secs: self.low_conversion_block_secs,
            first_seen_country_max: self.first_seen_country_max,
            first_seen_country_window_secs: self.first_seen_country_window_secs,
            daily_budget: self.daily_budget,
            daily_budget_per_country: self.daily_budget_per_country,
            budget_window_secs: self.budget_window_secs,
            recipient_backoff: self.recipient_backoff,
            recipient_backoff_base_secs: self.recipient_backoff_base_secs,
        }
    }
}
