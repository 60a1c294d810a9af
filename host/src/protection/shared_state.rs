//! Several hosts on PostgreSQL: one protection for all of them. `check` stays in memory and
//! synchronous; a task of each host exchanges with the database every [`TICK`]:
//!
//! - **Blocks** are authoritative in the database (unique on kind, subject and reason). A block
//!   a host makes refuses at once on that host, and the next exchange inserts it; when another
//!   host's block for the same subject and reason won, the host takes the winner (and its id).
//!   Each exchange reads the table back and replaces the local blocks with it (plus this
//!   host's blocks not pushed yet): a block that left the table was lifted elsewhere, and is
//!   lifted here with what made it. Sends a block refused are pushed as counts.
//! - **Counts** travel as deltas: what a host counted since its last exchange (sends per IP,
//!   prefix, first-seen country, budgets, recipients; codes issued, verified, discarded) is one
//!   row per host and exchange, numbered per host; the other hosts apply it as if they had
//!   counted it, once (each keeps the last number applied per host).
//! - **Start-up** restores a [`SharedSnapshot`] (the whole counting state as one host knew it,
//!   written by one host about every minute, with the rows it had applied) and replays the
//!   rows written after it: bounded by the state's caps and a few minutes of rows, however
//!   long the windows. Rows a snapshot counts (older than it by a margin) or past the longest
//!   window are purged.
//! - **Countries** verified or allowed are a small table, read at each exchange.
//! - **Fail closed**: when the last exchange that succeeded is older than [`STALE_AFTER_MS`],
//!   `enforce` refuses every send as the store being unavailable (503) rather than decide on a
//!   stale state; the next exchange that succeeds lifts it.
//!
//! A decision lags the other hosts by one exchange at most: within a tick, each host can let
//! through what its own counts allow.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::blocks::BlockTable;
use super::bounded::{BoundedMap, WindowCount};
use super::conversion::CodeKey;
use super::{
    country_of, number_prefix, secs_ms, Backoff, Block, BlockKind, BlockReason, Protection,
    ProtectionMode, ProtectionSettings, ProtectionSnapshot, Subjects, Tracked, MAX_TRACKED_KEYS,
};

/// How often a host exchanges with the database.
pub const TICK: Duration = Duration::from_millis(250);
/// Past this without a successful exchange, `enforce` refuses sends (503).
pub const STALE_AFTER_MS: i64 = 3_000;
/// A code is counted unverified this long after it expired: a verify on another host just
/// before the expiry is heard of by then.
pub const SETTLE_GRACE_MS: i64 = 2_000;
/// Old rows are purged every this many exchanges.
const PURGE_EVERY_TICKS: u32 = 40;
/// A host looks whether the snapshot is due every this many exchanges (a minute).
const SNAPSHOT_EVERY_TICKS: u32 = 240;
/// A snapshot younger than this is not replaced.
const SNAPSHOT_MIN_AGE_MS: i64 = 50_000;
/// Another host's last row number is forgotten after this long without a row from it.
const FORGET_HOST_AFTER: Duration = Duration::from_secs(300);

/// (kind, subject, reason): what the database keeps one block for.
pub type BlockKey = (BlockKind, String, BlockReason);

fn key_of(block: &Block) -> BlockKey {
    (block.kind, block.subject.clone(), block.reason)
}

/// Whether the state is shared, and when it last was (milliseconds since the epoch).
#[derive(Debug, Default)]
pub struct SharingHealth {
    enabled: AtomicBool,
    last_shared_at: AtomicI64,
}

/// A code issued, as another host applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCode {
    pub phone: String,
    pub template_type: String,
    pub prefix: String,
    pub country: String,
    pub expires_at: i64,
    pub at: i64,
}

/// A code verified, as another host applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedCode {
    pub phone: String,
    pub template_type: String,
    pub country: String,
    pub at: i64,
}

/// What one host counted between two exchanges: the body of one `protection_events` row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountDeltas {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_sends: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prefix_sends: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new_country_sends: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub budget_global: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budget_by_country: BTreeMap<String, u64>,
    /// Sends per recipient (`recipient_backoff`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recipient_sends: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes_issued: Vec<IssuedCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes_verified: Vec<VerifiedCode>,
    /// (phone, usage type) of codes that were not sent after all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes_discarded: Vec<CodeKey>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn add_all(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key).or_default() += count;
    }
}

impl CountDeltas {
    pub fn is_empty(&self) -> bool {
        *self == CountDeltas::default()
    }

    /// Adds `other` (an exchange that failed) to these.
    pub fn merge(&mut self, other: CountDeltas) {
        add_all(&mut self.ip_sends, other.ip_sends);
        add_all(&mut self.prefix_sends, other.prefix_sends);
        add_all(&mut self.new_country_sends, other.new_country_sends);
        self.budget_global += other.budget_global;
        add_all(&mut self.budget_by_country, other.budget_by_country);
        add_all(&mut self.recipient_sends, other.recipient_sends);
        // Older first: they are applied in order.
        let issued = std::mem::replace(&mut self.codes_issued, other.codes_issued);
        self.codes_issued.extend(issued);
        let verified = std::mem::replace(&mut self.codes_verified, other.codes_verified);
        self.codes_verified.extend(verified);
        let discarded = std::mem::replace(&mut self.codes_discarded, other.codes_discarded);
        self.codes_discarded.extend(discarded);
    }
}

/// A host's view of the shared state between exchanges (in [`Tracked`]).
pub struct SharedTracking {
    /// Counted here since the last exchange.
    outgoing: CountDeltas,
    /// The block ids the table had at the last exchange.
    synced_ids: HashSet<String>,
    /// Blocks made here, in the exchange under way.
    in_flight_ids: HashSet<String>,
    /// Each block's refusals already pushed (or read from the table).
    blocked_base: HashMap<BlockKey, u64>,
    /// (region, allowed) the table had at the last exchange.
    synced_countries: BTreeSet<(String, bool)>,
    /// Codes verified before this host heard they were issued (elsewhere): counted verified
    /// when the issue arrives. Value: when the code was verified.
    verified_early: BoundedMap<CodeKey, i64>,
}

impl Default for SharedTracking {
    fn default() -> Self {
        Self {
            outgoing: CountDeltas::default(),
            synced_ids: HashSet::new(),
            in_flight_ids: HashSet::new(),
            blocked_base: HashMap::new(),
            synced_countries: BTreeSet::new(),
            verified_early: BoundedMap::new(MAX_TRACKED_KEYS),
        }
    }
}

impl SharedTracking {
    /// A send counted here (`new_country`: its country had no verified code here).
    pub(super) fn record_send(
        &mut self,
        settings: &ProtectionSettings,
        subjects: &Subjects,
        new_country: bool,
    ) {
        let outgoing = &mut self.outgoing;
        if let (Some(ip), true) = (&subjects.ip, settings.ip_velocity_max > 0) {
            *outgoing.ip_sends.entry(ip.clone()).or_default() += 1;
        }
        if settings.prefix_velocity_max > 0 {
            *outgoing
                .prefix_sends
                .entry(subjects.prefix.clone())
                .or_default() += 1;
        }
        if settings.first_seen_country_max > 0 && new_country {
            *outgoing
                .new_country_sends
                .entry(subjects.country.clone())
                .or_default() += 1;
        }
        if settings.daily_budget > 0 {
            outgoing.budget_global += 1;
        }
        if settings.daily_budget_per_country > 0 {
            *outgoing
                .budget_by_country
                .entry(subjects.country.clone())
                .or_default() += 1;
        }
        if settings.recipient_backoff {
            *outgoing
                .recipient_sends
                .entry(subjects.phone.clone())
                .or_default() += 1;
        }
    }

    pub(super) fn record_issued(
        &mut self,
        phone: &str,
        region: Option<&str>,
        template_type: &str,
        expires_at: i64,
        now: i64,
    ) {
        self.outgoing.codes_issued.push(IssuedCode {
            phone: phone.to_owned(),
            template_type: template_type.to_owned(),
            prefix: number_prefix(phone).to_owned(),
            country: country_of(region),
            expires_at,
            at: now,
        });
    }

    /// `issued_elsewhere`: this host has not heard of the code's issue yet.
    pub(super) fn record_verified(
        &mut self,
        phone: &str,
        region: Option<&str>,
        template_type: &str,
        now: i64,
        issued_elsewhere: bool,
    ) {
        if issued_elsewhere {
            *self
                .verified_early
                .entry_or_insert_with(&(phone.to_owned(), template_type.to_owned()), || now) = now;
        }
        self.outgoing.codes_verified.push(VerifiedCode {
            phone: phone.to_owned(),
            template_type: template_type.to_owned(),
            country: country_of(region),
            at: now,
        });
    }

    pub(super) fn record_discarded(&mut self, phone: &str, template_type: &str) {
        self.outgoing
            .codes_discarded
            .push((phone.to_owned(), template_type.to_owned()));
    }
}

/// What a host pushes in one exchange.
#[derive(Debug, Clone, Default)]
pub struct Push {
    /// Numbers the host's rows, from 1.
    pub seq: i64,
    /// `None`: nothing counted (no row).
    pub counts: Option<CountDeltas>,
    /// Blocks made here since the last exchange (inserted unless one for the same subject and
    /// reason is in force).
    pub new_blocks: Vec<Block>,
    /// Refusals per block since the last exchange.
    pub blocked: Vec<(BlockKey, u64)>,
    /// Blocks lifted here (by an admin, a verified code...) or ended.
    pub lifted_ids: Vec<String>,
    /// (region, allowed): countries verified (false) or allowed (true) here.
    pub countries: Vec<(String, bool)>,
}

/// One row of another host's counts.
#[derive(Debug, Clone)]
pub struct RemoteCounts {
    pub host_id: String,
    pub seq: i64,
    /// When the row was written (the database's clock, ms).
    pub at: i64,
    pub counts: CountDeltas,
}

/// What a host reads in one exchange (or at start-up).
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    /// The whole block table.
    pub blocks: Vec<Block>,
    /// (region, allowed), the whole table.
    pub countries: Vec<(String, bool)>,
    /// Other hosts' rows this host has not applied, oldest first.
    pub events: Vec<RemoteCounts>,
}

/// The whole counting state of one host, for a host that starts (blocks excepted: the table
/// has them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedSnapshot {
    state: ProtectionSnapshot,
    ip_sends: Vec<(String, WindowCount)>,
    prefix_sends: Vec<(String, WindowCount)>,
    new_country_sends: Vec<(String, WindowCount)>,
    backoff: Vec<(String, Backoff)>,
    verified_early: Vec<(CodeKey, i64)>,
}

/// A snapshot as stored: when (the database's clock) and, per host, the last row it counts.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub taken_at: i64,
    pub applied: Vec<(String, i64)>,
    pub snapshot: SharedSnapshot,
}

/// Where the shared state lives (PostgreSQL). Errors are one line for the log.
#[async_trait::async_trait]
pub trait SharedStateStore: Send + Sync {
    /// Start-up: the newest snapshot, the blocks, the countries and the rows written after the
    /// snapshot (every row kept when there is none), in one view.
    async fn load_shared_protection(&self) -> Result<(Option<StoredSnapshot>, Pulled), String>;
    /// How old the newest snapshot is (ms); `None` when there is none.
    async fn protection_snapshot_age(&self) -> Result<Option<i64>, String>;
    /// Replaces the snapshot, unless another host replaced it less than `min_age_ms` ago.
    async fn save_protection_snapshot(
        &self,
        host_id: &str,
        applied: &[(String, i64)],
        snapshot: &SharedSnapshot,
        min_age_ms: i64,
    ) -> Result<(), String>;
    /// One exchange, in one transaction: `push` written, then what changed read.
    /// `applied`: per other host, the last row number applied here.
    async fn exchange_protection(
        &self,
        host_id: &str,
        push: &Push,
        applied: &[(String, i64)],
        now: i64,
    ) -> Result<Pulled, String>;
    /// Forgets rows older than `retention_ms`, or than the snapshot (by a margin); returns how
    /// many.
    async fn purge_protection_events(&self, retention_ms: i64) -> Result<u64, String>;
}

impl SharingHealth {
    fn shared_at(&self, now: i64) {
        self.last_shared_at.store(now, Ordering::Relaxed);
    }

    fn stale(&self, now: i64) -> bool {
        self.enabled.load(Ordering::Relaxed)
            && now - self.last_shared_at.load(Ordering::Relaxed) > STALE_AFTER_MS
    }
}

impl Protection {
    /// From now on, counts are recorded for the other hosts and blocks kept in step with the
    /// shared table.
    pub fn share(&self, now: i64) {
        self.tracked().shared = Some(SharedTracking::default());
        self.sharing.shared_at(now);
        self.sharing.enabled.store(true, Ordering::Relaxed);
    }

    /// Why a send must not be decided now (the shared state is stale), in `enforce` mode.
    pub fn shared_state_stale(&self, now: i64) -> Option<String> {
        if self.settings.mode != ProtectionMode::Enforce || !self.sharing.stale(now) {
            return None;
        }
        Some(format!(
            "the protection state was last shared with the other hosts {} ms ago (PostgreSQL does not answer)",
            now - self.sharing.last_shared_at.load(Ordering::Relaxed)
        ))
    }

    /// How long rows of counts are worth keeping: the longest window of a layer that is on.
    pub fn longest_window_ms(&self) -> i64 {
        let settings = &self.settings;
        let windows = [
            (
                settings.ip_velocity_max > 0,
                settings.ip_velocity_window_secs,
            ),
            (
                settings.prefix_velocity_max > 0,
                settings.prefix_velocity_window_secs,
            ),
            (
                settings.first_seen_country_max > 0,
                settings.first_seen_country_window_secs,
            ),
            (
                settings.daily_budget > 0 || settings.daily_budget_per_country > 0,
                settings.budget_window_secs,
            ),
            (
                settings.low_conversion_min_samples > 0,
                settings.low_conversion_window_secs,
            ),
            (
                settings.recipient_backoff,
                settings.recipient_backoff_base_secs.saturating_mul(32),
            ),
        ];
        windows
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, secs)| secs_ms(secs))
            .max()
            .unwrap_or(0)
            .max(60_000)
    }

    /// The counting state, for a host that starts.
    pub fn shared_snapshot(&self) -> SharedSnapshot {
        let mut state = self
            .take_snapshot(true)
            .map(|(state, _)| state)
            .unwrap_or_default();
        // The table has the blocks; a snapshot's would come back after a lift.
        state.blocks.clear();
        let tracked = self.tracked();
        let counts = |map: &BoundedMap<String, WindowCount>| {
            map.iter()
                .map(|(key, count)| (key.clone(), count.clone()))
                .collect()
        };
        SharedSnapshot {
            state,
            ip_sends: counts(&tracked.ip_sends),
            prefix_sends: counts(&tracked.prefix_sends),
            new_country_sends: counts(&tracked.new_country_sends),
            backoff: tracked
                .backoff
                .iter()
                .map(|(key, backoff)| (key.clone(), backoff.clone()))
                .collect(),
            verified_early: tracked
                .shared
                .as_ref()
                .map(|shared| {
                    shared
                        .verified_early
                        .iter()
                        .map(|(key, at)| (key.clone(), *at))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Restores a snapshot (start-up, before the rows after it).
    pub fn restore_shared(&self, snapshot: SharedSnapshot) {
        let SharedSnapshot {
            mut state,
            ip_sends,
            prefix_sends,
            new_country_sends,
            backoff,
            verified_early,
        } = snapshot;
        state.blocks.clear();
        self.restore(state);
        let mut guard = self.tracked();
        let tracked = &mut *guard;
        for (map, counts) in [
            (&mut tracked.ip_sends, ip_sends),
            (&mut tracked.prefix_sends, prefix_sends),
            (&mut tracked.new_country_sends, new_country_sends),
        ] {
            for (key, count) in counts {
                *map.entry_or_insert_with(&key, Default::default) = count;
            }
        }
        for (phone, entry) in backoff {
            let restored = entry.clone();
            *tracked.backoff.entry_or_insert_with(&phone, || entry) = restored;
        }
        if let Some(shared) = tracked.shared.as_mut() {
            for (key, at) in verified_early {
                *shared.verified_early.entry_or_insert_with(&key, || at) = at;
            }
        }
    }

    /// What to push: the counts since the last exchange, the blocks made, refusals, blocks
    /// lifted, countries verified or allowed.
    pub fn take_push(&self, seq: i64, now: i64) -> Push {
        let mut guard = self.tracked();
        let Tracked {
            blocks,
            shared,
            verified_countries,
            allowed_countries,
            ..
        } = &mut *guard;
        let Some(shared) = shared.as_mut() else {
            return Push::default();
        };
        let counts = std::mem::take(&mut shared.outgoing);
        let mut push = Push {
            seq,
            counts: (!counts.is_empty()).then_some(counts),
            ..Push::default()
        };
        let mut local_ids = HashSet::new();
        for block in blocks.iter() {
            local_ids.insert(block.id.clone());
            let in_force = block.until.is_none_or(|until| until > now);
            if in_force && !shared.synced_ids.contains(&block.id) {
                shared.in_flight_ids.insert(block.id.clone());
                push.new_blocks.push(block.clone());
            }
            let base = shared.blocked_base.entry(key_of(block)).or_default();
            if block.blocked > *base {
                push.blocked.push((key_of(block), block.blocked - *base));
                *base = block.blocked;
            }
        }
        push.lifted_ids = shared
            .synced_ids
            .iter()
            .filter(|id| !local_ids.contains(*id))
            .cloned()
            .collect();
        push.countries = verified_countries
            .iter()
            .map(|region| (region.clone(), false))
            .chain(
                allowed_countries
                    .iter()
                    .map(|region| (region.clone(), true)),
            )
            .filter(|country| !shared.synced_countries.contains(country))
            .collect();
        push
    }

    /// The exchange failed: its counts and refusals are pushed with the next one.
    pub fn return_push(&self, push: Push) {
        let mut tracked = self.tracked();
        let Some(shared) = tracked.shared.as_mut() else {
            return;
        };
        if let Some(counts) = push.counts {
            let newer = std::mem::replace(&mut shared.outgoing, counts);
            shared.outgoing.merge(newer);
        }
        for (key, count) in push.blocked {
            if let Some(base) = shared.blocked_base.get_mut(&key) {
                *base = base.saturating_sub(count);
            }
        }
        shared.in_flight_ids.clear();
    }

    /// Applies what an exchange read: the other hosts' counts, the countries, the blocks.
    pub fn apply_pulled(&self, pulled: Pulled, now: i64) {
        let mut guard = self.tracked();
        let tracked = &mut *guard;
        if tracked.shared.is_none() {
            return;
        }
        for remote in &pulled.events {
            self.apply_remote(tracked, &remote.counts, remote.at.min(now));
        }
        let mut newly_known = Vec::new();
        for (region, allowed) in &pulled.countries {
            let set = if *allowed {
                &mut tracked.allowed_countries
            } else {
                &mut tracked.verified_countries
            };
            if set.insert(region.clone()) {
                newly_known.push(region.clone());
            }
        }
        for region in newly_known {
            self.lift_where(tracked, |block| {
                block.reason == BlockReason::FirstSeenCountry && block.subject == region
            });
        }
        if let Some(shared) = tracked.shared.as_mut() {
            shared.synced_countries = pulled.countries.into_iter().collect();
        }
        self.replace_blocks(tracked, pulled.blocks, now);
    }

    /// Another host's counts, applied as if counted here (at `at`).
    fn apply_remote(&self, tracked: &mut Tracked, counts: &CountDeltas, at: i64) {
        let settings = &self.settings;
        for (map, deltas, on, window_secs) in [
            (
                &mut tracked.ip_sends,
                &counts.ip_sends,
                settings.ip_velocity_max > 0,
                settings.ip_velocity_window_secs,
            ),
            (
                &mut tracked.prefix_sends,
                &counts.prefix_sends,
                settings.prefix_velocity_max > 0,
                settings.prefix_velocity_window_secs,
            ),
            (
                &mut tracked.new_country_sends,
                &counts.new_country_sends,
                settings.first_seen_country_max > 0,
                settings.first_seen_country_window_secs,
            ),
            (
                &mut tracked.budget_by_country,
                &counts.budget_by_country,
                settings.daily_budget_per_country > 0,
                settings.budget_window_secs,
            ),
        ] {
            if !on {
                continue;
            }
            let window = secs_ms(window_secs);
            for (key, count) in deltas {
                map.entry_or_insert_with(key, Default::default)
                    .add(at, window, *count);
            }
        }
        if settings.daily_budget > 0 && counts.budget_global > 0 {
            tracked.budget_global.add(
                at,
                secs_ms(settings.budget_window_secs),
                counts.budget_global,
            );
        }
        if settings.recipient_backoff {
            let base = secs_ms(settings.recipient_backoff_base_secs);
            for (phone, sends) in &counts.recipient_sends {
                let backoff = tracked.backoff.entry_or_insert_with(phone, || Backoff {
                    unverified_sends: 0,
                    next_allowed_at: at,
                });
                backoff.unverified_sends = backoff
                    .unverified_sends
                    .saturating_add(u32::try_from(*sends).unwrap_or(u32::MAX));
                let factor = 1i64 << (backoff.unverified_sends.max(1) - 1).min(5);
                backoff.next_allowed_at = backoff
                    .next_allowed_at
                    .max(at.saturating_add(base.saturating_mul(factor)));
            }
        }
        let window = secs_ms(settings.low_conversion_window_secs);
        let Tracked {
            conversion,
            shared,
            verified_countries,
            backoff,
            ..
        } = &mut *tracked;
        let Some(shared) = shared.as_mut() else {
            return;
        };
        for code in &counts.codes_issued {
            let key = (code.phone.clone(), code.template_type.clone());
            conversion.issued(
                key.clone(),
                &code.prefix,
                &code.country,
                code.expires_at,
                code.at.min(at),
                window,
            );
            let verified_at = shared.verified_early.get(&key).copied();
            if let Some(verified_at) = verified_at.filter(|verified_at| *verified_at >= code.at) {
                shared.verified_early.remove(&key);
                conversion.verified(&key, verified_at.min(at), window);
            }
        }
        for key in &counts.codes_discarded {
            conversion.discarded(key);
        }
        let mut verified_in = Vec::new();
        for code in &counts.codes_verified {
            let key = (code.phone.clone(), code.template_type.clone());
            if conversion.verified(&key, code.at.min(at), window).is_none() {
                *shared.verified_early.entry_or_insert_with(&key, || code.at) = code.at;
            }
            if verified_countries.insert(code.country.clone()) {
                verified_in.push(code.country.clone());
            }
            backoff.remove(&code.phone);
        }
        for country in verified_in {
            self.lift_where(tracked, |block| {
                block.reason == BlockReason::FirstSeenCountry && block.subject == country
            });
        }
    }

    /// The table's blocks replace the local ones; blocks made here and not pushed yet stay. A
    /// block that left the table was lifted elsewhere: it is lifted here, with what made it.
    fn replace_blocks(&self, tracked: &mut Tracked, table: Vec<Block>, now: i64) {
        let Some(shared) = tracked.shared.as_mut() else {
            return;
        };
        let in_flight = std::mem::take(&mut shared.in_flight_ids);
        let table: HashMap<BlockKey, Block> = table
            .into_iter()
            .map(|block| (key_of(&block), block))
            .collect();
        let mut lifted_elsewhere = HashSet::new();
        let mut pending = Vec::new();
        let mut local_by_key = HashMap::new();
        for block in tracked.blocks.iter() {
            let key = key_of(block);
            let in_force = block.until.is_none_or(|until| until > now);
            if table.contains_key(&key) {
                local_by_key.insert(key, block.blocked);
            } else if shared.synced_ids.contains(&block.id) || in_flight.contains(&block.id) {
                if in_force {
                    lifted_elsewhere.insert(block.id.clone());
                }
            } else if in_force {
                pending.push(block.clone());
            }
        }
        if !lifted_elsewhere.is_empty() {
            self.lift_where(tracked, |block| lifted_elsewhere.contains(&block.id));
        }
        let known_countries: HashSet<String> = table
            .values()
            .filter(|block| block.reason == BlockReason::FirstSeenCountry)
            .filter(|block| self.country_known(tracked, &block.subject))
            .map(|block| block.subject.clone())
            .collect();
        let Some(shared) = tracked.shared.as_mut() else {
            return;
        };
        let mut blocks = BlockTable::default();
        let mut synced_ids = HashSet::new();
        let mut blocked_base = HashMap::new();
        for (key, mut block) in table {
            synced_ids.insert(block.id.clone());
            // A country known here since (verified or allowed): its first_seen_country block
            // is lifted here, and from the table by the next push.
            if block.reason == BlockReason::FirstSeenCountry
                && known_countries.contains(&block.subject)
            {
                continue;
            }
            // Refusals here since the push: pushed with the next one.
            let since_push = local_by_key.get(&key).map_or(0, |local| {
                local.saturating_sub(shared.blocked_base.get(&key).copied().unwrap_or(0))
            });
            blocked_base.insert(key, block.blocked);
            block.blocked += since_push;
            blocks.insert(block, now);
        }
        for block in pending {
            if let Some(base) = shared.blocked_base.get(&key_of(&block)) {
                blocked_base.insert(key_of(&block), *base);
            }
            blocks.insert(block, now);
        }
        shared.synced_ids = synced_ids;
        shared.blocked_base = blocked_base;
        tracked.blocks = blocks;
    }
}

/// One host's side of the exchanges: its id, its next row number, and the last row applied
/// per other host.
pub struct SharedStateSync {
    host_id: String,
    next_seq: i64,
    applied: HashMap<String, (i64, Instant)>,
}

fn new_host_id() -> String {
    format!("host-{}", super::new_block_id())
}

impl SharedStateSync {
    fn note_applied(&mut self, events: &[RemoteCounts]) {
        let now = Instant::now();
        for event in events {
            let applied = self
                .applied
                .entry(event.host_id.clone())
                .or_insert((0, now));
            *applied = (applied.0.max(event.seq), now);
        }
        self.applied
            .retain(|_, (_, seen)| now.duration_since(*seen) < FORGET_HOST_AFTER);
    }

    /// One exchange; on failure what was taken is kept for the next.
    pub async fn exchange(
        &mut self,
        protection: &Protection,
        store: &dyn SharedStateStore,
    ) -> Result<(), String> {
        let now = crate::store::now_millis();
        let push = protection.take_push(self.next_seq, now);
        if push.counts.is_some() {
            self.next_seq += 1;
        }
        let applied: Vec<(String, i64)> = self
            .applied
            .iter()
            .map(|(host, (seq, _))| (host.clone(), *seq))
            .collect();
        match store
            .exchange_protection(&self.host_id, &push, &applied, now)
            .await
        {
            Ok(pulled) => {
                self.note_applied(&pulled.events);
                let now = crate::store::now_millis();
                protection.apply_pulled(pulled, now);
                protection.sharing.shared_at(now);
                Ok(())
            }
            Err(error) => {
                protection.return_push(push);
                Err(error)
            }
        }
    }

    /// Writes the snapshot when the newest is a minute old (one host does, about).
    pub async fn save_snapshot_when_due(
        &self,
        protection: &Protection,
        store: &dyn SharedStateStore,
    ) -> Result<(), String> {
        if store
            .protection_snapshot_age()
            .await?
            .is_some_and(|age| age < SNAPSHOT_MIN_AGE_MS)
        {
            return Ok(());
        }
        // The rows it counts: the other hosts' applied, and this host's pushed.
        let mut applied: Vec<(String, i64)> = self
            .applied
            .iter()
            .map(|(host, (seq, _))| (host.clone(), *seq))
            .collect();
        applied.push((self.host_id.clone(), self.next_seq - 1));
        let snapshot = protection.shared_snapshot();
        store
            .save_protection_snapshot(&self.host_id, &applied, &snapshot, SNAPSHOT_MIN_AGE_MS)
            .await
    }
}

/// Start-up on PostgreSQL: shares from now on, with the blocks and the counts kept (every
/// row within the longest window, replayed in order).
pub async fn start_sharing(
    protection: &Protection,
    store: &dyn SharedStateStore,
) -> Result<SharedStateSync, String> {
    protection.share(crate::store::now_millis());
    let (snapshot, pulled) = store.load_shared_protection().await?;
    let mut sync = SharedStateSync {
        host_id: new_host_id(),
        next_seq: 1,
        applied: HashMap::new(),
    };
    let snapshot_taken_at = snapshot.as_ref().map(|stored| stored.taken_at);
    if let Some(stored) = snapshot {
        let now = Instant::now();
        sync.applied = stored
            .applied
            .into_iter()
            .map(|(host, seq)| (host, (seq, now)))
            .collect();
        protection.restore_shared(stored.snapshot);
    }
    sync.note_applied(&pulled.events);
    let (blocks, rows) = (pulled.blocks.len(), pulled.events.len());
    let now = crate::store::now_millis();
    protection.apply_pulled(pulled, now);
    protection.sharing.shared_at(now);
    tracing::info!(
        host_id = %sync.host_id,
        blocks,
        rows,
        snapshot_taken_at,
        mode = protection.mode().label(),
        "protection state shared through PostgreSQL: blocks and counts of every host"
    );
    Ok(sync)
}

/// Runs for the host's life: an exchange every [`TICK`], old rows purged now and then. The
/// loss of the database is logged once, and so is the recovery.
pub async fn share_periodically(
    protection: &Protection,
    store: &dyn SharedStateStore,
    mut sync: SharedStateSync,
) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = false;
    let mut ticks: u32 = 0;
    loop {
        interval.tick().await;
        ticks = ticks.wrapping_add(1);
        match sync.exchange(protection, store).await {
            Ok(()) if lost => {
                lost = false;
                tracing::info!("protection state shared again: sends are decided again");
            }
            Ok(()) => {}
            Err(error) => {
                if !lost && protection.sharing.stale(crate::store::now_millis()) {
                    lost = true;
                    tracing::warn!(%error, "protection state cannot be shared with the other hosts: sends are refused (503) until PostgreSQL answers");
                } else {
                    tracing::debug!(%error, "sharing the protection state failed");
                }
            }
        }
        if ticks % SNAPSHOT_EVERY_TICKS == 0 && !lost {
            if let Err(error) = sync.save_snapshot_when_due(protection, store).await {
                tracing::debug!(%error, "saving the protection snapshot failed");
            }
        }
        if ticks % PURGE_EVERY_TICKS == 0 && !lost {
            match store
                .purge_protection_events(protection.longest_window_ms())
                .await
            {
                Ok(rows) => tracing::debug!(rows, "purged old protection rows"),
                Err(error) => tracing::debug!(%error, "purging old protection rows failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
