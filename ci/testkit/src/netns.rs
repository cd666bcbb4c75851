//! A private network namespace per test, deleted with everything in it on drop.

use crate::{have_root, ip, parse_mac, skip, unique, Proc};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread::JoinHandle;

/// A private network namespace with IPv6 disabled (so the kernel sends nothing of its own
/// on the links), deleted with everything in it on drop, also when the test panics.
///
/// Declare it before anything running inside it (processes, threads), so that those are
/// dropped first.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named [`unique`]`(prefix)`, e.g. `l2fwdt-1234-0`, with IPv6
    /// disabled. `None`, after [`skip`]ping `test` (a failure under `PMD_REQUIRE_ALL=1`),
    /// if we are not root or the host does not allow network namespaces.
    ///
    /// Panics if IPv6 cannot be disabled in it (the namespace is deleted first).
    #[track_caller]
    pub fn new(prefix: &str, test: &str) -> Option<NetNs> {
        if !have_root(test) {
            return None;
        }
        let name = unique(prefix);
        if let Err(e) = ip(&["netns", "add", &name]) {
            skip(test, format!("cannot create a network namespace: {e}"));
            return None;
        }
        let ns = NetNs { name };
        let st = Command::new("ip")
            .args(["netns", "exec", &ns.name, "sysctl", "-q", "-w"])
            .args([
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ])
            .status()
            .expect("running sysctl");
        assert!(st.success(), "disabling IPv6 in {} failed", ns.name);
        Some(ns)
    }

    /// The namespace's name, as `ip netns` knows it (for `ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args...`, returning its stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all).unwrap()
    }

    /// Creates the veth pair `a` <-> `b` in the namespace and brings both ends up.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// The MAC address of `dev` in the namespace (from `ip -br link show`).
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.ip(&["-br", "link", "show", dev]);
        let field = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"));
        parse_mac(field).unwrap_or_else(|| panic!("bad MAC {field:?} in {out:?}"))
    }

    /// Starts app `bin` (built on pmd-core) in the namespace on lcore 0 without
    /// hugepages, with its own file prefix, the EAL arguments `eal` and the application's
    /// `app`; waits for `ready` on its stdout, and checks that the pid is the app itself
    /// (`ip netns exec` execs it), so that [`Proc::interrupt`] reaches it.
    pub fn start_app(&self, bin: &str, eal: &[&str], app: &[&str], ready: &str) -> Proc {
        let name = bin.rsplit('/').next().unwrap_or(bin);
        let prefix = unique(&format!("pmdns-{name}"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, bin])
            .args([
                "-l",
                "0",
                "--no-huge",
                "-m",
                "256",
                "--file-prefix",
                &prefix,
            ])
            .args(eal)
            .arg("--")
            .args(app);
        let mut p = Proc::spawn(cmd);
        if let Err(e) = p.wait_for(ready, 1, std::time::Duration::from_secs(10)) {
            panic!("{name}: {e}");
        }
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap_or_default();
        // The kernel keeps 15 bytes of a command's name.
        assert_eq!(
            comm.trim(),
            &name[..name.len().min(15)],
            "the child is not {name} itself"
        );
        p
    }

    /// Runs `f` on a new thread that has entered the namespace (`setns` is per thread),
    /// so that sockets and interface lookups in `f` see the namespace's interfaces.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a namespace fd we hold open, affecting this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Like [`NetNs::spawn`], waiting for the result; a panic in `f` is re-raised here.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}
