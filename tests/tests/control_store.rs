//! The store conformance suite: every case runs against the embedded SQLite store and against a
//! real etcd (started on free loopback ports, stopped after the test).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pea_control_store::{
    etcd::EtcdStore, sqlite::SqliteStore, EventKind, ListOptions, Store, StoreError,
};
use pea_tests::control_etcd::Etcd;

/// Keeps the backend's resources (temp dir or etcd process) alive for the test.
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Etcd(Etcd),
}

async fn sqlite() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    (Arc::new(store), Guard::Dir(dir))
}

async fn etcd() -> (Arc<dyn Store>, Guard) {
    let etcd = tokio::task::spawn_blocking(Etcd::start)
        .await
        .unwrap()
        .unwrap();
    let store = EtcdStore::connect(etcd.url()).await.unwrap();
    (Arc::new(store), Guard::Etcd(etcd))
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod etcd_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = super::etcd().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

conformance!(
    create_is_create_if_absent,
    update_is_compare_and_swap,
    delete_is_compare_and_swap,
    list_by_prefix_with_pagination_at_one_revision,
    list_at_an_older_revision,
    watch_replays_history_then_follows_live_changes,
    compaction_makes_old_revisions_too_old,
    concurrent_writers_get_distinct_revisions_and_one_cas_winner,
);

async fn create_is_create_if_absent(s: Arc<dyn Store>) {
    let a = s.create("/c/a", b"one".to_vec()).await.unwrap();
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!(a.value, b"one");
    let (got, rev) = s.get("/c/a").await.unwrap();
    assert_eq!(got.as_ref(), Some(&a));
    assert!(rev >= a.mod_revision);
    match s.create("/c/a", b"two".to_vec()).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/c/a"),
        other => panic!("second create: {other:?}"),
    }
    // The failed create changed nothing.
    assert_eq!(s.get("/c/a").await.unwrap().0.unwrap().value, b"one");
    assert_eq!(s.get("/c/missing").await.unwrap().0, None);
    let b = s.create("/c/b", b"x".to_vec()).await.unwrap();
    assert!(b.mod_revision > a.mod_revision);
}

async fn update_is_compare_and_swap(s: Arc<dyn Store>) {
    let a = s.create("/u/a", b"v1".to_vec()).await.unwrap();
    let b = s
        .update("/u/a", b"v2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert!(b.mod_revision > a.mod_revision);
    assert_eq!(b.create_revision, a.create_revision);
    match s.update("/u/a", b"v3".to_vec(), a.mod_revision).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected, actual),
                ("/u/a", a.mod_revision, b.mod_revision)
            );
        }
        other => panic!("stale update: {other:?}"),
    }
    assert_eq!(s.get("/u/a").await.unwrap().0.unwrap().value, b"v2");
    match s.update("/u/missing", b"v".to_vec(), 1).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/u/missing"),
        other => panic!("update of missing key: {other:?}"),
    }
}

async fn delete_is_compare_and_swap(s: Arc<dyn Store>) {
    let a = s.create("/d/a", b"v1".to_vec()).await.unwrap();
    match s.delete("/d/a", Some(a.mod_revision + 1000)).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, a.mod_revision),
        other => panic!("stale delete: {other:?}"),
    }
    let gone = s.delete("/d/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!(gone.value, b"v1");
    assert!(gone.mod_revision > a.mod_revision);
    assert_eq!(s.get("/d/a").await.unwrap().0, None);
    assert!(matches!(
        s.delete("/d/a", None).await,
        Err(StoreError::NotFound { .. })
    ));
    s.create("/d/b", b"x".to_vec()).await.unwrap();
    assert_eq!(s.delete("/d/b", None).await.unwrap().value, b"x");
    // A deleted key can be created again, with a fresh create revision.
    let again = s.create("/d/a", b"v2".to_vec()).await.unwrap();
    assert!(again.create_revision > gone.mod_revision);
}

async fn list_by_prefix_with_pagination_at_one_revision(s: Arc<dyn Store>) {
    for i in 0..5 {
        s.create(&format!("/l/pods/{i}"), vec![i as u8])
            .await
            .unwrap();
    }
    s.create("/l/podsx", b"not under the prefix".to_vec())
        .await
        .unwrap();
    s.create("/l/nodes/1", b"n".to_vec()).await.unwrap();
    let all = s.list("/l/pods/", &ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all.items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/l/pods/0",
            "/l/pods/1",
            "/l/pods/2",
            "/l/pods/3",
            "/l/pods/4"
        ]
    );
    assert!(!all.more);

    let page1 = s
        .list(
            "/l/pods/",
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 2);
    assert!(page1.more);
    // Writes after the first page do not show in later pages read at the same revision.
    s.create("/l/pods/3a", b"late".to_vec()).await.unwrap();
    s.delete("/l/pods/4", None).await.unwrap();
    let mut seen: Vec<String> = page1.items.iter().map(|k| k.key.clone()).collect();
    let mut after = page1.items.last().map(|k| k.key.clone());
    loop {
        let page = s
            .list(
                "/l/pods/",
                &ListOptions {
                    revision: Some(page1.revision),
                    limit: Some(2),
                    start_after: after.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, page1.revision);
        seen.extend(page.items.iter().map(|k| k.key.clone()));
        after = page.items.last().map(|k| k.key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "/l/pods/0",
            "/l/pods/1",
            "/l/pods/2",
            "/l/pods/3",
            "/l/pods/4"
        ]
    );
    let now = s.list("/l/pods/", &ListOptions::default()).await.unwrap();
    let keys: Vec<_> = now.items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/l/pods/0",
            "/l/pods/1",
            "/l/pods/2",
            "/l/pods/3",
            "/l/pods/3a"
        ]
    );
    assert!(now.revision > page1.revision);
}

async fn list_at_an_older_revision(s: Arc<dyn Store>) {
    let a = s.create("/o/a", b"1".to_vec()).await.unwrap();
    let b = s.create("/o/b", b"1".to_vec()).await.unwrap();
    let a2 = s
        .update("/o/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    s.delete("/o/b", None).await.unwrap();
    s.create("/o/c", b"1".to_vec()).await.unwrap();
    let at = |rev| {
        let s = s.clone();
        async move {
            let r = s
                .list(
                    "/o/",
                    &ListOptions {
                        revision: Some(rev),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            r.items
                .into_iter()
                .map(|k| (k.key, k.value))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        at(b.mod_revision).await,
        [
            ("/o/a".into(), b"1".to_vec()),
            ("/o/b".into(), b"1".to_vec())
        ]
    );
    assert_eq!(
        at(a2.mod_revision).await,
        [
            ("/o/a".into(), b"2".to_vec()),
            ("/o/b".into(), b"1".to_vec())
        ]
    );
    let head = s.current_revision().await.unwrap();
    assert_eq!(
        at(head).await,
        [
            ("/o/a".into(), b"2".to_vec()),
            ("/o/c".into(), b"1".to_vec())
        ]
    );
    assert!(matches!(
        s.list(
            "/o/",
            &ListOptions {
                revision: Some(head + 100),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::FutureRevision { .. })
    ));
}

async fn watch_replays_history_then_follows_live_changes(s: Arc<dyn Store>) {
    let start = s.current_revision().await.unwrap();
    let a = s.create("/w/a", b"1".to_vec()).await.unwrap();
    s.create("/x/outside", b"ignored".to_vec()).await.unwrap();
    let a2 = s
        .update("/w/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let mut w = s.watch("/w/", start).await.unwrap();
    let e1 = next(&mut w).await;
    assert_eq!(
        (e1.kind, e1.kv.key.as_str(), e1.kv.value.as_slice()),
        (EventKind::Put, "/w/a", &b"1"[..])
    );
    assert_eq!(e1.prev, None);
    let e2 = next(&mut w).await;
    assert_eq!(e2.kv.mod_revision, a2.mod_revision);
    assert_eq!(
        e2.prev.as_ref().map(|p| p.value.as_slice()),
        Some(&b"1"[..])
    );
    // Live changes after the watch started.
    let b = s.create("/w/b", b"live".to_vec()).await.unwrap();
    let del = s.delete("/w/a", None).await.unwrap();
    s.create("/x/outside2", b"ignored".to_vec()).await.unwrap();
    let e3 = next(&mut w).await;
    assert_eq!(
        (e3.kv.key.as_str(), e3.kv.mod_revision),
        ("/w/b", b.mod_revision)
    );
    let e4 = next(&mut w).await;
    assert_eq!(e4.kind, EventKind::Delete);
    assert_eq!(
        (e4.kv.key.as_str(), e4.kv.mod_revision),
        ("/w/a", del.mod_revision)
    );
    assert_eq!(e4.kv.value, b"2", "a delete event carries the last value");
    assert_eq!(e4.prev.map(|p| p.mod_revision), Some(a2.mod_revision));
    // Watching from the newest revision only sees later changes.
    let mut w2 = s.watch("/w/", del.mod_revision).await.unwrap();
    let c = s.create("/w/c", b"c".to_vec()).await.unwrap();
    let e5 = next(&mut w2).await;
    assert_eq!(e5.kv.mod_revision, c.mod_revision);
}

async fn next(w: &mut pea_control_store::Watch) -> pea_control_store::Event {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event within 10 s")
        .expect("watch open")
        .expect("watch event")
}

async fn compaction_makes_old_revisions_too_old(s: Arc<dyn Store>) {
    let a = s.create("/k/a", b"1".to_vec()).await.unwrap();
    let a2 = s
        .update("/k/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let b = s.create("/k/b", b"b".to_vec()).await.unwrap();
    s.delete("/k/b", None).await.unwrap();
    let keep = s.create("/k/c", b"c".to_vec()).await.unwrap();
    let after = s
        .update("/k/c", b"c2".to_vec(), keep.mod_revision)
        .await
        .unwrap();
    s.compact(keep.mod_revision).await.unwrap();

    let old = ListOptions {
        revision: Some(a2.mod_revision),
        ..Default::default()
    };
    assert!(
        matches!(s.list("/k/", &old).await, Err(StoreError::Compacted { .. })),
        "list below compaction"
    );
    assert!(
        matches!(
            s.watch("/k/", b.mod_revision - 1).await,
            Err(StoreError::Compacted { .. })
        ),
        "watch below compaction"
    );
    // The compacted revision itself and everything newer still read.
    let at = s
        .list(
            "/k/",
            &ListOptions {
                revision: Some(keep.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let vals: Vec<_> = at
        .items
        .iter()
        .map(|k| (k.key.as_str(), k.value.as_slice()))
        .collect();
    assert_eq!(vals, [("/k/a", &b"2"[..]), ("/k/c", &b"c"[..])]);
    let head = s.list("/k/", &ListOptions::default()).await.unwrap();
    let vals: Vec<_> = head
        .items
        .iter()
        .map(|k| (k.key.as_str(), k.value.as_slice()))
        .collect();
    assert_eq!(vals, [("/k/a", &b"2"[..]), ("/k/c", &b"c2"[..])]);
    let mut w = s.watch("/k/", keep.mod_revision).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.kv.mod_revision, after.mod_revision);
    assert_eq!(
        e.prev.map(|p| p.value),
        Some(b"c".to_vec()),
        "previous value survives compaction"
    );
    // Compacting again at or below the compaction is itself too old.
    assert!(matches!(
        s.compact(a.mod_revision).await,
        Err(StoreError::Compacted { .. })
    ));
}

async fn concurrent_writers_get_distinct_revisions_and_one_cas_winner(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create(&format!("/p/{i:03}"), vec![1; 64]).await
        }));
    }
    let mut revs = HashSet::new();
    for t in tasks {
        revs.insert(t.await.unwrap().unwrap().mod_revision);
    }
    assert_eq!(revs.len(), 64, "every write has its own revision");
    let base = s.create("/p/cas", b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update("/p/cas", vec![i], base.mod_revision).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one compare-and-swap wins");
}

/// The embedded store keeps every acknowledged write across a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let last = {
        let s = SqliteStore::open(&path).unwrap();
        let a = s.create("/r/a", b"1".to_vec()).await.unwrap();
        s.update("/r/a", b"2".to_vec(), a.mod_revision)
            .await
            .unwrap()
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), last.mod_revision);
    assert_eq!(s.get("/r/a").await.unwrap().0.unwrap(), last);
    let b = s.create("/r/b", b"x".to_vec()).await.unwrap();
    assert_eq!(b.mod_revision, last.mod_revision + 1);
}
