//! DPDK's `dpdk-testpmd` (or another DPDK app, such as an example built from dpdk-doc)
//! as a test peer: started with `--in-memory` on the hugetlbfs
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

/// How to start `dpdk-testpmd`.
#[derive(Debug, Default)]
pub struct TestpmdConf<'a> {
    /// `--file-prefix` (names the process and its runtime directory).
    pub prefix: &'a str,
    /// Where its output goes (removed on drop); default `$TMPDIR/<prefix>.log`.
    pub log: Option<&'a Path>,
    /// EAL arguments besides the defaults (e.g. `--log-level=...`).
    pub eal: &'a [String],
    /// One `--vdev` each.
    pub vdevs: &'a [String],
    /// testpmd's own arguments (after `--`).
    pub app: &'a [String],
    /// Files it creates (sockets), removed on drop.
    pub owned: &'a [&'a Path],
    /// The DPDK app to run instead of `dpdk-testpmd` (same EAL arguments).
    pub program: Option<&'a Path>,
    /// `-l` (default `0,1`, with `--main-lcore 0`).
    pub lcores: Option<&'a str>,
}

/// A running `dpdk-testpmd`.
pub struct Testpmd {
    child: Child,
    log: PathBuf,
    runtime_dir: PathBuf,
    owned: Vec<PathBuf>,
    cmd: String,
}

impl Testpmd {
    /// Starts `dpdk-testpmd -l 0,1 --main-lcore 0 --no-pci -m 512 --huge-dir HUGE_DIR
    /// --in-memory --file-prefix PREFIX`, the extra EAL arguments, the vdevs, then `--`
    /// and the application's arguments.
    pub fn spawn(c: &TestpmdConf<'_>) -> Testpmd {
        let log = c.log.map_or_else(
            || std::env::temp_dir().join(format!("{}.log", c.prefix)),
            Path::to_path_buf,
        );
        let out = std::fs::File::create(&log).expect("testpmd log");
        let mut args: Vec<String> = [
            "-l",
            c.lcores.unwrap_or("0,1"),
            "--main-lcore",
            "0",
            "--no-pci",
            "-m",
            "512",
            "--huge-dir",
            HUGE_DIR,
            // No hugepage files (they would stay pinned in the mount after testpmd
            // exits); the prefix still names the process and its runtime directory.
            "--in-memory",
            "--file-prefix",
            c.prefix,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(c.eal.iter().cloned());
        for v in c.vdevs {
            args.push("--vdev".into());
            args.push(v.clone());
        }
        args.push("--".into());
        args.extend(c.app.iter().cloned());
        let program = c.program.unwrap_or(Path::new("dpdk-testpmd"));
        let cmd = format!("{} {}", program.display(), args.join(" "));
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Testpmd {
            child,
            log,
            // DPDK creates it even with --in-memory.
            runtime_dir: Path::new("/var/run/dpdk").join(c.prefix),
            owned: c.owned.iter().map(|p| p.to_path_buf()).collect(),
            cmd,
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
        if std::thread::panicking() {
            eprintln!(
                "testpmd command: {}\ntestpmd log:\n{}",
                self.cmd,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}
