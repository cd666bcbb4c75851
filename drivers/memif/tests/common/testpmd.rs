//! `dpdk-testpmd` with one memif port as the peer of the interop and peer-death tests:
//! macswap forwarding, `--in-memory` (no hugepage files), its runtime directory and
//! socket removed when dropped (also when the test fails, then its log is printed).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why DPDK cannot be the peer here, if it cannot.
pub fn skip_reason() -> Option<String> {
    pmd_testkit::root_missing("hugepages for DPDK")
        .or_else(pmd_testkit::dpdk_missing)
        .or_else(|| pmd_testkit::hugetlbfs_missing("/mnt/pmd-huge"))
}

/// `dpdk-testpmd` with one memif port; stopped and cleaned up on drop.
pub struct Testpmd {
    child: Child,
    prefix: String,
    sock: Option<PathBuf>,
    log: PathBuf,
    cmd: String,
}

impl Testpmd {
    /// Starts testpmd on `vdev` with runtime prefix `prefix`; `sock` (a socket file
    /// testpmd creates) is removed on drop.
    pub fn start(vdev: &str, prefix: &str, sock: Option<PathBuf>) -> Testpmd {
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let args: Vec<String> = [
            "-l",
            "0,1",
            "--main-lcore",
            "0",
            "--no-pci",
            "-m",
            "512",
            "--huge-dir",
            "/mnt/pmd-huge",
            // No hugepage files (they would stay pinned in the mount after testpmd exits);
            // the prefix still names the process and its runtime directory.
            "--in-memory",
            "--file-prefix",
            prefix,
            "--log-level=pmd.net.memif:debug",
            "--vdev",
            vdev,
            "--",
            "--forward-mode=macswap",
            "--nb-cores=1",
            // testpmd drains rx queues when forwarding starts; frames we send as soon as
            // the link is up must not be thrown away.
            "--no-flush-rx",
            "--total-num-mbufs=16384",
            "--stats-period",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cmd = format!("dpdk-testpmd {}", args.join(" "));
        eprintln!("starting: {cmd}");
        let child = Command::new("dpdk-testpmd")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        Testpmd {
            child,
            prefix: prefix.into(),
            sock,
            log,
            cmd,
        }
    }

    /// What testpmd printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until testpmd forwards (frames sent before would be counted, not echoed).
    pub fn wait_forwarding(&self) {
        super::wait_for(30, "testpmd to start forwarding", || {
            self.log().contains("packet forwarding - ports=")
        });
    }

    /// Kills the process with SIGKILL (no chance to disconnect or clean up) and reaps
    /// it; the drop still removes what it left behind.
    pub fn kill9(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        if let Some(s) = &self.sock {
            let _ = std::fs::remove_file(s);
        }
        if std::thread::panicking() {
            eprintln!(
                "testpmd command: {}\ntestpmd log:\n{}",
                self.cmd,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
