//! Each layer's decision with an injected clock (milliseconds), the safe-list, the modes, the
//! bounds and the snapshot.

use super::*;

const MINUTE: i64 = 60_000;

fn protection(configure: impl FnOnce(&mut ProtectionSettings)) -> Protection {
    let mut settings = ProtectionSettings::every_layer_off();
    configure(&mut settings);
    Protection::new(settings, BTreeSet::new())
}

fn send<'a>(phone: &'a str, ip: Option<&str>) -> SendFacts<'a> {
    SendFacts {
        phone,
        region: Some("US"),
        client_ip: ip.map(|ip| ip.parse().unwrap()),
    }
}

fn blocked(verdict: Verdict) -> Blocked {
    match verdict {
        Verdict::Blocked(blocked) => blocked,
        other => panic!("not blocked: {other:?}"),
    }
}

#[test]
fn ip_velocity_counts_per_address_and_ipv6_per_64() {
    let protection = protection(|settings| {
        settings.ip_velocity_max = 3;
        settings.ip_velocity_window_secs = 60;
    });
    for index in 0..3 {
        let phone = format!("+1201555000{index}");
        assert_eq!(
            protection.check(&send(&phone, Some("203.0.113.7")), 0),
            Verdict::Allowed
        );
    }
    let refused = blocked(protection.check(&send("+12015550009", Some("203.0.113.7")), 1000));
    assert_eq!(refused.reason, BlockReason::IpVelocity);
    assert_eq!(
        (refused.kind, refused.subject.as_str()),
        (BlockKind::Ip, "203.0.113.7")
    );
    assert!(refused
        .retry_after_secs
        .is_some_and(|secs| (1..=66).contains(&secs)));
    assert!(!refused.block_id.is_empty());
    // Another address, and no address at all, are not this one.
    assert_eq!(
        protection.check(&send("+12015550009", Some("203.0.113.8")), 1000),
        Verdict::Allowed
    );
    assert_eq!(
        protection.check(&send("+12015550009", None), 1000),
        Verdict::Allowed
    );
    // Past the window the address sends again.
    assert_eq!(
        protection.check(
            &send("+12015550009", Some("203.0.113.7")),
            2 * MINUTE + 1000
        ),
        Verdict::Allowed
    );

    for host in 1..=3 {
        let ip = format!("2001:db8:1:2::{host}");
        assert_eq!(
            protection.check(&send("+12015550001", Some(&ip)), 0),
            Verdict::Allowed
        );
    }
    let refused = blocked(protection.check(&send("+12015550001", Some("2001:db8:1:2:ffff::1")), 0));
    assert_eq!(refused.subject, "2001:db8:1:2::/64");
}

#[test]
fn prefix_velocity_counts_numbers_without_their_last_four_digits() {
    let protection = protection(|settings| {
        settings.prefix_velocity_max = 2;
        settings.prefix_velocity_window_secs = 600;
    });
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    assert_eq!(
        protection.check(&send("+12015559999", None), 0),
        Verdict::Allowed
    );
    let refused = blocked(protection.check(&send("+12015551234", None), 0));
    assert_eq!(
        (refused.reason, refused.subject.as_str()),
        (BlockReason::PrefixVelocity, "+1201555")
    );
    assert!(
        refused
            .message
            .starts_with("Sending to this number is paused: the prefix +1201555"),
        "{}",
        refused.message
    );
    // The block holds the prefix: a second refusal carries the same block.
    let again = blocked(protection.check(&send("+12015550002", None), 1000));
    assert_eq!(again.block_id, refused.block_id);
    assert_eq!(
        protection.check(&send("+12015560001", None), 0),
        Verdict::Allowed
    );
}

#[test]
fn low_conversion_blocks_a_prefix_whose_expired_codes_were_not_verified() {
    let protection = protection(|settings| {
        settings.low_conversion_min_samples = 5;
        settings.low_conversion_min_rate = 0.5;
        settings.low_conversion_block_secs = 600;
    });
    let ttl = 10 * MINUTE;
    for index in 0..5 {
        let phone = format!("+1201555000{index}");
        assert_eq!(protection.check(&send(&phone, None), 0), Verdict::Allowed);
        protection.code_issued(&phone, Some("US"), "SignIn", ttl, 0);
    }
    // Not decided before they expire: no block yet.
    assert_eq!(
        protection.check(&send("+12015550100", None), ttl - 1),
        Verdict::Allowed
    );
    let refused = blocked(protection.check(&send("+12015550101", None), ttl));
    assert_eq!(refused.reason, BlockReason::LowConversion);
    assert!(
        refused
            .message
            .contains("converts too few codes (0 of 5 verified)"),
        "{}",
        refused.message
    );
    assert_eq!(refused.retry_after_secs, Some(600));
    // After the block period the prefix sends again.
    assert_eq!(
        protection.check(&send("+12015550101", None), ttl + 600_000),
        Verdict::Allowed
    );
}

#[test]
fn a_prefix_whose_low_conversion_block_ended_is_on_probation() {
    let protection = protection(|settings| {
        settings.low_conversion_min_samples = 5;
        settings.low_conversion_min_rate = 0.5;
        settings.low_conversion_block_secs = 600;
    });
    let ttl = 10 * MINUTE;
    for index in 0..5 {
        let phone = format!("+1201555000{index}");
        protection.check(&send(&phone, None), 0);
        protection.code_issued(&phone, Some("US"), "SignIn", ttl, 0);
    }
    let first = blocked(protection.check(&send("+12015550101", None), ttl));
    let ended = ttl + 600_000;
    // The block ended: sends go again, but the statistics that made it still hold.
    assert_eq!(
        protection.check(&send("+12015550102", None), ended),
        Verdict::Allowed
    );
    protection.code_issued("+12015550102", Some("US"), "SignIn", ended + ttl, ended);
    protection.check(&send("+12015550103", None), ended);
    protection.code_issued("+12015550103", Some("US"), "SignIn", ended + ttl, ended);
    protection.code_verified("+12015550103", Some("US"), "SignIn", ended + MINUTE);
    // A verified code alone decides nothing; the first one that expires unverified blocks
    // again at once, without waiting for 5 new samples (1 of 7 verified).
    assert_eq!(
        protection.check(&send("+12015550104", None), ended + 2 * MINUTE),
        Verdict::Allowed
    );
    let again = blocked(protection.check(&send("+12015550105", None), ended + ttl));
    assert_eq!(again.reason, BlockReason::LowConversion);
    assert_ne!(again.block_id, first.block_id);
    assert!(
        again.message.contains("(1 of 7 verified)"),
        "{}",
        again.message
    );
}

#[test]
fn low_conversion_leaves_a_prefix_whose_codes_are_verified() {
    let protection = protection(|settings| {
        settings.low_conversion_min_samples = 5;
        settings.low_conversion_min_rate = 0.5;
    });
    for index in 0..10 {
        let phone = format!("+1201555000{index}");
        protection.code_issued(&phone, Some("US"), "SignIn", MINUTE, 0);
        if index % 3 != 0 {
            protection.code_verified(&phone, Some("US"), "SignIn", 1000);
        }
    }
    assert_eq!(
        protection.check(&send("+12015550100", None), 2 * MINUTE),
        Verdict::Allowed
    );
    let report = protection.report(2 * MINUTE);
    assert!(report.blocks.is_empty());
}

#[test]
fn first_seen_country_is_throttled_until_a_code_there_is_verified() {
    let protection = protection(|settings| {
        settings.first_seen_country_max = 2;
        settings.first_seen_country_window_secs = 3600;
    });
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    assert_eq!(
        protection.check(&send("+12015550002", None), 0),
        Verdict::Allowed
    );
    let refused = blocked(protection.check(&send("+12015550003", None), 0));
    assert_eq!(
        (refused.reason, refused.kind, refused.subject.as_str()),
        (BlockReason::FirstSeenCountry, BlockKind::Country, "US")
    );
    // Another country has its own first sends.
    let germany = SendFacts {
        phone: "+4915112345678",
        region: Some("DE"),
        client_ip: None,
    };
    assert_eq!(protection.check(&germany, 0), Verdict::Allowed);
    protection.code_issued("+12015550001", Some("US"), "SignIn", MINUTE, 0);
    protection.code_verified("+12015550001", Some("US"), "SignIn", 1000);
    for index in 0..10 {
        let phone = format!("+1201555010{index}");
        assert_eq!(
            protection.check(&send(&phone, None), 2000),
            Verdict::Allowed
        );
    }
}

#[test]
fn an_admin_allowed_country_and_the_operators_countries_are_not_first_seen() {
    let mut settings = ProtectionSettings::every_layer_off();
    settings.first_seen_country_max = 1;
    let protection = Protection::new(settings, BTreeSet::from(["CA".to_owned()]));
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    blocked(protection.check(&send("+12015550002", None), 0));
    protection.allow_country("US");
    assert_eq!(
        protection.check(&send("+12015550002", None), 0),
        Verdict::Allowed
    );
    assert_eq!(
        protection.report(0).allowed_countries,
        vec!["US".to_owned()]
    );
    let canada = SendFacts {
        phone: "+14165550123",
        region: Some("CA"),
        client_ip: None,
    };
    for _ in 0..5 {
        assert_eq!(protection.check(&canada, 0), Verdict::Allowed);
    }
}

#[test]
fn budgets_are_a_hard_stop_globally_and_per_country() {
    let protection = protection(|settings| {
        settings.daily_budget = 3;
        settings.daily_budget_per_country = 2;
        settings.budget_window_secs = 86_400;
    });
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    assert_eq!(
        protection.check(&send("+12015560001", None), 0),
        Verdict::Allowed
    );
    let refused = blocked(protection.check(&send("+12015570001", None), 0));
    assert_eq!(
        (refused.reason, refused.kind),
        (BlockReason::Budget, BlockKind::Country)
    );
    let germany = SendFacts {
        phone: "+4915112345678",
        region: Some("DE"),
        client_ip: None,
    };
    assert_eq!(protection.check(&germany, 0), Verdict::Allowed);
    let refused = blocked(protection.check(&germany, 0));
    assert_eq!(
        (refused.reason, refused.kind, refused.subject.as_str()),
        (BlockReason::Budget, BlockKind::Global, "*")
    );
    assert!(refused.retry_after_secs.is_some_and(|secs| secs > 80_000));
}

#[test]
fn recipient_backoff_doubles_up_to_32_times_its_base_and_a_verified_code_resets_it() {
    let protection = protection(|settings| {
        settings.recipient_backoff = true;
        settings.recipient_backoff_base_secs = 60;
    });
    let phone = "+12015550001";
    let mut now = 0;
    for factor in [1, 2, 4, 8, 16, 32, 32] {
        assert_eq!(
            protection.check(&send(phone, None), now),
            Verdict::Allowed,
            "at {now}"
        );
        let refused = blocked(protection.check(&send(phone, None), now + factor * MINUTE - 1000));
        assert_eq!(refused.reason, BlockReason::RecipientBackoff);
        now += factor * MINUTE;
    }
    protection.code_verified(phone, Some("US"), "SignIn", now);
    assert_eq!(protection.check(&send(phone, None), now), Verdict::Allowed);
    assert_eq!(
        protection.check(&send("+12015550002", None), now),
        Verdict::Allowed
    );
}

#[test]
fn the_safe_list_bypasses_every_layer() {
    let mut settings = ProtectionSettings::every_layer_off();
    settings.prefix_velocity_max = 1;
    settings.safe_list = SafeList::parse("+12015550123, +1202555*").unwrap();
    let protection = Protection::new(settings, BTreeSet::new());
    for _ in 0..5 {
        assert_eq!(
            protection.check(&send("+12015550123", None), 0),
            Verdict::Allowed
        );
        assert_eq!(
            protection.check(&send("+12025550001", None), 0),
            Verdict::Allowed
        );
    }
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    blocked(protection.check(&send("+12015550002", None), 0));
    assert!(SafeList::parse("12015550123").is_err());
    assert!(SafeList::parse("+1201x*").is_err());
    assert!(SafeList::parse("+*").is_err());
    assert_eq!(
        SafeList::parse("+1,+2*").unwrap().entries(),
        vec!["+1", "+2*"]
    );
}

#[test]
fn monitor_mode_decides_and_counts_but_blocks_nothing_and_off_decides_nothing() {
    let monitored = protection(|settings| {
        settings.mode = ProtectionMode::Monitor;
        settings.prefix_velocity_max = 1;
    });
    assert_eq!(
        monitored.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    match monitored.check(&send("+12015550002", None), 0) {
        Verdict::WouldBlock(blocked) => assert_eq!(blocked.reason, BlockReason::PrefixVelocity),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        monitored.check(&send("+12015550003", None), 0),
        Verdict::WouldBlock(_)
    ));
    assert_eq!(monitored.report(0).blocks.len(), 1);

    let off = protection(|settings| {
        settings.mode = ProtectionMode::Off;
        settings.prefix_velocity_max = 1;
    });
    for _ in 0..5 {
        assert_eq!(off.check(&send("+12015550001", None), 0), Verdict::Allowed);
    }
}

#[test]
fn a_lifted_block_lets_sends_go_again() {
    let protection = protection(|settings| settings.prefix_velocity_max = 1);
    assert_eq!(
        protection.check(&send("+12015550001", None), 0),
        Verdict::Allowed
    );
    let refused = blocked(protection.check(&send("+12015550002", None), 0));
    let report = protection.report(0);
    assert_eq!(report.blocks.len(), 1);
    assert_eq!(report.blocks[0].counts.blocked, 1);
    assert!(!protection.lift("unknown"));
    assert!(protection.lift(&refused.block_id));
    assert_eq!(
        protection.check(&send("+12015550002", None), 0),
        Verdict::Allowed
    );
    assert!(protection.report(0).blocks.is_empty());
}

#[test]
fn state_keyed_by_client_values_stays_bounded() {
    let protection = protection(|settings| {
        settings.ip_velocity_max = 5;
        settings.prefix_velocity_max = 5;
    });
    for index in 0..(MAX_TRACKED_KEYS as u32 + 5_000) {
        let ip = std::net::Ipv4Addr::from(index).to_string();
        let phone = format!("+1{:010}", 2_000_000_000u64 + u64::from(index) * 10_000);
        protection.check(&send(&phone, Some(&ip)), 0);
    }
    let tracked = protection.tracked();
    assert_eq!(tracked.ip_sends.len(), MAX_TRACKED_KEYS);
    assert_eq!(tracked.prefix_sends.len(), MAX_TRACKED_KEYS);
}

#[test]
fn blocks_are_capped() {
    let protection = protection(|settings| settings.prefix_velocity_max = 1);
    for index in 0..(MAX_BLOCKS as u64 + 10) {
        let phone = format!("+1{:010}", 2_000_000_000u64 + index * 10_000);
        protection.check(&send(&phone, None), 0);
        protection.check(&send(&phone, None), 0);
    }
    assert_eq!(protection.tracked().blocks.len(), MAX_BLOCKS);
}

#[test]
fn a_snapshot_keeps_blocks_statistics_and_countries() {
    let protection = protection(|settings| {
        settings.prefix_velocity_max = 1;
        settings.first_seen_country_max = 100;
    });
    protection.check(&send("+12015550001", None), 0);
    let refused = blocked(protection.check(&send("+12015550002", None), 0));
    protection.allow_country("DE");
    protection.code_issued("+12015550001", Some("US"), "SignIn", MINUTE, 0);
    let (snapshot, blocks_changed) = protection.take_snapshot(false).unwrap();
    assert!(blocks_changed);
    assert!(
        protection.take_snapshot(false).is_none(),
        "nothing changed since"
    );
    let json = serde_json::to_string(&snapshot).unwrap();

    let restarted = Protection::new(protection.settings().clone(), BTreeSet::new());
    restarted.restore(serde_json::from_str(&json).unwrap());
    let again = blocked(restarted.check(&send("+12015550003", None), 1000));
    assert_eq!(again.block_id, refused.block_id);
    let report = restarted.report(1000);
    assert_eq!(report.allowed_countries, vec!["DE".to_owned()]);
    assert_eq!(report.blocks[0].counts.issued, 1);
    assert_eq!(restarted.tracked().conversion.pending_codes(), 1);
}

#[test]
fn ip_subjects_and_prefixes() {
    assert_eq!(
        ip_subject("::ffff:203.0.113.9".parse().unwrap()),
        "203.0.113.9"
    );
    assert_eq!(ip_subject("2001:db8::1".parse().unwrap()), "2001:db8::/64");
    assert_eq!(number_prefix("+12015550123"), "+1201555");
    assert_eq!(number_prefix("+12345"), "+12345");
    assert!(is_region_code("US") && !is_region_code("us") && !is_region_code("USA"));
}
