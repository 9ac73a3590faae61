//! The rpcbind client (`rpc_transport_tcp::rpcbind`, generated from `proto/rpcbind.x`)
//! against the real rpcbind, over TCP and over UDP; and our server, registered with it,
//! found by `rpcinfo` through rpcbind.
//!
//! The outer test creates a private network namespace with its loopback up, starts
//! `rpcbind -f` inside it (in a private mount namespace with its own `/run`, so its
//! lock file, socket and state never touch the machine's rpcbind), and runs the ignored
//! inner tests of this binary inside the namespace with `ip netns exec`. The namespace
//! is deleted and rpcbind killed whatever happens.
//!
//! Needs root, `ip` (iproute2), `unshare` and `rpcbind`; without them the test prints
//! SKIPPED, unless `RPC_REQUIRE_ONC_PEERS=1` (then it fails).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::server::{Service, ServiceFuture};
use rpc_core::transport::{Channel, Listener};
use rpc_core::{Bytes, CallContext, InterfaceInfo, Server, Status};
use rpc_transport_tcp::rpcbind::{
    RegisterError, Rpcbind, IPPROTO_TCP, IPPROTO_UDP, PMAPPORT, PMAP_PROG,
};
use rpc_transport_tcp::OncTcpListener;
use rpc_transport_udp::OncUdpListener;

const LIMIT: Duration = Duration::from_secs(20);
/// The environment variable the outer test sets for the inner ones.
const INSIDE: &str = "RPCBIND_TEST_NAMESPACE";
const PROG: u32 = 0x2000_0777;

fn require_peers() -> bool {
    std::env::var("RPC_REQUIRE_ONC_PEERS").as_deref() == Ok("1")
}

fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The namespace and the rpcbind in it; both go on drop.
struct Namespace {
    name: String,
    rpcbind: Option<Child>,
}

impl Namespace {
    fn create(rpcbind: &std::path::Path) -> Result<Self, String> {
        let name = format!("rpcbt{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let mut ns = Namespace {
            name,
            rpcbind: None,
        };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        // `exec` all the way down: the child is rpcbind itself, so killing it ends it.
        let script = format!("mount -t tmpfs tmpfs /run && exec {} -f", rpcbind.display());
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "unshare", "-m", "sh", "-c", &script,
            ])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting rpcbind: {e}"))?;
        ns.rpcbind = Some(child);
        Ok(ns)
    }

    /// Runs the ignored test `test` of this binary inside the namespace.
    fn run_test(&self, test: &str) -> Result<String, String> {
        let exe = std::env::current_exe().map_err(|e| format!("test binary path: {e}"))?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(&exe)
            .args(["--exact", test, "--ignored", "--nocapture"])
            .env(INSIDE, &self.name)
            .output()
            .map_err(|e| format!("running {test}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout.contains("1 passed") {
            Ok(stdout)
        } else {
            Err(format!("inner test {test} failed:\n{stdout}\n{stderr}"))
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.rpcbind.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn rpcbind_dump_set_getport_unset_over_tcp_and_udp() {
    let tools = (
        find_tool("rpcbind"),
        find_tool("ip"),
        find_tool("unshare"),
        find_tool("rpcinfo"),
        is_root(),
    );
    let (Some(rpcbind), Some(_), Some(_), Some(_), true) = tools else {
        assert!(
            !require_peers(),
            "rpcbind, ip, unshare, rpcinfo or root missing ({tools:?}) and RPC_REQUIRE_ONC_PEERS=1"
        );
        eprintln!(
            "SKIPPED: needs root, ip, unshare, rpcbind and rpcinfo (Debian package rpcbind): {tools:?}"
        );
        return;
    };
    let ns = Namespace::create(&rpcbind).expect("namespace with rpcbind");
    for test in [
        "inside_namespace_tcp",
        "inside_namespace_udp",
        "inside_namespace_registered_server_found_by_rpcinfo",
    ] {
        let out = ns.run_test(test).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("checked against rpcbind"), "{out}");
    }
}

/// The rpcbind of the namespace, once it answers (it has just been started).
async fn ready<C: Channel>(rpcbind: &Rpcbind<C>) {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), rpcbind.null()).await {
            Ok(Ok(())) => return,
            other => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "rpcbind does not answer: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The checks, over whichever channel; `vers` keeps the TCP and UDP runs apart, `prot`
/// and `netid` name the channel's protocol (GETADDR answers for that one).
async fn check<C: Channel>(rpcbind: Rpcbind<C>, vers: u32, prot: u32, netid: &str) {
    ready(&rpcbind).await;

    // DUMP lists rpcbind itself: program 100000, version 2, on port 111 for both protocols.
    let dump = rpcbind.dump().await.expect("dump");
    for prot in [IPPROTO_TCP, IPPROTO_UDP] {
        assert!(
            dump.iter().any(|m| m.prog == PMAP_PROG
                && m.vers == 2
                && m.prot == prot
                && m.port == PMAPPORT),
            "rpcbind itself (prot {prot}) is not in {dump:?}"
        );
    }
    assert!(!dump.iter().any(|m| m.prog == PROG), "{dump:?}");

    // SET, then GETPORT finds the port for that protocol only.
    let other = if prot == IPPROTO_TCP {
        IPPROTO_UDP
    } else {
        IPPROTO_TCP
    };
    assert!(rpcbind.set(PROG, vers, prot, 4321).await.expect("set"));
    assert_eq!(
        rpcbind.getport(PROG, vers, prot).await.expect("getport"),
        4321
    );
    assert_eq!(
        rpcbind.getport(PROG, vers, other).await.expect("getport"),
        0
    );
    // A second SET of the same mapping is refused.
    assert!(!rpcbind
        .set(PROG, vers, prot, 4322)
        .await
        .expect("set again"));
    // Version 3 and 4 see it too: the universal address ends in the port (16·256 + 225).
    let uaddr = rpcbind.getaddr(PROG, vers).await.expect("getaddr");
    assert!(uaddr.ends_with(".16.225"), "universal address {uaddr:?}");
    let dump4 = rpcbind.dump_v4().await.expect("dump v4");
    assert!(
        dump4
            .iter()
            .any(|r| r.r_prog == PROG && r.r_vers == vers && r.r_netid == netid),
        "{dump4:?}"
    );
    assert!(
        dump4.iter().any(|r| r.r_prog == PMAP_PROG && r.r_vers == 4),
        "{dump4:?}"
    );

    // UNSET removes it; GETPORT answers 0 again. (rpcbind answers a second UNSET
    // `true` as well, so that is not checked.)
    assert!(rpcbind.unset(PROG, vers).await.expect("unset"));
    assert_eq!(rpcbind.getport(PROG, vers, prot).await.expect("getport"), 0);
    assert_eq!(rpcbind.getaddr(PROG, vers).await.expect("getaddr"), "");

    // register / unregister: two versions, both protocols.
    let programs = [(PROG, vers), (PROG, vers + 100)];
    rpcbind
        .register(&programs, Some(5001), Some(5002))
        .await
        .expect("register");
    for &(p, v) in &programs {
        assert_eq!(
            rpcbind.getport(p, v, IPPROTO_TCP).await.expect("getport"),
            5001
        );
        assert_eq!(
            rpcbind.getport(p, v, IPPROTO_UDP).await.expect("getport"),
            5002
        );
    }
    match rpcbind.register(&programs, Some(5003), None).await {
        Err(RegisterError::Refused {
            prog,
            vers: v,
            prot,
        }) => {
            assert_eq!((prog, v, prot), (PROG, vers, IPPROTO_TCP));
        }
        other => panic!("registering twice: {other:?}"),
    }
    rpcbind.unregister(&programs).await.expect("unregister");
    for &(p, v) in &programs {
        for prot in [IPPROTO_TCP, IPPROTO_UDP] {
            assert_eq!(rpcbind.getport(p, v, prot).await.expect("getport"), 0);
        }
    }
    let dump = rpcbind.dump().await.expect("dump");
    assert!(!dump.iter().any(|m| m.prog == PROG), "{dump:?}");
    println!("checked against rpcbind");
}

fn rpcbind_addr() -> Option<SocketAddr> {
    // Only inside the outer test's namespace: never against the machine's own rpcbind.
    if std::env::var_os(INSIDE).is_none() {
        eprintln!("not inside the test namespace: nothing to do");
        return None;
    }
    Some(SocketAddr::from(([127, 0, 0, 1], 111)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rpcbind_dump_set_getport_unset_over_tcp_and_udp inside a namespace"]
async fn inside_namespace_tcp() {
    let Some(addr) = rpcbind_addr() else { return };
    tokio::time::timeout(LIMIT, check(Rpcbind::tcp(addr), 1, IPPROTO_TCP, "tcp"))
        .await
        .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rpcbind_dump_set_getport_unset_over_tcp_and_udp inside a namespace"]
async fn inside_namespace_udp() {
    let Some(addr) = rpcbind_addr() else { return };
    tokio::time::timeout(LIMIT, check(Rpcbind::udp(addr), 2, IPPROTO_UDP, "udp"))
        .await
        .expect("in time");
}

/// A program with no procedures of its own: the ONC adapters answer its NULL procedure,
/// which is all `rpcinfo` calls.
struct Empty;

static EMPTY: InterfaceInfo = InterfaceInfo {
    name: "Empty",
    id: PROG,
    version: 7,
    procedures: &[],
    default_semantics: None,
};

impl Service for Empty {
    fn info(&self) -> &'static InterfaceInfo {
        &EMPTY
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, _args: Bytes) -> ServiceFuture {
        Box::pin(async { Err(Status::application(1, "no procedures")) })
    }
}

/// `rpcinfo -T NETID 127.0.0.1 PROG VERS`: asks rpcbind for the address, then pings.
fn rpcinfo_ping(netid: &str) -> std::process::Output {
    Command::new(find_tool("rpcinfo").expect("rpcinfo"))
        .args([
            "-T",
            netid,
            "127.0.0.1",
            &PROG.to_string(),
            &EMPTY.version.to_string(),
        ])
        .output()
        .expect("running rpcinfo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rpcbind_dump_set_getport_unset_over_tcp_and_udp inside a namespace"]
async fn inside_namespace_registered_server_found_by_rpcinfo() {
    let Some(addr) = rpcbind_addr() else { return };
    tokio::time::timeout(LIMIT, async {
        let tcp = OncTcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let udp = OncUdpListener::bind("127.0.0.1:0").await.expect("bind udp");
        let (tcp_port, udp_port) = (tcp.local_addr().port(), udp.local_addr().port());
        let server_tcp = Server::builder()
            .add_service(Empty)
            .serve(tcp)
            .expect("serve");
        let server_udp = Server::builder()
            .add_service(Empty)
            .serve(udp)
            .expect("serve");

        let rpcbind = Rpcbind::udp(addr);
        ready(&rpcbind).await;
        let programs = [(EMPTY.id, EMPTY.version)];
        // Before registering, rpcinfo (through rpcbind) does not find the program.
        let out = tokio::task::spawn_blocking(|| rpcinfo_ping("tcp"))
            .await
            .expect("join");
        assert!(!out.status.success(), "{out:?}");

        rpcbind
            .register(&programs, Some(tcp_port), Some(udp_port))
            .await
            .expect("register");
        // Our own lookup finds the listeners' addresses.
        let found = rpcbind.lookup(EMPTY.id, EMPTY.version, IPPROTO_TCP).await;
        assert_eq!(found.expect("lookup").map(|a| a.port()), Some(tcp_port));
        let found = rpcbind.lookup(EMPTY.id, EMPTY.version, IPPROTO_UDP).await;
        assert_eq!(found.expect("lookup").map(|a| a.port()), Some(udp_port));
        for netid in ["tcp", "udp"] {
            let out = tokio::task::spawn_blocking(move || rpcinfo_ping(netid))
                .await
                .expect("join");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("ready and waiting"),
                "rpcinfo -T {netid}: {out:?}"
            );
        }

        rpcbind.unregister(&programs).await.expect("unregister");
        let out = tokio::task::spawn_blocking(|| rpcinfo_ping("udp"))
            .await
            .expect("join");
        assert!(!out.status.success(), "{out:?}");
        server_tcp.shutdown().await;
        server_udp.shutdown().await;
    })
    .await
    .expect("in time");
    println!("checked against rpcbind");
}
