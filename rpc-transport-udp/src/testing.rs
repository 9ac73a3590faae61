//! Real packet loss for tests: a private network namespace whose loopback drops a share
//! of all UDP datagrams (iptables `statistic` match; `tc netem` is not needed).
//!
//! A test creates a [`LossyNamespace`], runs an inner test of its own binary inside it
//! ([`LossyNamespace::run_test`]), and reads how many datagrams the kernel dropped
//! ([`LossyNamespace::dropped`]). The namespace is deleted when the value is dropped,
//! whatever happened. Datagrams are dropped on INPUT, so they vanish silently (a DROP on
//! OUTPUT would make `sendto` fail instead). Needs root, `ip` (iproute2) and `iptables`.

use std::process::{Command, Output};

/// A network namespace whose loopback drops UDP datagrams at random. Deleted on drop.
#[derive(Debug)]
pub struct LossyNamespace {
    name: String,
}

fn have(tool: &str, version_flag: &str) -> bool {
    Command::new(tool)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success())
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

impl LossyNamespace {
    /// Why this machine cannot create one (`None`: it can).
    pub fn unavailable() -> Option<String> {
        let is_root = run(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0");
        if is_root && have("ip", "-V") && have("iptables", "--version") {
            None
        } else {
            Some(format!(
                "needs root, `ip` and `iptables` (root: {is_root}; .ci/run installs iproute2 \
                 and iptables)"
            ))
        }
    }

    /// Creates a namespace (named after `tag` and the process id) whose loopback is up
    /// and drops each UDP datagram with probability `loss`.
    pub fn create(tag: &str, loss: f64) -> Result<Self, String> {
        let name = format!("{tag}{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, dropping `ns` deletes the namespace.
        let ns = LossyNamespace { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        let probability = format!("{loss}");
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "iptables",
            "-A",
            "INPUT",
            "-i",
            "lo",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability,
            "-j",
            "DROP",
        ]))?;
        Ok(ns)
    }

    /// Runs the ignored test `test` of the current test binary inside the namespace and
    /// returns its output; `Err` with the output if it did not pass.
    pub fn run_test(&self, test: &str) -> Result<Output, String> {
        let exe = std::env::current_exe().map_err(|e| format!("test binary path: {e}"))?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(&exe)
            .args(["--exact", test, "--ignored", "--nocapture"])
            .output()
            .map_err(|e| format!("running {test}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && stdout.contains("1 passed") {
            Ok(out)
        } else {
            Err(format!(
                "inner test {test} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Datagrams the loss rule has dropped so far.
    pub fn dropped(&self) -> Result<u64, String> {
        let rules = run(Command::new("ip").args([
            "netns", "exec", &self.name, "iptables", "-L", "INPUT", "-v", "-n", "-x",
        ]))?;
        rules
            .lines()
            .find(|l| l.contains("DROP"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no DROP rule counter in:\n{rules}"))
    }
}

impl Drop for LossyNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
