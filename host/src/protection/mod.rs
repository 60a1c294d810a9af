//! SMS-pumping protection (issue 24): layers that refuse a send before anything is reserved or
//! sent, each with a reason. Pure decision logic over bounded, expiring state, with the clock
//! passed in (milliseconds since the Unix epoch, as the store's).
//!
//! # Layers (each configurable, 0 turns a count layer off)
//! - `ip_velocity`: sends per client IP (IPv6 by /64) per window, when the caller gives the IP;
//! - `prefix_velocity`: sends per number prefix (E.164 without its last 4 digits) per window;
//! - `low_conversion`: of the codes the host issued, verified ÷ decided per prefix and per
//!   country ([`conversion`]); below the rate with enough samples, the prefix (or country)
//!   is blocked for a period;
//! - `first_seen_country`: a country where no code was ever verified (and that neither the
//!   operator's `--allowed-countries` nor an admin allowed) takes only so many sends per window;
//! - `budget`: global and per-country message budgets over a window (hard stop);
//! - `recipient_backoff` (off by default): exponential backoff per recipient.
//!
//! Every refusal is a stored [`Block`] with an id (listed and lifted by the admin API): a
//! later send to the same subject is refused by the block until it ends or is lifted. The
//! safe-list bypasses everything. [`ProtectionMode::Monitor`] decides, records and reports,
//! and refuses nothing.
//!
//! # Bounds
//! Every map keyed by something a client chooses holds a fixed number of entries at most and
//! evicts its oldest at the cap ([`bounded`]); blocks are capped at [`MAX_BLOCKS`], the one
//! that ends first evicted. Countries are bounded by the numbering plans.
//!
//! # Persistence
//! [`ProtectionSnapshot`]: the blocks, the conversion statistics and pending codes, the allowed
//! and verified countries and the budgets' counts, saved by the caller (a periodic flush, and
//! at once when a block appears or is lifted) and restored at start-up: no write per send.
//!
//! # Several hosts
//! On PostgreSQL the hosts share the blocks and the counts ([`shared_state`]): `check` still
//! decides in memory, and every 250 ms each host pushes what it counted and made and takes
//! what the others did (a decision lags them by one exchange at most).

pub mod blocks;
pub mod bounded;
pub mod conversion;
pub mod flags;
pub mod persistence;
pub mod shared_state;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use blocks::BlockTable;
use bounded::{BoundedMap, WindowCount};
use conversion::{CodeKey, Conversion, ConversionStats, PendingCode};

pub use blocks::MAX_BLOCKS;

/// The subject of a global block (the budget).
pub const GLOBAL_SUBJECT: &str = "*";
/// At most this many keys per counting layer (IPs, prefixes, countries, recipients).
pub const MAX_TRACKED_KEYS: usize = 100_000;

/// `--protection`: what the layers do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProtectionMode {
    /// Nothing is decided or recorded.
    Off,
    /// Decides, counts and logs; refuses nothing.
    Monitor,
    /// Refuses what a layer blocks.
    #[default]
    Enforce,
}

impl ProtectionMode {
    pub fn label(self) -> &'static str {
        match self {
            ProtectionMode::Off => "off",
            ProtectionMode::Monitor => "monitor",
            ProtectionMode::Enforce => "enforce",
        }
    }
}

/// Why a send is blocked: the `data.reason` of a `429 sms.blocked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    IpVelocity,
    PrefixVelocity,
    LowConversion,
    FirstSeenCountry,
    Budget,
    RecipientBackoff,
}

impl BlockReason {
    /// Every reason, in the order the API documents them.
    pub const ALL: [BlockReason; 6] = [
        BlockReason::IpVelocity,
        BlockReason::PrefixVelocity,
        BlockReason::LowConversion,
        BlockReason::FirstSeenCountry,
        BlockReason::Budget,
        BlockReason::RecipientBackoff,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BlockReason::IpVelocity => "ip_velocity",
            BlockReason::PrefixVelocity => "prefix_velocity",
            BlockReason::LowConversion => "low_conversion",
            BlockReason::FirstSeenCountry => "first_seen_country",
            BlockReason::Budget => "budget",
            BlockReason::RecipientBackoff => "recipient_backoff",
        }
    }
}

/// What a block is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    Prefix,
    Country,
    Ip,
    Recipient,
    Global,
}

impl BlockKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [BlockKind; 5] = [
        BlockKind::Prefix,
        BlockKind::Country,
        BlockKind::Ip,
        BlockKind::Recipient,
        BlockKind::Global,
    ];

    /// As the API writes it (`prefix`, `country`, ...).
    pub fn label(self) -> &'static str {
        match self {
            BlockKind::Prefix => "prefix",
            BlockKind::Country => "country",
            BlockKind::Ip => "ip",
            BlockKind::Recipient => "recipient",
            BlockKind::Global => "global",
        }
    }
}

/// `--protection-safe-list`: numbers (`+12015550123`) and prefixes (`+1201555*`) no layer
/// touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeList {
    numbers: BTreeSet<String>,
    prefixes: Vec<String>,
}

impl SafeList {
    /// A comma-separated list; each entry `+` and digits, a prefix ending in `*`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut safe_list = SafeList::default();
        for entry in list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (digits, is_prefix) = match entry.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (entry, false),
            };
            let valid = digits
                .strip_prefix('+')
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
            if !valid {
                return Err(format!(
                    "{entry:?} is not an E.164 number (+12015550123) or prefix (+1201555*)"
                ));
            }
            if is_prefix {
                safe_list.prefixes.push(digits.to_owned());
            } else {
                safe_list.numbers.insert(digits.to_owned());
            }
        }
        Ok(safe_list)
    }

    pub fn contains(&self, e164: &str) -> bool {
        self.numbers.contains(e164)
            || self
                .prefixes
                .iter()
                .any(|prefix| e164.starts_with(prefix.as_str()))
    }

    /// The entries as given (prefixes with their `*`).
    pub fn entries(&self) -> Vec<String> {
        self.numbers
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|prefix| format!("{prefix}*")))
            .collect()
    }
}

impl Serialize for SafeList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries().serialize(serializer)
    }
}

/// Every protection flag's value (`GET /api/protection` reports them as `settings`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionSettings {
    pub mode: ProtectionMode,
    pub safe_list: SafeList,
    pub ip_velocity_max: u32,
    pub ip_velocity_window_secs: u64,
    pub prefix_velocity_max: u32,
    pub prefix_velocity_window_secs: u64,
    pub low_conversion_window_secs: u64,
    pub low_conversion_min_samples: u32,
    pub low_conversion_min_rate: f64,
    pub low_conversion_block_secs: u64,
    pub first_seen_country_max: u32,
    pub first_seen_country_window_secs: u64,
    pub daily_budget: u64,
    pub daily_budget_per_country: u64,
    pub budget_window_secs: u64,
    pub recipient_backoff: bool,
    pub recipient_backoff_base_secs: u64,
}

impl ProtectionSettings {
    /// Every layer off (the mode, windows and caps as by default): a test turns on the one it
    /// checks.
    pub fn every_layer_off() -> Self {
        Self {
            ip_velocity_max: 0,
            prefix_velocity_max: 0,
            low_conversion_min_samples: 0,
            first_seen_country_max: 0,
            daily_budget: 0,
            daily_budget_per_country: 0,
            recipient_backoff: false,
            ..Self::default()
        }
    }
}

impl Default for ProtectionSettings {
    /// What a normal deployment never notices (README, "Protection"): a legitimate user asks for
    /// a few codes a day and verifies most.
    fn default() -> Self {
        Self {
            mode: ProtectionMode::Enforce,
            safe_list: SafeList::default(),
            ip_velocity_max: 30,
            ip_velocity_window_secs: 600,
            prefix_velocity_max: 10,
            prefix_velocity_window_secs: 600,
            low_conversion_window_secs: 86_400,
            low_conversion_min_samples: 10,
            low_conversion_min_rate: 0.2,
            low_conversion_block_secs: 3600,
            first_seen_country_max: 200,
            first_seen_country_window_secs: 3600,
            daily_budget: 0,
            daily_budget_per_country: 0,
            budget_window_secs: 86_400,
            recipient_backoff: false,
            recipient_backoff_base_secs: 60,
        }
    }
}

/// A stored block: why, on what, since and until when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Block {
    pub id: String,
    pub kind: BlockKind,
    pub subject: String,
    pub reason: BlockReason,
    /// What the message says after "paused: ".
    pub detail: String,
    pub since: i64,
    pub until: Option<i64>,
    /// Sends refused by this block.
    pub blocked: u64,
}

/// A refusal, as the send path reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub reason: BlockReason,
    pub kind: BlockKind,
    pub subject: String,
    pub block_id: String,
    pub retry_after_secs: Option<u64>,
    pub message: String,
}

/// What the protection decided for one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allowed,
    /// Monitor mode: a layer would have blocked it; it goes on.
    WouldBlock(Blocked),
    Blocked(Blocked),
}

/// The facts about a send the layers look at.
#[derive(Debug, Clone, Copy)]
pub struct SendFacts<'a> {
    /// E.164.
    pub phone: &'a str,
    /// ISO 3166 region, when known.
    pub region: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
}

/// The subjects of one send.
struct Subjects {
    phone: String,
    prefix: String,
    country: String,
    ip: Option<String>,
}

impl Subjects {
    fn of(send: &SendFacts<'_>) -> Self {
        Self {
            phone: send.phone.to_owned(),
            prefix: number_prefix(send.phone).to_owned(),
            country: country_of(send.region),
            ip: send.client_ip.map(ip_subject),
        }
    }
}

/// E.164 without its last 4 digits (the whole number when it is that short).
pub fn number_prefix(e164: &str) -> &str {
    if e164.len() > 6 {
        &e164[..e164.len() - 4]
    } else {
        e164
    }
}

fn country_of(region: Option<&str>) -> String {
    region.unwrap_or("unknown").to_owned()
}

/// An IPv4 address as it is; an IPv6 address by its /64 (one subscriber's usual allocation).
pub fn ip_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let network = std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                );
                format!("{network}/64")
            }
        },
    }
}

/// Whether `region` is two uppercase ASCII letters.
pub fn is_region_code(region: &str) -> bool {
    region.len() == 2 && region.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// Exponential backoff of one recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Backoff {
    unverified_sends: u32,
    next_allowed_at: i64,
}

/// What the layers remember.
struct Tracked {
    blocks: BlockTable,
    ip_sends: BoundedMap<String, WindowCount>,
    prefix_sends: BoundedMap<String, WindowCount>,
    new_country_sends: BoundedMap<String, WindowCount>,
    budget_global: WindowCount,
    budget_by_country: BoundedMap<String, WindowCount>,
    backoff: BoundedMap<String, Backoff>,
    /// Countries where a code was verified (bounded by the numbering plans).
    verified_countries: BTreeSet<String>,
    /// Countries an admin allowed (two uppercase letters: at most 676).
    allowed_countries: BTreeSet<String>,
    conversion: Conversion,
    /// Something a snapshot keeps changed since the last one was taken.
    dirty: bool,
    /// A block appeared or was lifted since the last snapshot: save soon.
    blocks_changed: bool,
    /// Several hosts on PostgreSQL: what this host counted since its last exchange, and what
    /// it knows of the shared blocks ([`shared_state`]); `None` on one host.
    shared: Option<shared_state::SharedTracking>,
}

impl Default for Tracked {
    fn default() -> Self {
        Self {
            blocks: BlockTable::default(),
            ip_sends: BoundedMap::new(MAX_TRACKED_KEYS),
            prefix_sends: BoundedMap::new(MAX_TRACKED_KEYS),
            new_country_sends: BoundedMap::new(MAX_TRACKED_KEYS),
            budget_global: WindowCount::default(),
            budget_by_country: BoundedMap::new(MAX_TRACKED_KEYS),
            backoff: BoundedMap::new(MAX_TRACKED_KEYS),
            verified_countries: BTreeSet::new(),
            allowed_countries: BTreeSet::new(),
            conversion: Conversion::default(),
            dirty: false,
            blocks_changed: false,
            shared: None,
        }
    }
}

/// What is saved so a restart keeps the protection's memory (one host, SQLite).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionSnapshot {
    pub blocks: Vec<Block>,
    pub conversion_by_prefix: Vec<(String, ConversionStats)>,
    pub conversion_by_country: Vec<(String, ConversionStats)>,
    pub pending_codes: Vec<(i64, CodeKey, PendingCode)>,
    pub verified_countries: BTreeSet<String>,
    pub allowed_countries: BTreeSet<String>,
    pub budget_global: WindowCount,
    pub budget_by_country: Vec<(String, WindowCount)>,
}

/// A block as `GET /api/protection` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    pub id: String,
    /// `prefix`, `country`, `ip`, `recipient` or `global`.
    #[schema(value_type = String)]
    pub kind: BlockKind,
    /// `+1201555`, `US`, `203.0.113.7`, `2001:db8::/64`, a number, or `*`.
    pub subject: String,
    /// `ip_velocity`, `prefix_velocity`, `low_conversion`, `first_seen_country`, `budget` or
    /// `recipient_backoff`.
    #[schema(value_type = String)]
    pub reason: BlockReason,
    /// Milliseconds since the Unix epoch.
    pub since: i64,
    pub until: Option<i64>,
    pub counts: BlockCounts,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct BlockCounts {
    /// Codes issued to the subject in the low-conversion window (prefix and country).
    pub issued: u64,
    pub verified: u64,
    /// Sends this block refused.
    pub blocked: u64,
}

/// What `GET /api/protection` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionReport {
    pub mode: ProtectionMode,
    pub settings: ProtectionSettings,
    pub blocks: Vec<BlockView>,
    pub allowed_countries: Vec<String>,
}

/// The protection of one host: settings and what the layers remember.
pub struct Protection {
    settings: ProtectionSettings,
    /// `--allowed-countries`: the operator expects traffic there; `first_seen_country` spares them.
    operator_countries: BTreeSet<String>,
    tracked: Mutex<Tracked>,
    /// Whether the state is shared and when it last was (fail closed when it is stale).
    sharing: shared_state::SharingHealth,
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn retry_secs(until: i64, now: i64) -> u64 {
    u64::try_from((until - now).max(0))
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1)
}

fn new_block_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Ids need only be unique here, not secret.
        bytes = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or_default()
            .to_le_bytes();
    }
    hex::encode(bytes)
}

impl Protection {
    pub fn new(settings: ProtectionSettings, operator_countries: BTreeSet<String>) -> Self {
        Self {
            settings,
            operator_countries,
            tracked: Mutex::new(Tracked::default()),
            sharing: shared_state::SharingHealth::default(),
        }
    }

    pub fn settings(&self) -> &ProtectionSettings {
        &self.settings
    }

    pub fn mode(&self) -> ProtectionMode {
        self.settings.mode
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides one send and, unless it is refused, counts it.
    pub fn check(&self, send: &SendFacts<'_>, now: i64) -> Verdict {
        let mode = self.settings.mode;
        if mode == ProtectionMode::Off || self.settings.safe_list.contains(send.phone) {
            return Verdict::Allowed;
        }
        let subjects = Subjects::of(send);
        let mut tracked = self.tracked();
        self.settle(&mut tracked, now);
        let refusal = self
            .active_block(&mut tracked, &subjects, now)
            .or_else(|| self.evaluate_layers(&mut tracked, &subjects, now));
        match (refusal, mode) {
            (None, _) => {
                self.count_send(&mut tracked, &subjects, now);
                Verdict::Allowed
            }
            (Some(blocked), ProtectionMode::Monitor) => {
                self.count_send(&mut tracked, &subjects, now);
                Verdict::WouldBlock(blocked)
            }
            (Some(blocked), _) => Verdict::Blocked(blocked),
        }
    }

    /// A code was issued (and sent): it waits to be verified or to expire.
    pub fn code_issued(
        &self,
        phone: &str,
        region: Option<&str>,
        template_type: &str,
        expires_at: i64,
        now: i64,
    ) {
        if self.settings.mode == ProtectionMode::Off {
            return;
        }
        let window = secs_ms(self.settings.low_conversion_window_secs);
        let mut tracked = self.tracked();
        tracked.conversion.issued(
            (phone.to_owned(), template_type.to_owned()),
            number_prefix(phone),
            &country_of(region),
            expires_at,
            now,
            window,
        );
        tracked.dirty = true;
        if let Some(shared) = &mut tracked.shared {
            shared.record_issued(phone, region, template_type, expires_at, now);
        }
    }

    /// An issued code was not sent after all (the send failed): it decides nothing.
    pub fn code_discarded(&self, phone: &str, template_type: &str) {
        if self.settings.mode == ProtectionMode::Off {
            return;
        }
        let mut tracked = self.tracked();
        tracked
            .conversion
            .discarded(&(phone.to_owned(), template_type.to_owned()));
        if let Some(shared) = &mut tracked.shared {
            shared.record_discarded(phone, template_type);
        }
    }

    /// A code was verified: its prefix and country convert, its country is known, and its
    /// recipient's backoff starts over.
    pub fn code_verified(&self, phone: &str, region: Option<&str>, template_type: &str, now: i64) {
        if self.settings.mode == ProtectionMode::Off {
            return;
        }
        let window = secs_ms(self.settings.low_conversion_window_secs);
        let mut tracked = self.tracked();
        let counted =
            tracked
                .conversion
                .verified(&(phone.to_owned(), template_type.to_owned()), now, window);
        if let Some(shared) = &mut tracked.shared {
            // Issued on another host, and not heard of here yet: counted when it is.
            shared.record_verified(phone, region, template_type, now, counted.is_none());
        }
        let country = country_of(region);
        if tracked.verified_countries.insert(country.clone()) {
            self.lift_where(&mut tracked, |block| {
                block.reason == BlockReason::FirstSeenCountry && block.subject == country
            });
        }
        tracked.backoff.remove(&phone.to_owned());
        tracked.dirty = true;
    }

    /// Codes expired unverified count against their prefix and country; a subject under the
    /// rate with enough samples is blocked.
    fn settle(&self, tracked: &mut Tracked, now: i64) {
        let window = secs_ms(self.settings.low_conversion_window_secs);
        // Shared: a code verified on another host near its expiry is heard of a tick later.
        let settled_until = now
            - tracked
                .shared
                .as_ref()
                .map_or(0, |_| shared_state::SETTLE_GRACE_MS);
        let decided = tracked.conversion.settle(settled_until, window);
        if decided.is_empty() {
            return;
        }
        tracked.dirty = true;
        let mut subjects: BTreeSet<(BlockKind, String)> = BTreeSet::new();
        for code in decided.into_iter().filter(|code| !code.verified) {
            subjects.insert((BlockKind::Prefix, code.prefix));
            subjects.insert((BlockKind::Country, code.country));
        }
        for (kind, subject) in subjects {
            self.evaluate_conversion(tracked, kind, &subject, now);
        }
    }

    fn evaluate_conversion(&self, tracked: &mut Tracked, kind: BlockKind, subject: &str, now: i64) {
        let settings = &self.settings;
        if settings.low_conversion_min_samples == 0 {
            return;
        }
        let window = secs_ms(settings.low_conversion_window_secs);
        let stats = match kind {
            BlockKind::Country => tracked.conversion.by_country.get_mut(&subject.to_owned()),
            _ => tracked.conversion.by_prefix.get_mut(&subject.to_owned()),
        };
        let Some(stats) = stats else { return };
        let counts = stats.counts(now, window);
        let decided = counts.verified + counts.unverified;
        if decided < u64::from(settings.low_conversion_min_samples) {
            return;
        }
        let rate = counts.verified as f64 / decided as f64;
        if rate >= settings.low_conversion_min_rate {
            return;
        }
        if self
            .find_block(tracked, kind, subject, BlockReason::LowConversion, now)
            .is_some()
        {
            return;
        }
        let what = match kind {
            BlockKind::Country => format!("the country {subject}"),
            _ => format!("the prefix {subject}"),
        };
        let detail = format!(
            "{what} converts too few codes ({} of {decided} verified)",
            counts.verified
        );
        let until = now + secs_ms(settings.low_conversion_block_secs);
        self.add_block(
            tracked,
            kind,
            subject,
            BlockReason::LowConversion,
            detail,
            now,
            until,
        );
    }

    fn find_block(
        &self,
        tracked: &Tracked,
        kind: BlockKind,
        subject: &str,
        reason: BlockReason,
        now: i64,
    ) -> Option<String> {
        tracked
            .blocks
            .in_force(kind, subject, reason, now)
            .map(|block| block.id.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_block(
        &self,
        tracked: &mut Tracked,
        kind: BlockKind,
        subject: &str,
        reason: BlockReason,
        detail: String,
        now: i64,
        until: i64,
    ) -> String {
        let id = new_block_id();
        tracked.blocks.insert(
            Block {
                id: id.clone(),
                kind,
                subject: subject.to_owned(),
                reason,
                detail,
                since: now,
                until: Some(until),
                blocked: 0,
            },
            now,
        );
        tracked.dirty = true;
        tracked.blocks_changed = true;
        id
    }

    fn refusal(&self, block: &Block, now: i64) -> Blocked {
        let retry_after_secs = block.until.map(|until| retry_secs(until, now));
        let lead = match block.kind {
            BlockKind::Ip => "Sending from this client address is paused",
            BlockKind::Global => "Sending is paused",
            BlockKind::Country => "Sending to this country is paused",
            BlockKind::Prefix | BlockKind::Recipient => "Sending to this number is paused",
        };
        let retry = retry_after_secs
            .map(|secs| format!("; retry in {secs} s"))
            .unwrap_or_default();
        Blocked {
            reason: block.reason,
            kind: block.kind,
            subject: block.subject.clone(),
            block_id: block.id.clone(),
            retry_after_secs,
            message: format!("{lead}: {}{retry}", block.detail),
        }
    }

    /// The first stored block in force on one of the send's subjects.
    fn active_block(
        &self,
        tracked: &mut Tracked,
        subjects: &Subjects,
        now: i64,
    ) -> Option<Blocked> {
        if tracked.blocks.is_empty() {
            return None;
        }
        // The narrowest subject first: it is the one the message names.
        let candidates = [
            (BlockKind::Recipient, Some(subjects.phone.as_str())),
            (BlockKind::Ip, subjects.ip.as_deref()),
            (BlockKind::Prefix, Some(subjects.prefix.as_str())),
            (BlockKind::Country, Some(subjects.country.as_str())),
            (BlockKind::Global, Some(GLOBAL_SUBJECT)),
        ];
        let (kind, subject) = candidates.into_iter().find_map(|(kind, subject)| {
            let subject = subject?;
            tracked
                .blocks
                .in_force_on_mut(kind, subject, now)
                .map(|_| (kind, subject))
        })?;
        let block = tracked.blocks.in_force_on_mut(kind, subject, now)?;
        block.blocked += 1;
        let block = block.clone();
        tracked.dirty = true;
        Some(self.refusal(&block, now))
    }

    /// Runs every layer on a send no stored block refuses; the first that trips stores a block.
    fn evaluate_layers(
        &self,
        tracked: &mut Tracked,
        subjects: &Subjects,
        now: i64,
    ) -> Option<Blocked> {
        let (kind, subject, reason, detail, until) = self.tripped_layer(tracked, subjects, now)?;
        let id = self.add_block(tracked, kind, &subject, reason, detail, now, until);
        let block = tracked.blocks.get_mut_by_id(&id)?;
        block.blocked += 1;
        let block = block.clone();
        Some(self.refusal(&block, now))
    }

    fn tripped_layer(
        &self,
        tracked: &mut Tracked,
        subjects: &Subjects,
        now: i64,
    ) -> Option<(BlockKind, String, BlockReason, String, i64)> {
        let settings = &self.settings;
        // Budgets: a hard stop.
        if settings.daily_budget > 0 {
            let window = secs_ms(settings.budget_window_secs);
            let spent = tracked.budget_global.count(now, window);
            if spent >= settings.daily_budget {
                let until = now
                    + tracked
                        .budget_global
                        .ms_until_below(settings.daily_budget, now, window);
                return Some((
                    BlockKind::Global,
                    GLOBAL_SUBJECT.to_owned(),
                    BlockReason::Budget,
                    format!(
                        "the message budget ({} per {} s) is spent",
                        settings.daily_budget, settings.budget_window_secs
                    ),
                    until,
                ));
            }
        }
        if settings.daily_budget_per_country > 0 {
            let window = secs_ms(settings.budget_window_secs);
            if let Some(count) = tracked.budget_by_country.get_mut(&subjects.country) {
                if count.count(now, window) >= settings.daily_budget_per_country {
                    let until =
                        now + count.ms_until_below(settings.daily_budget_per_country, now, window);
                    return Some((
                        BlockKind::Country,
                        subjects.country.clone(),
                        BlockReason::Budget,
                        format!(
                            "the message budget of {} ({} per {} s) is spent",
                            subjects.country,
                            settings.daily_budget_per_country,
                            settings.budget_window_secs
                        ),
                        until,
                    ));
                }
            }
        }
        if settings.first_seen_country_max > 0 && !self.country_known(tracked, &subjects.country) {
            let window = secs_ms(settings.first_seen_country_window_secs);
            let max = u64::from(settings.first_seen_country_max);
            if let Some(count) = tracked.new_country_sends.get_mut(&subjects.country) {
                if count.count(now, window) >= max {
                    let until = now + count.ms_until_below(max, now, window);
                    return Some((
                        BlockKind::Country,
                        subjects.country.clone(),
                        BlockReason::FirstSeenCountry,
                        format!(
                            "no code sent to {} has been verified yet, and its first {max} messages per {} s are spent (an admin can allow the country)",
                            subjects.country, settings.first_seen_country_window_secs
                        ),
                        until,
                    ));
                }
            }
        }
        if let (Some(ip), true) = (&subjects.ip, settings.ip_velocity_max > 0) {
            let window = secs_ms(settings.ip_velocity_window_secs);
            let max = u64::from(settings.ip_velocity_max);
            if let Some(count) = tracked.ip_sends.get_mut(ip) {
                if count.count(now, window) >= max {
                    let until = now + count.ms_until_below(max, now, window);
                    return Some((
                        BlockKind::Ip,
                        ip.clone(),
                        BlockReason::IpVelocity,
                        format!(
                            "{ip} asked for {max} messages within {} s",
                            settings.ip_velocity_window_secs
                        ),
                        until,
                    ));
                }
            }
        }
        if settings.prefix_velocity_max > 0 {
            let window = secs_ms(settings.prefix_velocity_window_secs);
            let max = u64::from(settings.prefix_velocity_max);
            if let Some(count) = tracked.prefix_sends.get_mut(&subjects.prefix) {
                if count.count(now, window) >= max {
                    let until = now + count.ms_until_below(max, now, window);
                    return Some((
                        BlockKind::Prefix,
                        subjects.prefix.clone(),
                        BlockReason::PrefixVelocity,
                        format!(
                            "the prefix {} had {max} messages within {} s",
                            subjects.prefix, settings.prefix_velocity_window_secs
                        ),
                        until,
                    ));
                }
            }
        }
        if settings.recipient_backoff {
            if let Some(backoff) = tracked.backoff.get(&subjects.phone) {
                if now < backoff.next_allowed_at {
                    return Some((
                        BlockKind::Recipient,
                        subjects.phone.clone(),
                        BlockReason::RecipientBackoff,
                        format!(
                            "{} messages went to this number without a verified code",
                            backoff.unverified_sends
                        ),
                        backoff.next_allowed_at,
                    ));
                }
            }
        }
        None
    }

    fn country_known(&self, tracked: &Tracked, country: &str) -> bool {
        tracked.verified_countries.contains(country)
            || tracked.allowed_countries.contains(country)
            || self.operator_countries.contains(country)
    }

    /// Counts a send that goes out.
    fn count_send(&self, tracked: &mut Tracked, subjects: &Subjects, now: i64) {
        let settings = &self.settings;
        if let (Some(ip), true) = (&subjects.ip, settings.ip_velocity_max > 0) {
            let window = secs_ms(settings.ip_velocity_window_secs);
            tracked
                .ip_sends
                .entry_or_insert_with(ip, Default::default)
                .add(now, window, 1);
        }
        if settings.prefix_velocity_max > 0 {
            let window = secs_ms(settings.prefix_velocity_window_secs);
            tracked
                .prefix_sends
                .entry_or_insert_with(&subjects.prefix, Default::default)
                .add(now, window, 1);
        }
        if settings.first_seen_country_max > 0 && !self.country_known(tracked, &subjects.country) {
            let window = secs_ms(settings.first_seen_country_window_secs);
            tracked
                .new_country_sends
                .entry_or_insert_with(&subjects.country, Default::default)
                .add(now, window, 1);
        }
        let budget_window = secs_ms(settings.budget_window_secs);
        if settings.daily_budget > 0 {
            tracked.budget_global.add(now, budget_window, 1);
            tracked.dirty = true;
        }
        if settings.daily_budget_per_country > 0 {
            tracked
                .budget_by_country
                .entry_or_insert_with(&subjects.country, Default::default)
                .add(now, budget_window, 1);
            tracked.dirty = true;
        }
        if tracked.shared.is_some() {
            let new_country = !self.country_known(tracked, &subjects.country);
            if let Some(shared) = &mut tracked.shared {
                shared.record_send(settings, subjects, new_country);
            }
        }
        if settings.recipient_backoff {
            let base = secs_ms(settings.recipient_backoff_base_secs);
            let backoff = tracked
                .backoff
                .entry_or_insert_with(&subjects.phone, || Backoff {
                    unverified_sends: 0,
                    next_allowed_at: now,
                });
            backoff.unverified_sends = backoff.unverified_sends.saturating_add(1);
            // 1, 2, 4, ... 32 times the base after each send without a verified code.
            let factor = 1i64 << (backoff.unverified_sends - 1).min(5);
            backoff.next_allowed_at = now.saturating_add(base.saturating_mul(factor));
        }
    }

    /// Removes the blocks `matches` picks, and what made them, so sends go again.
    fn lift_where(&self, tracked: &mut Tracked, matches: impl Fn(&Block) -> bool) -> usize {
        let lifted = tracked.blocks.remove_where(matches);
        for block in &lifted {
            let subject = &block.subject;
            match block.reason {
                BlockReason::IpVelocity => {
                    tracked.ip_sends.remove(subject);
                }
                BlockReason::PrefixVelocity => {
                    tracked.prefix_sends.remove(subject);
                }
                BlockReason::FirstSeenCountry => {
                    tracked.new_country_sends.remove(subject);
                }
                BlockReason::Budget => match block.kind {
                    BlockKind::Global => tracked.budget_global.clear(),
                    _ => {
                        tracked.budget_by_country.remove(subject);
                    }
                },
                BlockReason::RecipientBackoff => {
                    tracked.backoff.remove(subject);
                }
                // A fresh start: the statistics that made the block would make it again.
                BlockReason::LowConversion => {
                    match block.kind {
                        BlockKind::Country => tracked.conversion.by_country.remove(subject),
                        _ => tracked.conversion.by_prefix.remove(subject),
                    };
                }
            }
        }
        if !lifted.is_empty() {
            tracked.dirty = true;
            tracked.blocks_changed = true;
        }
        lifted.len()
    }

    /// Lifts a block by id; `false` when no block has it.
    pub fn lift(&self, id: &str) -> bool {
        let mut tracked = self.tracked();
        self.lift_where(&mut tracked, |block| block.id == id) > 0
    }

    /// An admin allows a country: `first_seen_country` no longer applies to it.
    pub fn allow_country(&self, region: &str) {
        let mut tracked = self.tracked();
        tracked.allowed_countries.insert(region.to_owned());
        self.lift_where(&mut tracked, |block| {
            block.reason == BlockReason::FirstSeenCountry && block.subject == region
        });
        tracked.dirty = true;
        tracked.blocks_changed = true;
    }

    /// The current blocks and settings.
    pub fn report(&self, now: i64) -> ProtectionReport {
        let mut tracked = self.tracked();
        self.settle(&mut tracked, now);
        tracked.blocks.drop_ended(now);
        let window = secs_ms(self.settings.low_conversion_window_secs);
        let Tracked {
            blocks,
            conversion,
            allowed_countries,
            ..
        } = &mut *tracked;
        let mut views: Vec<BlockView> = blocks
            .iter()
            .map(|block| {
                let stats = match block.kind {
                    BlockKind::Prefix => conversion.by_prefix.get_mut(&block.subject),
                    BlockKind::Country => conversion.by_country.get_mut(&block.subject),
                    _ => None,
                };
                let counts = stats
                    .map(|stats| stats.counts(now, window))
                    .unwrap_or_default();
                BlockView {
                    id: block.id.clone(),
                    kind: block.kind,
                    subject: block.subject.clone(),
                    reason: block.reason,
                    since: block.since,
                    until: block.until,
                    counts: BlockCounts {
                        issued: counts.issued,
                        verified: counts.verified,
                        blocked: block.blocked,
                    },
                }
            })
            .collect();
        views.sort_by_key(|view| std::cmp::Reverse(view.since));
        ProtectionReport {
            mode: self.settings.mode,
            settings: self.settings.clone(),
            blocks: views,
            allowed_countries: allowed_countries.iter().cloned().collect(),
        }
    }

    /// Forgets what left every window (called periodically).
    pub fn purge(&self, now: i64) {
        let settings = &self.settings;
        let mut guard = self.tracked();
        let tracked = &mut *guard;
        self.settle(tracked, now);
        tracked.blocks.drop_ended(now);
        for (map, window_secs) in [
            (&mut tracked.ip_sends, settings.ip_velocity_window_secs),
            (
                &mut tracked.prefix_sends,
                settings.prefix_velocity_window_secs,
            ),
            (
                &mut tracked.new_country_sends,
                settings.first_seen_country_window_secs,
            ),
            (&mut tracked.budget_by_country, settings.budget_window_secs),
        ] {
            let window = secs_ms(window_secs);
            map.retain(|_, count| count.count(now, window) > 0);
        }
        tracked.backoff.retain(|_, backoff| {
            // Past 32 times the base with nothing sent, the backoff starts over.
            backoff.next_allowed_at + secs_ms(settings.recipient_backoff_base_secs) * 32 > now
        });
        tracked
            .conversion
            .purge(now, secs_ms(settings.low_conversion_window_secs));
    }

    /// The snapshot to save, when something it keeps changed since the last one (`force`:
    /// whatever changed). The second value: a block appeared or was lifted.
    pub fn take_snapshot(&self, force: bool) -> Option<(ProtectionSnapshot, bool)> {
        let mut tracked = self.tracked();
        if !tracked.dirty && !force {
            return None;
        }
        let blocks_changed = tracked.blocks_changed;
        tracked.dirty = false;
        tracked.blocks_changed = false;
        let snapshot = ProtectionSnapshot {
            blocks: tracked.blocks.iter().cloned().collect(),
            conversion_by_prefix: tracked
                .conversion
                .by_prefix
                .iter()
                .map(|(key, stats)| (key.clone(), stats.clone()))
                .collect(),
            conversion_by_country: tracked
                .conversion
                .by_country
                .iter()
                .map(|(key, stats)| (key.clone(), stats.clone()))
                .collect(),
            pending_codes: tracked.conversion.pending_for_snapshot(),
            verified_countries: tracked.verified_countries.clone(),
            allowed_countries: tracked.allowed_countries.clone(),
            budget_global: tracked.budget_global.clone(),
            budget_by_country: tracked
                .budget_by_country
                .iter()
                .map(|(key, count)| (key.clone(), count.clone()))
                .collect(),
        };
        Some((snapshot, blocks_changed))
    }

    /// A save failed: the next one carries everything again.
    pub fn mark_dirty(&self) {
        let mut tracked = self.tracked();
        tracked.dirty = true;
        tracked.blocks_changed = true;
    }

    /// Whether a block changed since the last snapshot (the flush task saves at once then).
    pub fn blocks_changed(&self) -> bool {
        self.tracked().blocks_changed
    }

    /// Restores what a snapshot kept (start-up).
    pub fn restore(&self, snapshot: ProtectionSnapshot) {
        let mut tracked = self.tracked();
        let now = i64::MIN;
        for block in snapshot.blocks.into_iter().take(MAX_BLOCKS) {
            tracked.blocks.insert(block, now);
        }
        for (key, stats) in snapshot.conversion_by_prefix {
            *tracked
                .conversion
                .by_prefix
                .entry_or_insert_with(&key, Default::default) = stats;
        }
        for (key, stats) in snapshot.conversion_by_country {
            *tracked
                .conversion
                .by_country
                .entry_or_insert_with(&key, Default::default) = stats;
        }
        tracked.conversion.restore_pending(snapshot.pending_codes);
        tracked.verified_countries = snapshot
            .verified_countries
            .into_iter()
            .filter(|country| country.len() <= 16)
            .collect();
        tracked.allowed_countries = snapshot
            .allowed_countries
            .into_iter()
            .filter(|country| is_region_code(country))
            .collect();
        tracked.budget_global = snapshot.budget_global;
        for (key, count) in snapshot.budget_by_country {
            *tracked
                .budget_by_country
                .entry_or_insert_with(&key, Default::default) = count;
        }
    }
}

#[cfg(test)]
mod tests;
