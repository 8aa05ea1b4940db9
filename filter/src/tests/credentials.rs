//! Downstream credentials: reused here and by every worker until `reuse_until`, and forgotten
//! everywhere when dropped.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use crate::credentials::Credentials;
use crate::fake_host::{Fake, NOW};
use scopegate_core::exchange::{cache_key, Credential};

fn credential(token: &str, reuse_until: u64) -> Credential {
    Credential {
        access_token: token.into(),
        reuse_until,
    }
}

#[test]
fn a_credential_is_kept_here_and_shared_with_the_other_workers() {
    let mut h = Fake::default();
    let key = cache_key("g1", "support");
    let mut here = Credentials::default();
    let usable = here.insert(&mut h, &key, &credential("down", NOW + 300));
    assert_eq!(&*usable.authorization, "Bearer down");
    let shared = h.shared_value(&key).map(<[u8]>::to_vec);
    assert_eq!(
        shared.as_deref().and_then(Credential::decode),
        Some(credential("down", NOW + 300))
    );
    // A hit here copies nothing from shared data.
    let reads = h.times("shared_data");
    let hit = here.get(&mut h, &key, NOW).unwrap();
    assert!(std::rc::Rc::ptr_eq(&hit, &usable));
    assert_eq!(h.times("shared_data"), reads);
    // Another worker finds it in shared data.
    let mut there = Credentials::default();
    let found = there.get(&mut h, &key, NOW).unwrap();
    assert_eq!(&*found.authorization, "Bearer down");
    assert_eq!(found.reuse_until, NOW + 300);
}

#[test]
fn a_credential_past_its_reuse_time_is_not_used_anywhere() {
    let mut h = Fake::default();
    let key = cache_key("g1", "support");
    let mut here = Credentials::default();
    here.insert(&mut h, &key, &credential("down", NOW + 300));
    assert!(here.get(&mut h, &key, NOW + 299).is_some());
    assert!(here.get(&mut h, &key, NOW + 300).is_none());
    assert!(Credentials::default()
        .get(&mut h, &key, NOW + 300)
        .is_none());
}

#[test]
fn a_forgotten_credential_is_gone_for_every_worker() {
    let mut h = Fake::default();
    let key = cache_key("g1", "support");
    let other = cache_key("g2", "support");
    let mut here = Credentials::default();
    here.insert(&mut h, &key, &credential("down", NOW + 300));
    here.insert(&mut h, &other, &credential("other", NOW + 300));
    here.forget(&mut h, &key);
    assert!(here.get(&mut h, &key, NOW).is_none());
    assert!(Credentials::default().get(&mut h, &key, NOW).is_none());
    assert!(here.get(&mut h, &other, NOW).is_some());
}

#[test]
fn unreadable_shared_data_is_a_miss_and_a_failed_share_still_serves_this_worker() {
    let mut h = Fake::default();
    let key = cache_key("g1", "support");
    h.share(&key, b"garbage without a newline");
    assert!(Credentials::default().get(&mut h, &key, NOW).is_none());
    h.fail = vec!["set_shared_data"];
    let mut here = Credentials::default();
    here.insert(&mut h, &key, &credential("down", NOW + 300));
    assert!(here.get(&mut h, &key, NOW).is_some());
    h.fail = vec!["shared_data"];
    assert!(Credentials::default().get(&mut h, &key, NOW).is_none());
}
