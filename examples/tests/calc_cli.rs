//! `calc-server` and `calc-client` as processes, over reliable UDP and over TCP: one
//! server listening on both transports, a UDP-only one, and TLS / mutual TLS over TCP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `calc-server`, killed on drop.
struct ServerProcess {
    child: Child,
    /// What it printed it listens on (`udp://... and tcp://...`).
    listening: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(transport: &str) -> ServerProcess {
    start_server_with(&["--transport", transport], "")
}

/// Starts `calc-server` on a free port with `args`; `tag` is what its listening line
/// says after the addresses (e.g. `" (TLS)"`).
fn start_server_with(args: &[&str], tag: &str) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("calc-server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let suffix = format!("{tag} (Ctrl-C to stop)\n");
    let listening = line
        .strip_prefix("calc-server listening on ")
        .and_then(|l| l.strip_suffix(suffix.as_str()))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    ServerProcess { child, listening }
}

fn port_of(listening: &str, scheme: &str) -> u16 {
    let start = listening
        .find(scheme)
        .unwrap_or_else(|| panic!("no {scheme} in {listening}"));
    let rest = &listening[start + scheme.len()..];
    let authority = rest.split_whitespace().next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

fn client(args: &[&str]) -> (bool, String, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(["--timeout-ms", "5000"])
        .args(args)
        .output()
        .expect("calc-client runs");
    assert!(started.elapsed() < Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn one_server_answers_over_udp_and_tcp() {
    let server = start_server("both");
    let udp = port_of(&server.listening, "udp://");
    let tcp = port_of(&server.listening, "tcp://");
    assert_eq!(udp, tcp, "both transports on one port number");
    let addr = format!("127.0.0.1:{udp}");
    for transport in ["udp", "tcp"] {
        let (ok, out, err) = client(&["--transport", transport, "--addr", &addr, "add", "2", "3"]);
        assert!(ok, "{transport}: {err}");
        assert_eq!(out, "5", "{transport}");
        let (ok, out, err) = client(&["--transport", transport, "--addr", &addr, "func1", "41"]);
        assert!(ok, "{transport}: {err}");
        assert!(!out.is_empty());
    }
    // The scheme in the address picks the transport too.
    let (ok, out, err) = client(&["--addr", &format!("udp://{addr}"), "mean", "1", "2", "6"]);
    assert!(ok, "{err}");
    assert_eq!(out, "3");
    let (ok, out, err) = client(&["--addr", &format!("udp://{addr}"), "log", "hello"]);
    assert!(ok, "{err}");
    assert_eq!(out, "sent");
}

#[test]
fn a_udp_only_server_does_not_answer_tcp() {
    let server = start_server("udp");
    assert!(
        server.listening.starts_with("udp://"),
        "{}",
        server.listening
    );
    assert!(!server.listening.contains("tcp://"));
    let port = port_of(&server.listening, "udp://");
    let addr = format!("127.0.0.1:{port}");
    let (ok, out, err) = client(&["--transport", "udp", "--addr", &addr, "add", "2", "3"]);
    assert!(ok, "{err}");
    assert_eq!(out, "5");
    let (ok, _, err) = client(&["--transport", "tcp", "--addr", &addr, "ping"]);
    assert!(!ok, "a TCP call to a UDP-only server fails");
    assert!(!err.is_empty());
}

/// A CA and a `localhost` / 127.0.0.1 server certificate, and a client certificate from
/// a second CA, written as PEM files into a fresh directory (removed on drop).
struct TestPki {
    dir: std::path::PathBuf,
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("calc-cli-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).unwrap();
        let leaf = |issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str], stem: &str| {
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        let server_ca = ca("calc test CA");
        let client_ca = ca("calc clients CA");
        write("ca.pem", server_ca.pem());
        write("clients-ca.pem", client_ca.pem());
        leaf(&server_ca, &["localhost", "127.0.0.1"], "server");
        leaf(&client_ca, &["calc-client"], "client");
        TestPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_tls_server(extra: &[&str]) -> ServerProcess {
    let args: Vec<&str> = ["--transport", "tcp"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    start_server_with(&args, " (TLS)")
}

#[test]
fn calc_over_tls_and_mutual_tls_as_processes() {
    let pki = TestPki::new();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let server = start_tls_server(&["--tls-cert", &cert, "--tls-key", &key]);
    let addr = format!("localhost:{}", port_of(&server.listening, "tcp://"));
    let (ok, out, err) = client(&["--addr", &addr, "--tls-ca", &ca, "add", "2", "3"]);
    assert!(ok, "{err}");
    assert_eq!(out, "5");
    // Plain TCP to a TLS server fails; so does trusting the wrong CA, with the reason.
    let (ok, _, _) = client(&["--addr", &addr, "--timeout-ms", "1000", "ping"]);
    assert!(!ok, "a plaintext call to a TLS server fails");
    let wrong = pki.path("clients-ca.pem");
    let (ok, _, err) = client(&["--addr", &addr, "--tls-ca", &wrong, "ping"]);
    assert!(!ok);
    assert!(err.contains("UnknownIssuer"), "{err}");
    drop(server);

    // Mutual TLS: the client certificate is required.
    let clients_ca = pki.path("clients-ca.pem");
    let server = start_tls_server(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--client-ca",
        &clients_ca,
    ]);
    let addr = format!("127.0.0.1:{}", port_of(&server.listening, "tcp://"));
    let (ok, _, err) = client(&["--addr", &addr, "--tls-ca", &ca, "ping"]);
    assert!(!ok);
    assert!(err.contains("CertificateRequired"), "{err}");
    let (c, k) = (pki.path("client.pem"), pki.path("client.key"));
    let (ok, out, err) = client(&[
        "--addr", &addr, "--tls-ca", &ca, "--cert", &c, "--key", &k, "add", "20", "22",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "42");
}

#[test]
fn calc_over_sealed_udp_with_a_pre_shared_key_as_processes() {
    let key = |b: &str| format!("billing:{}", b.repeat(32));
    let server = start_server_with(&["--transport", "udp", "--psk", &key("5a")], " (sealed)");
    let addr = format!("udp://127.0.0.1:{}", port_of(&server.listening, "udp://"));
    let (ok, out, err) = client(&["--addr", &addr, "--psk", &key("5a"), "add", "2", "3"]);
    assert!(ok, "{err}");
    assert_eq!(out, "5");
    // The wrong key, and no key at all, are refused with the reason.
    let (ok, _, err) = client(&["--addr", &addr, "--psk", &key("a5"), "ping"]);
    assert!(!ok);
    assert!(err.contains("secure handshake"), "{err}");
    let (ok, _, err) = client(&["--addr", &addr, "ping"]);
    assert!(!ok);
    assert!(err.contains("secure handshake"), "{err}");
}
