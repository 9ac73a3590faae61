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

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::naming::{Endpoint, ResolveError, Resolver, Scheme};
use rpc_core::server::{Service, ServiceFuture};
use rpc_core::transport::{Channel, Listener};
use rpc_core::{
    client::ClientConfig, Bytes, CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo,
    RpcError, Server, Status,
};
use rpc_transport_tcp::rpcbind::{
    Protocol, RegisterError, RegisterWithRpcbind, RegistrationState, Rpcbind, RpcbindResolver,
    IPPROTO_TCP, IPPROTO_UDP, PMAPPORT, PMAP_PROG,
};
use rpc_transport_tcp::{OncTcpChannel, OncTcpListener};
use rpc_transport_udp::{OncUdpChannel, OncUdpListener};
use support::{find_tool, require_peers};

const LIMIT: Duration = Duration::from_secs(20);
/// The environment variable the outer test sets for the inner ones.
const INSIDE: &str = "RPCBIND_TEST_NAMESPACE";
const PROG: u32 = 0x2000_0777;

/// The environment variable naming the rpcgen C server for the inner test.
const DEMO_SERVER: &str = "RPCBIND_TEST_DEMO_SERVER";

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

    /// Runs the ignored test `test` of this binary inside the namespace, with the
    /// rpcgen C server's path in the environment.
    fn run_test(&self, test: &str, demo_server: &std::path::Path) -> Result<String, String> {
        let exe = std::env::current_exe().map_err(|e| format!("test binary path: {e}"))?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(&exe)
            .args(["--exact", test, "--ignored", "--nocapture"])
            .env(INSIDE, &self.name)
            .env(DEMO_SERVER, demo_server)
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
    let rpcgen = support::have_rpcgen_toolchain();
    let (Some(rpcbind), Some(_), Some(_), Some(_), true, true) = (
        tools.0.clone(),
        tools.1.clone(),
        tools.2.clone(),
        tools.3.clone(),
        tools.4,
        rpcgen,
    ) else {
        assert!(
            !require_peers(),
            "rpcbind, ip, unshare, rpcinfo, the rpcgen toolchain or root missing ({tools:?}, rpcgen {rpcgen}) and RPC_REQUIRE_ONC_PEERS=1"
        );
        eprintln!(
            "SKIPPED: needs root, ip, unshare, rpcbind and rpcinfo (Debian package rpcbind), rpcgen, gcc and libtirpc-dev: {tools:?}, rpcgen {rpcgen}"
        );
        return;
    };
    // The rpcgen C server: rpcgen's own main (which registers with rpcbind for TCP and
    // UDP), its dispatch, and DESCRIBE from tests/onc/demo_server.c.
    let demo_server = support::build_demo_program(
        "demo_server",
        &["demo_server.c"],
        &[("-c", "demo_xdr.c"), ("-s tcp -s udp", "demo_svc.c")],
    );
    let ns = Namespace::create(&rpcbind).expect("namespace with rpcbind");
    for test in [
        "inside_namespace_tcp",
        "inside_namespace_udp",
        "inside_namespace_registered_server_found_by_rpcinfo",
        "inside_namespace_hook_registers_while_serving",
        "inside_namespace_our_client_calls_rpcgen_server",
    ] {
        let out = ns
            .run_test(test, &demo_server)
            .unwrap_or_else(|e| panic!("{e}"));
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

/// Waits until `resolver` finds (`prog`, `vers`) with endpoints of every scheme of
/// `schemes`; its receiver.
async fn resolve_until(
    resolver: &RpcbindResolver,
    prog: u32,
    vers: u32,
    schemes: &[Scheme],
) -> tokio::sync::watch::Receiver<Vec<Endpoint>> {
    let started = Instant::now();
    loop {
        match resolver.watch(&prog.to_string(), vers).await {
            Ok(rx) => {
                let have = rx.borrow().iter().map(|e| e.scheme).collect::<Vec<_>>();
                if schemes.iter().all(|s| have.contains(s)) {
                    return rx;
                }
            }
            Err(ResolveError::NotFound { .. }) => {}
            Err(e) => panic!("resolving {prog}: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "program {prog:#x} v{vers} never appeared in rpcbind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the receiver's set satisfies `done`.
async fn wait_for_set(
    rx: &mut tokio::sync::watch::Receiver<Vec<Endpoint>>,
    what: &str,
    done: impl Fn(&[Endpoint]) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|set| done(set)))
        .await
        .map(|r| r.is_ok());
    match waited {
        Ok(true) => {}
        Ok(false) => panic!("{what}: the resolver stopped"),
        Err(_) => panic!("{what}: the set is still {:?}", *rx.borrow()),
    }
}

/// Waits until the hook's registration reaches a state `done` accepts; that state.
async fn wait_for_state(
    state: &mut tokio::sync::watch::Receiver<RegistrationState>,
    done: impl Fn(&RegistrationState) -> bool,
) -> RegistrationState {
    let waited = tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| done(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(Ok(got)) => got,
        Ok(Err(_)) => panic!("the hook was dropped"),
        Err(_) => panic!("registration stuck at {:?}", *state.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rpcbind_dump_set_getport_unset_over_tcp_and_udp inside a namespace"]
async fn inside_namespace_hook_registers_while_serving() {
    let Some(addr) = rpcbind_addr() else { return };
    tokio::time::timeout(LIMIT, async {
        let rpcbind = Rpcbind::udp(addr);
        ready(&rpcbind).await;
        // A mapping left behind by an earlier run of the program (version 7, TCP).
        assert!(rpcbind.set(PROG, 7, IPPROTO_TCP, 4444).await.expect("set"));

        let tcp = OncTcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let udp = OncUdpListener::bind("127.0.0.1:0").await.expect("bind udp");
        let (tcp_port, udp_port) = (tcp.local_addr().port(), udp.local_addr().port());
        let tcp_hook = RegisterWithRpcbind::new(Protocol::Tcp).rpcbind_addr(addr);
        let udp_hook = RegisterWithRpcbind::new(Protocol::Udp).rpcbind_addr(addr);
        let (mut tcp_state, mut udp_state) = (tcp_hook.state(), udp_hook.state());
        let server_tcp = Server::builder()
            .add_service(Empty)
            .hook(tcp_hook)
            .serve(tcp)
            .expect("serve");
        let server_udp = Server::builder()
            .add_service(Empty)
            .hook(udp_hook)
            .serve(udp)
            .expect("serve");
        for state in [&mut tcp_state, &mut udp_state] {
            let got = wait_for_state(state, |s| *s != RegistrationState::Pending).await;
            assert_eq!(got, RegistrationState::Registered);
        }

        // Registered under the listeners' ports (the stale TCP mapping replaced), and
        // found there by our resolver and by rpcinfo.
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_TCP)
                .await
                .expect("getport"),
            tcp_port
        );
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_UDP)
                .await
                .expect("getport"),
            udp_port
        );
        let resolver = RpcbindResolver::new(addr).refresh(Duration::from_millis(50));
        let mut found = resolve_until(&resolver, PROG, 7, &[Scheme::OncTcp, Scheme::OncUdp]).await;
        let expected = vec![
            Endpoint::new(Scheme::OncTcp, "127.0.0.1", tcp_port),
            Endpoint::new(Scheme::OncUdp, "127.0.0.1", udp_port),
        ];
        assert_eq!(*found.borrow(), expected);
        for netid in ["tcp", "udp"] {
            let out = tokio::task::spawn_blocking(move || rpcinfo_ping(netid))
                .await
                .expect("join");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("ready and waiting"),
                "rpcinfo -T {netid}: {out:?}"
            );
        }

        // A second server for the same program and protocol that may not replace the
        // mapping is refused, and leaves the first one's alone.
        let other = OncTcpListener::bind("127.0.0.1:0").await.expect("bind");
        let refused_hook = RegisterWithRpcbind::new(Protocol::Tcp)
            .rpcbind_addr(addr)
            .replace_existing(false);
        let mut refused_state = refused_hook.state();
        let refused = Server::builder()
            .add_service(Empty)
            .hook(refused_hook)
            .serve(other)
            .expect("serve");
        let got = wait_for_state(&mut refused_state, |s| *s != RegistrationState::Pending).await;
        assert_eq!(
            got,
            RegistrationState::Refused {
                prog: PROG,
                vers: 7
            }
        );
        drop(refused); // Dropped, not shut down: it unregisters nothing.
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_TCP)
                .await
                .expect("getport"),
            tcp_port
        );

        // Shutting the TCP server down removes its mapping only; the resolver follows.
        server_tcp.shutdown().await;
        assert_eq!(*tcp_state.borrow(), RegistrationState::Unregistered);
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_TCP)
                .await
                .expect("getport"),
            0
        );
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_UDP)
                .await
                .expect("getport"),
            udp_port
        );
        wait_for_set(&mut found, "after the TCP server stopped", |set| {
            set == [Endpoint::new(Scheme::OncUdp, "127.0.0.1", udp_port)]
        })
        .await;
        server_udp.shutdown().await;
        assert_eq!(
            rpcbind
                .getport(PROG, 7, IPPROTO_UDP)
                .await
                .expect("getport"),
            0
        );
        wait_for_set(
            &mut found,
            "after both servers stopped",
            <[Endpoint]>::is_empty,
        )
        .await;
        assert!(matches!(
            resolver.watch(&PROG.to_string(), 7).await,
            Err(ResolveError::NotFound { .. })
        ));
    })
    .await
    .expect("in time");
    println!("checked against rpcbind");
}

/// The code our compiler generates from `tests/onc/demo.x` (see build.rs).
mod demo {
    rpc_core::include_idl!("demo");
}

/// The rpcgen C server, killed on drop.
struct CServer(Child);

impl Drop for CServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The three records the C client of onc_rpcgen.rs sends too, with the answers.
fn records() -> Vec<(demo::Record, &'static str, i32)> {
    use demo::{Point, Record, Shape};
    vec![
        (
            Record {
                name: "hello".into(),
                values: vec![1, 2, 3],
                origin: Some(Point { x: 5, y: 6 }),
                s: Shape::Radius(7),
            },
            "hello values=[1, 2, 3] origin=5,6 shape=radius 7",
            6,
        ),
        (
            Record {
                name: "empty".into(),
                values: vec![],
                origin: None,
                s: Shape::Center(Point { x: -1, y: 2 }),
            },
            "empty values=[] origin=none shape=center -1,2",
            0,
        ),
        (
            Record {
                name: "other".into(),
                values: vec![40, 2],
                origin: None,
                s: Shape::Default { discriminant: 9 },
            },
            "other values=[40, 2] origin=none shape=kind 9",
            42,
        ),
    ]
}

async fn describe_all<C: Channel>(client: &demo::DemoProgClient<C>, over: &str) {
    for (record, text, total) in records() {
        let summary = client
            .describe(record)
            .await
            .unwrap_or_else(|e| panic!("describe over {over}: {e}"));
        assert_eq!(
            (summary.text.as_str(), summary.total),
            (text, total),
            "over {over}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rpcbind_dump_set_getport_unset_over_tcp_and_udp inside a namespace"]
async fn inside_namespace_our_client_calls_rpcgen_server() {
    let Some(addr) = rpcbind_addr() else { return };
    let exe = std::env::var_os(DEMO_SERVER).expect("the C server's path");
    tokio::time::timeout(LIMIT, async {
        let rpcbind = Rpcbind::udp(addr);
        ready(&rpcbind).await;
        let server = CServer(
            Command::new(exe)
                .stdin(Stdio::null())
                .spawn()
                .expect("starting the rpcgen server"),
        );
        let prog = demo::DEMO_PROG_INTERFACE.id;
        let vers = demo::DEMO_PROG_INTERFACE.version;
        // rpcgen's main registers with rpcbind at ports the kernel chose: our resolver
        // finds them by program number (and by name through /etc/rpc-style lookup in
        // the unit tests).
        let resolver = RpcbindResolver::new(addr);
        let found = resolve_until(&resolver, prog, vers, &[Scheme::OncTcp, Scheme::OncUdp]).await;
        let endpoints = found.borrow().clone();
        for endpoint in &endpoints {
            let at = endpoint.socket_addr().expect("an IP address");
            match endpoint.scheme {
                Scheme::OncTcp => {
                    describe_all(&demo::DemoProgClient::new(OncTcpChannel::new(at)), "tcp").await
                }
                Scheme::OncUdp => {
                    describe_all(&demo::DemoProgClient::new(OncUdpChannel::new(at)), "udp").await
                }
                other => panic!("unexpected scheme {other:?}"),
            }
        }
        // A balanced client over the resolver's set, TCP endpoints only.
        let client = Client::balanced(
            found,
            |e: &Endpoint| {
                (e.scheme == Scheme::OncTcp)
                    .then(|| e.socket_addr().map(OncTcpChannel::new))
                    .flatten()
            },
            ClientConfig::default(),
        );
        describe_all(
            &demo::DemoProgClient::from_client(client),
            "a balanced client",
        )
        .await;

        // A procedure the C server does not have: PROC_UNAVAIL from libtirpc's dispatch.
        let raw = Client::new(OncTcpChannel::new(
            endpoints
                .iter()
                .find(|e| e.scheme == Scheme::OncTcp)
                .and_then(Endpoint::socket_addr)
                .expect("tcp"),
        ));
        static MISSING: ProcedureInfo = ProcedureInfo {
            name: "MISSING",
            number: 9,
            oneway: false,
            idempotent: true,
        };
        let err = raw
            .call(
                &demo::DEMO_PROG_INTERFACE,
                &MISSING,
                &CallOptions::default(),
                |_| Ok(()),
                |r| r.get_i32(),
            )
            .await
            .expect_err("no procedure 9");
        assert!(
            matches!(err, RpcError::UnknownProcedure { procedure: 9, .. }),
            "{err:?}"
        );

        // A killed rpcgen server leaves its mappings (registered over rpcbind's local
        // socket as root, so only root's local calls may remove them); they go with
        // the namespace's rpcbind.
        drop(server);
    })
    .await
    .expect("in time");
    println!("checked against rpcbind");
}
