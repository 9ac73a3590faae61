//! The etcd naming backend against a real, throwaway etcd (one per test, on free ports,
//! with a temporary data directory). Skipped when no `etcd` binary is installed.
#![cfg(feature = "etcd")]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rpc_core::naming::etcd::{EtcdConfig, EtcdRegistration, EtcdResolver};
use rpc_core::naming::{Endpoint, ResolveError, Resolver, Scheme};
use tokio::sync::watch;

/// A single-node etcd that is killed, and whose data directory is removed, on drop.
struct Etcd {
    bin: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn etcd_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/etcd");
        p.is_file().then_some(p)
    })
}

fn free_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

impl Etcd {
    /// Starts etcd and waits until it is healthy; `None` (test skipped) without etcd.
    async fn start() -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            println!("SKIPPED: etcd binary not found");
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        // A port picked by binding :0 may be taken again before etcd binds it: retry.
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "rpc-etcd-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the etcd temp dir");
            let (l1, client_port) = free_port();
            let (l2, peer_port) = free_port();
            drop((l1, l2));
            let mut etcd = Etcd {
                bin: bin.clone(),
                dir,
                client_port,
                peer_port,
                child: None,
            };
            etcd.spawn();
            if etcd.wait_healthy(Duration::from_secs(20)).await {
                return Some(etcd);
            }
            let log = std::fs::read_to_string(etcd.dir.join("etcd.log")).unwrap_or_default();
            eprintln!("etcd did not become healthy; its log:\n{log}");
        }
        panic!("could not start etcd");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("open the etcd log");
        let child = Command::new(&self.bin)
            .arg("--name=n1")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=n1={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    async fn wait_healthy(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("etcd exited early: {status}");
                    self.child = None;
                    return false;
                }
            }
            if healthy(&self.url()).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data.
    async fn restart_after(&mut self, down: Duration) {
        self.kill();
        tokio::time::sleep(down).await;
        self.spawn();
        assert!(
            self.wait_healthy(Duration::from_secs(20)).await,
            "etcd did not come back"
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client of our own, behind the library's back (health checks, revoking a lease).
async fn client(url: &str) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
    etcd_client::Client::connect([url], Some(options))
        .await
        .expect("an etcd client")
}

/// etcd answers a read within a second.
async fn healthy(url: &str) -> bool {
    let mut c = client(url).await;
    matches!(
        tokio::time::timeout(Duration::from_secs(1), c.get("health", None)).await,
        Ok(Ok(_))
    )
}

fn ep(port: u16) -> Endpoint {
    Endpoint::new(Scheme::Udp, "127.0.0.1", port)
}

fn names(set: &[Endpoint]) -> Vec<String> {
    set.iter().map(|e| e.to_string()).collect()
}

/// Waits until the published set satisfies `want`; the time it took, or the last set.
async fn wait_for(
    rx: &mut watch::Receiver<Vec<Endpoint>>,
    within: Duration,
    want: impl Fn(&[Endpoint]) -> bool,
) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    let until = tokio::time::Instant::now() + within;
    loop {
        if want(&rx.borrow_and_update()) {
            return Ok(start.elapsed());
        }
        match tokio::time::timeout_at(until, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(names(&rx.borrow())),
        }
    }
}

const TTL: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_endpoint_resolves_with_metadata() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let meta = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
    let reg = EtcdRegistration::start(&url, "calc", 1, ep(7001), meta, TTL)
        .await
        .unwrap();
    assert_eq!(reg.key(), "/rpc/services/calc/1/udp://127.0.0.1:7001");

    let resolver = EtcdResolver::new(&url).unwrap();
    let rx = resolver.watch("calc", 1).await.unwrap();
    let set = rx.borrow().clone();
    assert_eq!(names(&set), ["udp://127.0.0.1:7001"]);
    assert_eq!(set[0].metadata.get("zone").map(String::as_str), Some("a"));

    // Other versions, and names sharing a prefix, are separate.
    assert!(resolver
        .watch("calc", 10)
        .await
        .unwrap()
        .borrow()
        .is_empty());
    assert!(resolver.watch("cal", 1).await.unwrap().borrow().is_empty());
    // A different prefix sees nothing.
    let other = EtcdResolver::with_config(EtcdConfig::new(&url).unwrap().prefix("/elsewhere/"));
    assert!(other.watch("calc", 1).await.unwrap().borrow().is_empty());

    reg.deregister().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registrations_are_both_seen() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let resolver = EtcdResolver::new(&url).unwrap();
    // Watching before anything is registered: an empty set that fills in.
    let mut rx = resolver.watch("calc", 1).await.unwrap();
    assert!(rx.borrow().is_empty());

    let a = EtcdRegistration::start(&url, "calc", 1, ep(7001), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let b = EtcdRegistration::start(&url, "calc", 1, ep(7002), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let took = wait_for(&mut rx, Duration::from_secs(3), |s| s.len() == 2)
        .await
        .unwrap();
    println!("watch saw both registrations after {took:?}");
    assert_eq!(
        names(&rx.borrow()),
        ["udp://127.0.0.1:7001", "udp://127.0.0.1:7002"]
    );
    // A fresh watch reads both from the range.
    let fresh = resolver.watch("calc", 1).await.unwrap();
    assert_eq!(fresh.borrow().len(), 2);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistered_endpoint_disappears_promptly() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let a = EtcdRegistration::start(&url, "calc", 1, ep(7001), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let _b = EtcdRegistration::start(&url, "calc", 1, ep(7002), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let mut rx = EtcdResolver::new(&url)
        .unwrap()
        .watch("calc", 1)
        .await
        .unwrap();
    assert_eq!(rx.borrow().len(), 2);

    let start = Instant::now();
    a.deregister().await.unwrap();
    wait_for(&mut rx, Duration::from_secs(3), |s| s.len() == 1)
        .await
        .unwrap();
    let took = start.elapsed();
    println!("deregistration seen after {took:?}");
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7002"]);
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_registration_expires_with_its_lease() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let ttl = Duration::from_secs(2);
    let reg = EtcdRegistration::start(&url, "calc", 1, ep(7001), BTreeMap::new(), ttl)
        .await
        .unwrap();
    let mut rx = EtcdResolver::new(&url)
        .unwrap()
        .watch("calc", 1)
        .await
        .unwrap();
    assert_eq!(rx.borrow().len(), 1);

    // The keepalives hold it well past its TTL.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(rx.borrow().len(), 1, "expired although kept alive");

    let start = Instant::now();
    drop(reg);
    let margin = Duration::from_secs(2);
    wait_for(&mut rx, ttl + margin, |s| s.is_empty())
        .await
        .unwrap();
    println!("dropped registration expired after {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_replaces_a_lost_lease() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let reg = EtcdRegistration::start(
        &url,
        "calc",
        1,
        ep(7001),
        BTreeMap::new(),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let mut rx = EtcdResolver::new(&url)
        .unwrap()
        .watch("calc", 1)
        .await
        .unwrap();
    let old = reg.lease_id();

    // Revoke the lease behind the registration's back: the key goes at once...
    tokio::time::timeout(Duration::from_secs(2), client(&url).await.lease_revoke(old))
        .await
        .expect("revoke in time")
        .expect("revoke");
    wait_for(&mut rx, Duration::from_secs(2), |s| s.is_empty())
        .await
        .unwrap();
    // ...and comes back with a new lease at the next keepalive (every TTL/3).
    let took = wait_for(&mut rx, Duration::from_secs(4), |s| s.len() == 1)
        .await
        .unwrap();
    println!("re-registered after {took:?}");
    assert_ne!(reg.lease_id(), old);
    reg.deregister().await.unwrap();
    wait_for(&mut rx, Duration::from_secs(2), |s| s.is_empty())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_survives_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let a = EtcdRegistration::start(&url, "calc", 1, ep(7001), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let resolver = EtcdResolver::new(&url).unwrap();
    let mut rx = resolver.watch("calc", 1).await.unwrap();
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7001"]);
    assert_eq!(resolver.watch_restarts(), 0);

    // While etcd is down the last known set stays.
    let start = Instant::now();
    etcd.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7001"]);
    etcd.restart_after(Duration::ZERO).await;
    println!("etcd back after {:?}", start.elapsed());

    // The resolver reads and watches again: it sees a new instance and a removal.
    let b = EtcdRegistration::start(&url, "calc", 1, ep(7002), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let took = wait_for(&mut rx, Duration::from_secs(10), |s| s.len() == 2)
        .await
        .unwrap();
    println!("resolver followed again {took:?} after the new registration");
    assert!(
        resolver.watch_restarts() >= 1,
        "the broken watch was replaced"
    );
    a.deregister().await.unwrap();
    wait_for(&mut rx, Duration::from_secs(3), |s| {
        names(s) == ["udp://127.0.0.1:7002"]
    })
    .await
    .unwrap();
    // Keepalives hold the second registration past its TTL.
    tokio::time::sleep(TTL + Duration::from_secs(1)).await;
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7002"]);
    drop(b);
}

#[tokio::test]
async fn unreachable_etcd_and_bad_input_give_clear_errors() {
    // Needs no etcd: a port nobody listens on.
    let (l, port) = free_port();
    drop(l);
    let url = format!("http://127.0.0.1:{port}");
    let config = EtcdConfig::new(&url)
        .unwrap()
        .request_timeout(Duration::from_secs(1));
    let err = EtcdResolver::with_config(config.clone())
        .watch("calc", 1)
        .await
        .unwrap_err();
    let ResolveError::Service(msg) = err else {
        panic!("{err:?}")
    };
    println!("unreachable etcd: {msg}");
    assert!(
        msg.contains(&format!("etcd http://127.0.0.1:{port}: range")),
        "{msg}"
    );
    let err = EtcdRegistration::start_with(config, "calc", 1, ep(1), BTreeMap::new(), TTL)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("etcd http://127.0.0.1:{port}: lease grant")),
        "{err}"
    );
    for bad in ["https://127.0.0.1:2379", "http://h:1/path", "ftp://h"] {
        let err = EtcdResolver::new(bad).unwrap_err();
        assert!(err.to_string().contains("etcd URL"), "{err}");
    }
    let r = EtcdResolver::new(&url).unwrap();
    let err = r.watch("a/b", 1).await.unwrap_err();
    assert!(err.to_string().contains("invalid service name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_watch_stays_and_a_frozen_etcd_is_noticed() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let idle = Duration::from_millis(300);
    let config = EtcdConfig::new(&url)
        .unwrap()
        .watch_idle(idle)
        .request_timeout(Duration::from_secs(1));
    let _a = EtcdRegistration::start(&url, "calc", 1, ep(7001), BTreeMap::new(), TTL)
        .await
        .unwrap();
    let resolver = EtcdResolver::with_config(config);
    let mut rx = resolver.watch("calc", 1).await.unwrap();

    // Nothing changes for many idle periods: the progress requests are answered and the
    // watch is kept.
    tokio::time::sleep(idle * 8).await;
    assert_eq!(resolver.watch_restarts(), 0);
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7001"]);

    // A frozen etcd keeps the connection open but answers nothing: the watch is given
    // up after two idle periods; the last known set stays.
    let pid = etcd.child.as_ref().unwrap().id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let frozen = Instant::now();
    tokio::time::sleep(idle * 5).await;
    let restarts = resolver.watch_restarts();
    signal("-CONT");
    assert!(restarts >= 1, "a silent watch was not noticed");
    println!("frozen etcd noticed within {:?}", frozen.elapsed());
    assert_eq!(names(&rx.borrow()), ["udp://127.0.0.1:7001"]);

    // Thawed, the resolver follows again.
    let _b = EtcdRegistration::start(&url, "calc", 1, ep(7002), BTreeMap::new(), TTL)
        .await
        .unwrap();
    wait_for(&mut rx, Duration::from_secs(5), |s| s.len() == 2)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_keeps_at_most_max_instances() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let url = etcd.url();
    let mut regs = Vec::new();
    for port in 7001..=7003 {
        regs.push(
            EtcdRegistration::start(&url, "calc", 1, ep(port), BTreeMap::new(), TTL)
                .await
                .unwrap(),
        );
    }
    let resolver = EtcdResolver::with_config(EtcdConfig::new(&url).unwrap().max_instances(2));
    let mut rx = resolver.watch("calc", 1).await.unwrap();
    assert_eq!(rx.borrow().len(), 2);
    assert_eq!(resolver.ignored_instances(), 1);
    // One more written while watching is left out too; a removal makes room again.
    regs.push(
        EtcdRegistration::start(&url, "calc", 1, ep(7004), BTreeMap::new(), TTL)
            .await
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(3);
    while resolver.ignored_instances() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(resolver.ignored_instances(), 2);
    assert_eq!(rx.borrow().len(), 2);
    let kept = rx.borrow()[0].port;
    let i = regs
        .iter()
        .position(|r| r.key().ends_with(&format!(":{kept}")))
        .unwrap();
    regs.remove(i).deregister().await.unwrap();
    // The freed place is filled from a fresh range read.
    wait_for(&mut rx, Duration::from_secs(3), |s| {
        s.len() == 2 && s.iter().all(|e| e.port != kept)
    })
    .await
    .unwrap();
}
