//! The merge of another host's state: counts applied as if counted here, the shared table's
//! blocks taking over the local ones (with the winner's id), lifts elsewhere, codes verified on
//! one host and issued on another, and the stale state.

use super::*;
use crate::protection::{Blocked, SendFacts, Verdict};

const MINUTE: i64 = 60_000;

fn shared_protection(configure: impl FnOnce(&mut ProtectionSettings)) -> Protection {
    let mut settings = ProtectionSettings::every_layer_off();
    configure(&mut settings);
    let protection = Protection::new(settings, BTreeSet::new());
    protection.share(0);
    protection
}

fn prefix_limited(max: u32) -> Protection {
    shared_protection(|settings| {
        settings.prefix_velocity_max = max;
        settings.prefix_velocity_window_secs = 600;
    })
}

fn send(phone: &str) -> SendFacts<'_> {
    SendFacts {
        phone,
        region: Some("US"),
        client_ip: None,
    }
}

fn blocked(verdict: Verdict) -> Blocked {
    match verdict {
        Verdict::Blocked(blocked) => blocked,
        other => panic!("not blocked: {other:?}"),
    }
}

/// One exchange of `host` against a table, as the database would answer it: the pushed blocks
/// inserted unless one for the same subject and reason is there, lifts deleted, refusals added.
fn exchange(
    host: &Protection,
    table: &mut Vec<Block>,
    events: Vec<RemoteCounts>,
    now: i64,
) -> Push {
    let push = host.take_push(1, now);
    for block in &push.new_blocks {
        if !table.iter().any(|stored| key_of(stored) == key_of(block)) {
            table.push(Block {
                blocked: 0,
                ..block.clone()
            });
        }
    }
    for (key, count) in &push.blocked {
        if let Some(stored) = table.iter_mut().find(|stored| key_of(stored) == *key) {
            stored.blocked += count;
        }
    }
    table.retain(|stored| !push.lifted_ids.contains(&stored.id));
    host.apply_pulled(
        Pulled {
            blocks: table.clone(),
            countries: Vec::new(),
            events,
        },
        now,
    );
    push
}

fn row(counts: CountDeltas, at: i64) -> RemoteCounts {
    RemoteCounts {
        host_id: "other".to_owned(),
        seq: 1,
        at,
        counts,
    }
}

#[test]
fn counts_from_two_hosts_trip_a_layer_neither_would_alone() {
    let (a, b) = (prefix_limited(3), prefix_limited(3));
    for index in 0..2 {
        assert_eq!(
            a.check(&send(&format!("+1201555000{index}")), 1000),
            Verdict::Allowed
        );
    }
    let from_a = a.take_push(1, 1000).counts.expect("A counted its sends");
    assert_eq!(from_a.prefix_sends.get("+1201555"), Some(&2));
    // Not pushed twice.
    assert!(a.take_push(2, 1000).counts.is_none());

    b.apply_pulled(
        Pulled {
            events: vec![row(from_a, 1000)],
            ..Pulled::default()
        },
        1100,
    );
    assert_eq!(b.check(&send("+12015550009"), 1200), Verdict::Allowed);
    let refused = blocked(b.check(&send("+12015550008"), 1300));
    assert_eq!(refused.reason, BlockReason::PrefixVelocity);
    // Its own send went out to the others, and only that one.
    let from_b = b.take_push(1, 1300);
    assert_eq!(
        from_b
            .counts
            .expect("B counted")
            .prefix_sends
            .get("+1201555"),
        Some(&1)
    );
    assert_eq!(from_b.new_blocks.len(), 1);
}

#[test]
fn a_host_takes_the_winning_block_and_its_id_and_keeps_its_refusals() {
    let (a, b) = (prefix_limited(1), prefix_limited(1));
    let mut table = Vec::new();
    a.check(&send("+12015550001"), 1000);
    let on_a = blocked(a.check(&send("+12015550002"), 1000));
    b.check(&send("+12015550003"), 1000);
    let on_b = blocked(b.check(&send("+12015550004"), 1000));
    assert_ne!(on_a.block_id, on_b.block_id);

    exchange(&a, &mut table, Vec::new(), 1100);
    let pushed = exchange(&b, &mut table, Vec::new(), 1200);
    assert_eq!(pushed.new_blocks.len(), 1, "B offered its block");
    assert_eq!(table.len(), 1, "one block per subject and reason");
    // B now refuses with A's block, and both refusals are counted on it.
    let again = blocked(b.check(&send("+12015550005"), 1300));
    assert_eq!(again.block_id, on_a.block_id);
    assert_eq!(table[0].blocked, 2);
    let report = b.report(1300);
    assert_eq!(report.blocks.len(), 1);
    assert_eq!(report.blocks[0].id, on_a.block_id);
    assert_eq!(report.blocks[0].counts.blocked, 3);
    exchange(&b, &mut table, Vec::new(), 1400);
    assert_eq!(table[0].blocked, 3);
}

#[test]
fn a_block_made_elsewhere_refuses_here_and_a_lift_elsewhere_lifts_it_here() {
    let (a, b) = (prefix_limited(2), prefix_limited(2));
    let mut table = Vec::new();
    for index in 0..2 {
        a.check(&send(&format!("+1201555000{index}")), 1000);
    }
    let on_a = blocked(a.check(&send("+12015550002"), 1000));
    let counts = exchange(&a, &mut table, Vec::new(), 1100).counts.unwrap();
    exchange(&b, &mut table, vec![row(counts, 1100)], 1200);
    assert_eq!(
        blocked(b.check(&send("+12015550003"), 1300)).block_id,
        on_a.block_id
    );

    // An admin lifts it on B: B sends again at once, and A after its next exchange, with the
    // counts that made the block forgotten on both.
    assert!(b.lift(&on_a.block_id));
    assert_eq!(b.check(&send("+12015550004"), 1400), Verdict::Allowed);
    let pushed = exchange(&b, &mut table, Vec::new(), 1500);
    assert_eq!(pushed.lifted_ids, vec![on_a.block_id.clone()]);
    assert!(table.is_empty());
    exchange(
        &a,
        &mut table,
        vec![row(pushed.counts.unwrap(), 1500)],
        1600,
    );
    assert!(a.report(1700).blocks.is_empty());
    assert_eq!(a.check(&send("+12015550005"), 1700), Verdict::Allowed);
}

#[test]
fn a_block_not_pushed_yet_is_kept_and_an_ended_one_is_not_offered() {
    let b = prefix_limited(1);
    b.check(&send("+12015550001"), 1000);
    let refused = blocked(b.check(&send("+12015550002"), 1000));
    // An exchange read before the block was taken: the block stays.
    b.apply_pulled(Pulled::default(), 1100);
    assert_eq!(
        blocked(b.check(&send("+12015550003"), 1200)).block_id,
        refused.block_id
    );
    // Once it ended, it is not offered to the others.
    let after_end = 1000 + 11 * MINUTE;
    assert!(b.take_push(1, after_end).new_blocks.is_empty());
}

#[test]
fn a_code_issued_on_one_host_and_verified_on_another_converts_on_both() {
    let settings = |settings: &mut ProtectionSettings| {
        settings.low_conversion_min_samples = 1;
        settings.low_conversion_min_rate = 0.5;
    };
    let (a, b) = (shared_protection(settings), shared_protection(settings));
    let expires_at = 5 * MINUTE;
    a.code_issued("+12015550001", Some("US"), "SignIn", expires_at, 1000);
    // Verified on B before B heard of the code.
    b.code_verified("+12015550001", Some("US"), "SignIn", 2000);
    let from_a = a.take_push(1, 2100).counts.unwrap();
    let from_b = b.take_push(1, 2100).counts.unwrap();
    assert_eq!(from_b.codes_verified.len(), 1);
    a.apply_pulled(
        Pulled {
            events: vec![row(from_b, 2100)],
            ..Pulled::default()
        },
        2200,
    );
    b.apply_pulled(
        Pulled {
            events: vec![row(from_a, 2100)],
            ..Pulled::default()
        },
        2200,
    );
    let later = expires_at + SETTLE_GRACE_MS + MINUTE;
    for host in [&a, &b] {
        let mut tracked = host.tracked();
        let counts = tracked
            .conversion
            .by_prefix
            .get_mut(&"+1201555".to_owned())
            .expect("the prefix has statistics")
            .counts(later, secs_ms(86_400));
        assert_eq!(
            (counts.issued, counts.verified, counts.unverified),
            (1, 1, 0)
        );
        assert_eq!(tracked.conversion.pending_codes(), 0);
        assert!(tracked.verified_countries.contains("US"));
    }
    // Nothing expired unverified: no low_conversion block anywhere.
    for host in [&a, &b] {
        assert_eq!(host.check(&send("+12015550009"), later), Verdict::Allowed);
        assert!(host.report(later).blocks.is_empty());
    }
}

#[test]
fn a_code_verified_elsewhere_near_its_expiry_is_not_counted_unverified_here() {
    let settings = |settings: &mut ProtectionSettings| {
        settings.low_conversion_min_samples = 1;
        settings.low_conversion_min_rate = 0.5;
    };
    let a = shared_protection(settings);
    let expires_at = 5 * MINUTE;
    a.code_issued("+12015550001", Some("US"), "SignIn", expires_at, 1000);
    // Just past the expiry, before the verify on another host is heard of.
    assert_eq!(
        a.check(&send("+12015550009"), expires_at + 100),
        Verdict::Allowed
    );
    let verified_elsewhere = CountDeltas {
        codes_verified: vec![VerifiedCode {
            phone: "+12015550001".to_owned(),
            template_type: "SignIn".to_owned(),
            country: "US".to_owned(),
            at: expires_at - 100,
        }],
        ..CountDeltas::default()
    };
    a.apply_pulled(
        Pulled {
            events: vec![row(verified_elsewhere, expires_at + 200)],
            ..Pulled::default()
        },
        expires_at + 300,
    );
    let later = expires_at + SETTLE_GRACE_MS + MINUTE;
    assert_eq!(a.check(&send("+12015550009"), later), Verdict::Allowed);
    assert!(a.report(later).blocks.is_empty());
}

#[test]
fn a_failed_exchange_gives_its_counts_and_refusals_back() {
    let a = prefix_limited(1);
    a.check(&send("+12015550001"), 1000);
    blocked(a.check(&send("+12015550002"), 1000));
    let push = a.take_push(1, 1000);
    assert_eq!(push.blocked.len(), 1);
    a.check(&send("+12015550003"), 1100);
    a.return_push(push);
    let again = a.take_push(2, 1200);
    assert_eq!(again.new_blocks.len(), 1, "offered again");
    assert_eq!(again.blocked[0].1, 2, "both refusals");
    assert_eq!(again.counts.unwrap().prefix_sends.get("+1201555"), Some(&1));
}

#[test]
fn countries_verified_or_allowed_elsewhere_are_known_here() {
    let b = shared_protection(|settings| {
        settings.first_seen_country_max = 1;
        settings.first_seen_country_window_secs = 600;
    });
    let mut table = Vec::new();
    b.check(&send("+12015550001"), 1000);
    let refused = blocked(b.check(&send("+12015550002"), 1000));
    assert_eq!(refused.reason, BlockReason::FirstSeenCountry);
    exchange(&b, &mut table, Vec::new(), 1100);
    b.apply_pulled(
        Pulled {
            blocks: table.clone(),
            countries: vec![("US".to_owned(), true)],
            events: Vec::new(),
        },
        1200,
    );
    assert_eq!(b.check(&send("+12015550003"), 1300), Verdict::Allowed);
    assert_eq!(b.report(1300).allowed_countries, vec!["US".to_owned()]);
    // Its block goes from the table at the next exchange.
    assert_eq!(b.take_push(2, 1300).lifted_ids, vec![refused.block_id]);
}

#[test]
fn a_stale_shared_state_refuses_in_enforce_mode_only_until_an_exchange_succeeds() {
    let enforce = prefix_limited(1);
    assert!(enforce.shared_state_stale(STALE_AFTER_MS).is_none());
    assert!(enforce.shared_state_stale(STALE_AFTER_MS + 1).is_some());
    enforce.sharing.shared_at(STALE_AFTER_MS + 1);
    assert!(enforce.shared_state_stale(STALE_AFTER_MS + 2).is_none());
    let monitor = shared_protection(|settings| settings.mode = ProtectionMode::Monitor);
    assert!(monitor.shared_state_stale(10 * STALE_AFTER_MS).is_none());
    // One host (SQLite) never shares.
    let alone = Protection::new(ProtectionSettings::every_layer_off(), BTreeSet::new());
    assert!(alone.shared_state_stale(i64::MAX).is_none());
}

#[test]
fn a_row_of_counts_survives_json() {
    let counts = CountDeltas {
        ip_sends: [("203.0.113.7".to_owned(), 2)].into(),
        budget_global: 3,
        codes_discarded: vec![("+12015550001".to_owned(), "SignIn".to_owned())],
        ..CountDeltas::default()
    };
    let json = serde_json::to_value(&counts).unwrap();
    assert_eq!(json["budgetGlobal"], 3);
    assert!(json.get("prefixSends").is_none(), "empty maps are left out");
    assert_eq!(serde_json::from_value::<CountDeltas>(json).unwrap(), counts);
}

/// The database as the exchanges see it, in memory: the block table, the countries, the rows
/// and the snapshot.
#[derive(Default)]
struct TableStore {
    state: std::sync::Mutex<TableState>,
}

#[derive(Default)]
struct TableState {
    blocks: Vec<Block>,
    countries: BTreeSet<(String, bool)>,
    rows: Vec<RemoteCounts>,
    snapshot: Option<StoredSnapshot>,
    clock: i64,
}

impl TableState {
    fn pulled(&self, rows: Vec<RemoteCounts>) -> Pulled {
        Pulled {
            blocks: self.blocks.clone(),
            countries: self.countries.iter().cloned().collect(),
            events: rows,
        }
    }
}

fn after_applied(row: &RemoteCounts, applied: &[(String, i64)]) -> bool {
    let last = applied
        .iter()
        .find(|(host, _)| *host == row.host_id)
        .map_or(0, |(_, seq)| *seq);
    row.seq > last
}

#[async_trait::async_trait]
impl SharedStateStore for TableStore {
    async fn load_shared_protection(&self) -> Result<(Option<StoredSnapshot>, Pulled), String> {
        let state = self.state.lock().unwrap();
        let rows = state
            .rows
            .iter()
            .filter(|row| {
                state
                    .snapshot
                    .as_ref()
                    .is_none_or(|stored| after_applied(row, &stored.applied))
            })
            .cloned()
            .collect();
        Ok((state.snapshot.clone(), state.pulled(rows)))
    }

    async fn exchange_protection(
        &self,
        host_id: &str,
        push: &Push,
        applied: &[(String, i64)],
        now: i64,
    ) -> Result<Pulled, String> {
        let mut state = self.state.lock().unwrap();
        state.clock += 1;
        for block in &push.new_blocks {
            if !state
                .blocks
                .iter()
                .any(|stored| key_of(stored) == key_of(block))
            {
                state.blocks.push(Block {
                    blocked: 0,
                    ..block.clone()
                });
            }
        }
        for (key, count) in &push.blocked {
            if let Some(stored) = state
                .blocks
                .iter_mut()
                .find(|stored| key_of(stored) == *key)
            {
                stored.blocked += count;
            }
        }
        state.blocks.retain(|stored| {
            !push.lifted_ids.contains(&stored.id) && stored.until.is_none_or(|until| until > now)
        });
        state.countries.extend(push.countries.iter().cloned());
        if let Some(counts) = &push.counts {
            let at = state.clock;
            state.rows.push(RemoteCounts {
                host_id: host_id.to_owned(),
                seq: push.seq,
                at,
                counts: counts.clone(),
            });
        }
        let rows = state
            .rows
            .iter()
            .filter(|row| row.host_id != host_id && after_applied(row, applied))
            .cloned()
            .collect();
        Ok(state.pulled(rows))
    }

    async fn purge_protection_events(&self, _retention_ms: i64) -> Result<u64, String> {
        Ok(0)
    }

    async fn protection_snapshot_age(&self) -> Result<Option<i64>, String> {
        Ok(None)
    }

    async fn save_protection_snapshot(
        &self,
        _host_id: &str,
        applied: &[(String, i64)],
        snapshot: &SharedSnapshot,
        _min_age_ms: i64,
    ) -> Result<(), String> {
        let mut state = self.state.lock().unwrap();
        // Through JSON, as stored.
        let snapshot = serde_json::from_value(serde_json::to_value(snapshot).unwrap()).unwrap();
        state.snapshot = Some(StoredSnapshot {
            taken_at: state.clock,
            applied: applied.to_vec(),
            snapshot,
        });
        Ok(())
    }
}

/// A host that starts gets the others' counts from the snapshot and the rows after it, each
/// once: one more send trips the layer the hosts' sends together filled.
#[tokio::test]
async fn a_host_that_starts_restores_the_snapshot_and_the_rows_after_it_once() {
    let store = TableStore::default();
    let a = prefix_limited(10);
    let mut sync_a = start_sharing(&a, &store).await.unwrap();
    let now = crate::store::now_millis();
    for index in 0..4 {
        assert_eq!(
            a.check(&send(&format!("+1201555000{index}")), now),
            Verdict::Allowed
        );
    }
    sync_a.exchange(&a, &store).await.unwrap();
    sync_a.save_snapshot_when_due(&a, &store).await.unwrap();
    // After the snapshot: 5 more, in a row of their own.
    for index in 4..9 {
        assert_eq!(
            a.check(&send(&format!("+1201555000{index}")), now),
            Verdict::Allowed
        );
    }
    sync_a.exchange(&a, &store).await.unwrap();
    assert_eq!(store.state.lock().unwrap().rows.len(), 2);

    let b = prefix_limited(10);
    let mut sync_b = start_sharing(&b, &store).await.unwrap();
    // 4 from the snapshot, 5 from the row after it: the 10th send is the last one allowed.
    assert_eq!(b.check(&send("+12015550100"), now), Verdict::Allowed);
    sync_b.exchange(&b, &store).await.unwrap();
    assert_eq!(
        blocked(b.check(&send("+12015550101"), now)).reason,
        BlockReason::PrefixVelocity
    );
    // The block reaches A at its next exchange, with B's id.
    sync_b.exchange(&b, &store).await.unwrap();
    sync_a.exchange(&a, &store).await.unwrap();
    let on_b = b.report(now).blocks[0].id.clone();
    assert_eq!(blocked(a.check(&send("+12015550102"), now)).block_id, on_b);
}
