//! DPDK's `dpdk-testpmd` as a test peer: started with `--in-memory` on the hugetlbfs
//! mount the tests use, its output in a log file, and on drop stopped (SIGINT, then
//! SIGKILL after 5 s), reaped, and everything it leaves removed: its runtime directory,
//! its log, and the socket files named as its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The hugetlbfs mount DPDK peers use in tests.
pub const HUGE_DIR: &str = "/mnt/pmd-huge";

/// Why a DPDK peer cannot run here, if it cannot: root, `dpdk-testpmd`, the mount.
pub fn peer_missing() -> Option<String> {
    crate::root_missing("hugepages for DPDK")
        .or_else(crate::dpdk_missing)
        .or_else(|| crate::hugetlbfs_missing(HUGE_DIR))
}

/// A running `dpdk-testpmd`.
pub struct Testpmd {
    child: Child,
    log: PathBuf,
    runtime_dir: PathBuf,
    owned: Vec<PathBuf>,
}

impl Testpmd {
    /// Starts `dpdk-testpmd -l 0,1 --no-pci -m 512 --in-memory --file-prefix PREFIX`
    /// with one `--vdev` per entry of `vdevs`, then `--` and `app_args`. `owned` files
    /// (sockets testpmd creates) are removed on drop.
    pub fn spawn(
        prefix: &str,
        log: &Path,
        vdevs: &[String],
        app_args: &[String],
        owned: &[&Path],
    ) -> Testpmd {
        let out = std::fs::File::create(log).expect("testpmd log");
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.args(["-l", "0,1", "--main-lcore", "0", "--no-pci", "-m", "512"])
            .args(["--huge-dir", HUGE_DIR, "--in-memory", "--file-prefix", prefix]);
        for v in vdevs {
            cmd.arg("--vdev").arg(v);
        }
        let child = cmd
            .arg("--")
            .args(app_args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        Testpmd {
            child,
            log: log.to_path_buf(),
            // DPDK creates it even with --in-memory.
            runtime_dir: Path::new("/var/run/dpdk").join(prefix),
            owned: owned.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    /// Kills testpmd with SIGKILL (no chance to say goodbye) and reaps it; the drop
    /// still removes what it left behind.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` in its output.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.owned {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}
