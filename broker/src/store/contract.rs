//! The storage tests every backend passes: the same functions over a `&dyn Store`, run on SQLite
//! and on a real PostgreSQL (started by the test, see tests/src/postgres.rs).

use super::postgres::{Options, Postgres};
use super::sqlite::Sqlite;
use super::*;
use std::sync::Arc;
use std::time::Duration;

fn grant(id: &str) -> GrantRow {
    GrantRow {
        id: id.into(),
        gateway: "g".into(),
        server: "s".into(),
        client_id: "c".into(),
        subject: "u".into(),
        scope: "a".into(),
        status: GrantStatus::Active,
        downstream: vec![1, 0, 255],
        downstream_expires_at: 10,
        version: 0,
        created_at: 1,
    }
}
fn code(h: &str, g: &str) -> CodeRow {
    CodeRow {
        code_hash: h.into(),
        grant_id: g.into(),
        client_id: "c".into(),
        redirect_uri: "r".into(),
        code_challenge: "x".into(),
        resource: "res".into(),
        expires_at: 100,
        used: false,
    }
}
fn rt(h: &str, g: &str) -> RefreshRow {
    RefreshRow {
        token_hash: h.into(),
        grant_id: g.into(),
        client_id: "c".into(),
        status: TokenStatus::Active,
        expires_at: 100,
        created_at: 1,
    }
}

fn family_lifecycle(db: &dyn Store) {
    db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
    assert_eq!(db.grant("g1").unwrap().unwrap().downstream, vec![1, 0, 255]);
    assert!(!db.code("c1").unwrap().unwrap().used);
    assert!(db.redeem_code("c1", Some(&rt("r1", "g1"))).unwrap());
    assert!(db.code("c1").unwrap().unwrap().used);
    assert!(!db.redeem_code("c1", Some(&rt("r1b", "g1"))).unwrap());
    assert!(
        db.refresh("r1b").unwrap().is_none(),
        "a refused redeem stores nothing"
    );
    assert!(db.rotate_refresh("r1", &rt("r2", "g1")).unwrap());
    assert!(!db.rotate_refresh("r1", &rt("r3", "g1")).unwrap());
    assert!(db.refresh("r3").unwrap().is_none());
    assert_eq!(
        db.refresh("r1").unwrap().unwrap().status,
        TokenStatus::Rotated
    );
    assert!(db.update_downstream("g1", 0, &[2], 20, 5).unwrap());
    assert!(!db.update_downstream("g1", 0, &[3], 30, 5).unwrap());
    let g = db.grant("g1").unwrap().unwrap();
    assert_eq!(
        (g.version, g.downstream_expires_at, g.downstream),
        (1, 20, vec![2])
    );
    db.revoke_family("g1", 6, 400).unwrap();
    assert_eq!(
        db.grant("g1").unwrap().unwrap().status,
        GrantStatus::Revoked
    );
    assert_eq!(
        db.refresh("r2").unwrap().unwrap().status,
        TokenStatus::Revoked
    );
    assert!(!db.update_downstream("g1", 1, &[3], 30, 7).unwrap());
    db.set_grant_status("g1", GrantStatus::Dead, 8).unwrap();
    assert_eq!(db.grant("g1").unwrap().unwrap().status, GrantStatus::Dead);
    assert!(db.grant("nope").unwrap().is_none());
}

fn revocations_are_listed_once_until_they_expire(db: &dyn Store) {
    db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
    db.create_grant(&grant("g2"), &code("c2", "g2")).unwrap();
    assert_eq!(db.revocations_since(0, 10).unwrap(), (0, vec![]));
    db.revoke_family("g1", 5, 100).unwrap();
    db.revoke_family("g1", 6, 100).unwrap();
    db.revoke_family("g2", 7, 200).unwrap();
    let (cursor, rows) = db.revocations_since(0, 10).unwrap();
    assert_eq!(rows, vec![("g1".into(), 100), ("g2".into(), 200)]);
    assert_eq!(db.revocations_since(cursor, 10).unwrap(), (cursor, vec![]));
    let (c1, first) = db.revocations_since(0, 1).unwrap();
    assert_eq!(first, vec![("g1".to_string(), 100)]);
    assert_eq!(db.revocations_since(c1, 10).unwrap().1.len(), 1);
    assert_eq!(db.revocations_since(cursor + 50, 10).unwrap().1.len(), 2);
    db.purge(150).unwrap();
    assert_eq!(
        db.revocations_since(0, 10).unwrap().1,
        vec![("g2".to_string(), 200)]
    );
}

fn clients_and_sweep(db: &dyn Store) {
    for (id, at) in [("c", 1), ("idle", 1), ("new", 50)] {
        db.put_client(&ClientRow {
            client_id: id.into(),
            gateway: "g".into(),
            metadata: "{}".into(),
            secret_hash: (id == "c").then(|| "h".to_string()),
            created_at: at,
        })
        .unwrap();
    }
    assert!(
        db.put_client(&ClientRow {
            client_id: "c".into(),
            gateway: "g".into(),
            metadata: "{}".into(),
            secret_hash: None,
            created_at: 2,
        })
        .is_err(),
        "client ids are unique"
    );
    assert_eq!(
        db.client("c").unwrap().unwrap().secret_hash.as_deref(),
        Some("h")
    );
    db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
    assert_eq!(db.count_clients("g").unwrap(), 3);
    assert_eq!(db.sweep_unused_clients("other", 40).unwrap(), 0);
    assert_eq!(db.sweep_unused_clients("g", 40).unwrap(), 1);
    assert!(db.client("idle").unwrap().is_none());
    assert!(db.client("c").unwrap().is_some(), "it has a grant");
    assert!(db.client("new").unwrap().is_some(), "too young");
}

fn pending_is_single_use(db: &dyn Store) {
    let p = PendingRow {
        id_hash: "p1".into(),
        gateway: "g".into(),
        data: "{}".into(),
        csrf_hash: "x".into(),
        state_hash: None,
        secret: None,
        expires_at: 50,
    };
    db.put_pending(&p).unwrap();
    assert!(db.pending("p1").unwrap().unwrap().secret.is_none());
    assert!(db.approve_pending("p1", "s1", &[9, 9]).unwrap());
    assert!(
        !db.approve_pending("p1", "s2", &[8]).unwrap(),
        "approved once"
    );
    let taken = db.take_pending_by_state("s1").unwrap().unwrap();
    assert_eq!(taken.secret, Some(vec![9, 9]));
    assert!(db.take_pending_by_state("s1").unwrap().is_none());
    db.put_pending(&PendingRow {
        id_hash: "p2".into(),
        ..p.clone()
    })
    .unwrap();
    db.delete_pending("p2").unwrap();
    assert!(db.pending("p2").unwrap().is_none());
    db.put_pending(&PendingRow {
        id_hash: "p3".into(),
        ..p
    })
    .unwrap();
    db.purge(50).unwrap();
    assert!(
        db.pending("p3").unwrap().is_none(),
        "expired requests are purged"
    );
}

fn keys_round_trip(db: &dyn Store) {
    for (kid, at) in [("b", 2), ("a", 1)] {
        db.put_key(&KeyRow {
            kid: kid.into(),
            private_key: vec![7; 40],
            created_at: at,
        })
        .unwrap();
    }
    let kids: Vec<String> = db.keys().unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, vec!["a", "b"]);
    db.delete_key("a").unwrap();
    assert_eq!(db.keys().unwrap().len(), 1);
    db.ping().unwrap();
}

/// Many threads redeem one code and rotate one refresh token: exactly one wins each.
fn single_use_under_contention(db: Arc<dyn Store>) {
    db.create_grant(&grant("gc"), &code("cc", "gc")).unwrap();
    let wins = |f: Arc<dyn Fn(usize) -> bool + Send + Sync>| {
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let f = Arc::clone(&f);
                std::thread::spawn(move || f(n))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count()
    };
    let d = Arc::clone(&db);
    let redeemed = wins(Arc::new(move |n| {
        d.redeem_code("cc", Some(&rt(&format!("rc{n}"), "gc")))
            .unwrap()
    }));
    assert_eq!(redeemed, 1);
    let active = (0..8)
        .filter(|n| db.refresh(&format!("rc{n}")).unwrap().is_some())
        .count();
    assert_eq!(active, 1, "only the winner's refresh token exists");
    let first = (0..8)
        .find(|n| db.refresh(&format!("rc{n}")).unwrap().is_some())
        .unwrap();
    let d = Arc::clone(&db);
    let rotated = wins(Arc::new(move |n| {
        d.rotate_refresh(&format!("rc{first}"), &rt(&format!("rn{n}"), "gc"))
            .unwrap()
    }));
    assert_eq!(rotated, 1);
}

fn a_persons_grants_are_listed_with_their_last_use(db: &dyn Store) {
    let mut mine = grant("m1");
    mine.subject = "alice".into();
    mine.created_at = 5;
    let mut newer = grant("m2");
    newer.subject = "alice".into();
    newer.server = "ops".into();
    newer.created_at = 9;
    let mut theirs = grant("t1");
    theirs.subject = "bob".into();
    let mut elsewhere = grant("e1");
    elsewhere.subject = "alice".into();
    elsewhere.gateway = "other".into();
    for (g, c) in [
        (&mine, "cm1"),
        (&newer, "cm2"),
        (&theirs, "ct1"),
        (&elsewhere, "ce1"),
    ] {
        db.create_grant(g, &code(c, &g.id)).unwrap();
    }
    let ids = |v: Vec<GrantListing>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(db.grants_of("g", "alice").unwrap()), vec!["m2", "m1"]);
    assert_eq!(ids(db.grants_of("g", "bob").unwrap()), vec!["t1"]);
    assert!(db.grants_of("g", "carol").unwrap().is_empty());
    assert_eq!(db.grants_of("g", "alice").unwrap()[1].last_used_at, 0);
    db.touch_grant("m1", 50).unwrap();
    db.touch_grant("m1", 40).unwrap();
    let listed = db.grants_of("g", "alice").unwrap();
    assert_eq!(
        listed[1].last_used_at, 50,
        "a later touch wins, an earlier one is ignored"
    );
    assert_eq!(listed[1].scope, "a");
    assert_eq!(listed[1].client_id, "c");
    db.revoke_family("m2", 60, 100).unwrap();
    assert_eq!(
        ids(db.grants_of("g", "alice").unwrap()),
        vec!["m1"],
        "withdrawn grants leave the list"
    );
}

fn run_all(make: &dyn Fn(&str) -> Arc<dyn Store>) {
    family_lifecycle(make("family").as_ref());
    a_persons_grants_are_listed_with_their_last_use(make("persons").as_ref());
    revocations_are_listed_once_until_they_expire(make("revocations").as_ref());
    clients_and_sweep(make("clients").as_ref());
    pending_is_single_use(make("pending").as_ref());
    keys_round_trip(make("keys").as_ref());
    single_use_under_contention(make("contention"));
}

#[test]
fn sqlite_store_contract() {
    run_all(&|_| Arc::new(Sqlite::open(":memory:").unwrap()));
    // One process per SQLite file: the refresh lock is the in-process single-flight's alone.
    let db = Sqlite::open(":memory:").unwrap();
    let a = db.try_lock_refresh("g").unwrap();
    assert!(a.is_some() && db.try_lock_refresh("g").unwrap().is_some());
}

fn options(url: String, pool_size: u32) -> Options {
    Options {
        url,
        password: Some(scopegate_tests::postgres::PASSWORD.into()),
        pool_size,
        timeout: Duration::from_secs(10),
    }
}

#[test]
fn postgres_store_contract() {
    let server = scopegate_tests::postgres::Postgres::start();
    run_all(&|name| {
        let url = server.create_database(name);
        Arc::new(Postgres::open(&options(url, 8)).unwrap())
    });

    // Migrations are versioned and applied once: a second broker on the same database finds
    // them applied, and a schema newer than the broker is refused.
    let url = server.create_database("migrations");
    let first = Postgres::open(&options(url.clone(), 2)).unwrap();
    first
        .put_key(&KeyRow {
            kid: "k".into(),
            private_key: vec![1],
            created_at: 1,
        })
        .unwrap();
    let second = Postgres::open(&options(url.clone(), 2)).unwrap();
    assert_eq!(
        second.keys().unwrap().len(),
        1,
        "the second open kept the data"
    );
    let mut cfg: ::postgres::Config = url.parse().unwrap();
    cfg.password(scopegate_tests::postgres::PASSWORD);
    let mut c = cfg.connect(::postgres::NoTls).unwrap();
    c.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        &[],
    )
    .unwrap();
    match Postgres::open(&options(url, 2)) {
        Err(StoreError::NewerSchema {
            found: 99,
            known: 2,
        }) => {}
        Err(e) => panic!("expected NewerSchema, got {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }

    // The refresh lock is one holder across stores (replicas) on one database, until dropped.
    let url = server.create_database("locks");
    let a = Postgres::open(&options(url.clone(), 2)).unwrap();
    let b = Postgres::open(&options(url, 2)).unwrap();
    let held = a
        .try_lock_refresh("grant-1")
        .unwrap()
        .expect("free at first");
    assert!(
        b.try_lock_refresh("grant-1").unwrap().is_none(),
        "held by a"
    );
    assert!(
        a.try_lock_refresh("grant-1").unwrap().is_none(),
        "held by a's other session"
    );
    let other = b
        .try_lock_refresh("grant-2")
        .unwrap()
        .expect("another grant is free");
    drop(held);
    scopegate_tests::procs::wait_for("the lock's release", Duration::from_secs(30), || {
        b.try_lock_refresh("grant-1").unwrap()
    });
    drop(other);

    // A wrong password is an error naming the database, not a hang.
    let bad = Postgres::open(&Options {
        password: Some("wrong".into()),
        timeout: Duration::from_secs(2),
        ..options(server.url("locks"), 1)
    });
    assert!(bad.is_err());
}
