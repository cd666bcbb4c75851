//! Helpers shared by the l2fwd integration tests: running the binary with bounded waits,
//! parsing its statistics table, and (for the veth test) a private network namespace.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The l2fwd binary cargo built for these tests.
pub const L2FWD: &str = env!("CARGO_BIN_EXE_l2fwd");

/// A name unique to this test process and call, e.g. `l2fwdt-null-1234-0`.
pub fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "l2fwdt-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether we run as root; if not, prints why `test` is skipped.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{test}: skipped: needs root (network namespaces and AF_PACKET sockets)");
        return false;
    }
    true
}

// ---- running l2fwd -----------------------------------------------------------------

type Buf = Arc<Mutex<Vec<u8>>>;

fn reader(mut pipe: impl Read + Send + 'static, buf: Buf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// A running process whose stdout and stderr are collected by reader threads.
/// Killed (SIGKILL) and reaped on drop if it has not exited.
pub struct Proc {
    child: Child,
    out: Buf,
    err: Buf,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr piped.
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let out = Buf::default();
        let err = Buf::default();
        let readers = vec![
            reader(child.stdout.take().unwrap(), out.clone()),
            reader(child.stderr.take().unwrap(), err.clone()),
        ];
        Proc {
            child,
            out,
            err,
            readers,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Both streams, labelled, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits until stdout contains `needle` at least `count` times. Fails (with the
    /// output) if the process exits first or `timeout` passes.
    pub fn wait_for(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().matches(needle).count() >= count {
                return Ok(());
            }
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                self.status = Some(st);
                self.drain(Duration::from_secs(2));
                return Err(format!(
                    "l2fwd exited ({st}) before printing {count} x {needle:?}\n{}",
                    self.transcript()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {count} x {needle:?} within {timeout:?}\n{}",
                    self.transcript()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, then for the readers to reach end of file.
    /// `None` if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(st)) => self.status = Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        }
        self.drain(Duration::from_secs(2));
        self.status
    }

    /// Joins the reader threads that finish within `timeout`.
    fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// The result of a finished run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn transcript(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs l2fwd with `args` to completion; panics (with the output so far) if it takes
/// longer than `timeout`, after killing it.
pub fn run_l2fwd(args: &[&str], timeout: Duration) -> Finished {
    let mut cmd = Command::new(L2FWD);
    cmd.args(args);
    let mut p = Proc::spawn(cmd);
    match p.wait(timeout) {
        Some(status) => Finished {
            status,
            stdout: p.stdout(),
            stderr: p.stderr(),
        },
        None => panic!(
            "l2fwd {args:?} still running after {timeout:?}\n{}",
            p.transcript()
        ),
    }
}

// ---- statistics table ----------------------------------------------------------------

/// Every value printed after `label` (e.g. "Total packets sent:"), in output order.
pub fn stat_values(text: &str, label: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.find(label).map(|i| &l[i + label.len()..]))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

// ---- network namespace -------------------------------------------------------------

/// Runs `ip args`, returning stdout, or an error with stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private network namespace, deleted (with everything in it) on drop, also when the
/// test panics.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name, IPv6 disabled. `None` (with a message)
    /// if the host does not allow it.
    pub fn new(test: &str) -> Option<NetNs> {
        let name = format!(
            "l2fwdt-{}-{}",
            std::process::id(),
            NS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = ip(&["netns", "add", &name]) {
            eprintln!("{test}: skipped: cannot create a network namespace: {e}");
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

    /// `ip -n NS args...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all).unwrap()
    }

    /// Creates the veth pair `a` <-> `b` and brings both ends up.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// The MAC address of `dev` in this namespace (from `ip -br link show`).
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.ip(&["-br", "link", "show", dev]);
        let field = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"));
        parse_mac(field).unwrap_or_else(|| panic!("bad MAC {field:?} in {out:?}"))
    }

    /// Runs `f` on a thread that has entered the namespace (setns is per thread).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a namespace fd we hold, for this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Like [`NetNs::spawn`], waiting for the result (re-raising a panic).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub fn fmt_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---- raw AF_PACKET sockets ---------------------------------------------------------

/// A raw `AF_PACKET` socket bound to one interface and one ethertype.
pub struct RawSock {
    fd: std::os::fd::OwnedFd,
}

impl RawSock {
    /// Opens the socket on `iface` (in the calling thread's namespace) for ethertype
    /// `proto`, with a large receive buffer and a 20 ms receive timeout.
    pub fn open(iface: &str, proto: u16) -> RawSock {
        use std::os::fd::FromRawFd;
        let cname = std::ffi::CString::new(iface).unwrap();
        // SAFETY: plain syscalls on a socket we own; structures are fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto.to_be()));
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let ifindex = libc::if_nametoindex(cname.as_ptr());
            assert!(ifindex > 0, "no interface {iface}");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto.to_be();
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind {iface}: {}", std::io::Error::last_os_error());
            let big: libc::c_int = 16 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            RawSock { fd }
        }
    }

    /// Sends one whole frame; on ENOBUFS (the device queue is full) waits and retries.
    pub fn send(&self, frame: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            // SAFETY: sending from a live buffer of the given length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n == frame.len() as isize {
                return;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            panic!("send of {} bytes returned {n}: {e}", frame.len());
        }
    }

    /// One frame that arrived on the interface (not one sent from it), or `None` after
    /// the receive timeout.
    pub fn recv_incoming(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: receiving into live buffers of the given lengths.
            let (n, sll) = unsafe {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                );
                (n, sll)
            };
            if n < 0 {
                return None;
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            assert!(n as usize <= buf.len(), "frame of {n} bytes truncated");
            buf.truncate(n as usize);
            return Some(buf);
        }
    }
}
