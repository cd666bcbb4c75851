//! `dpdk-testpmd` with one memif port as the peer of the interop and peer-death tests:
//! macswap forwarding on [`pmd_testkit::dpdk::Testpmd`] (`--in-memory`, runtime directory,
//! socket and log removed on drop, the log printed when the test fails).

use pmd_testkit::dpdk::TestpmdConf;
use std::path::PathBuf;

/// Why DPDK cannot be the peer here, if it cannot.
pub fn skip_reason() -> Option<String> {
    pmd_testkit::dpdk::peer_missing()
}

/// `dpdk-testpmd` with one memif port; stopped and cleaned up on drop.
pub struct Testpmd(pmd_testkit::dpdk::Testpmd);

impl Testpmd {
    /// Starts testpmd on `vdev` with runtime prefix `prefix`; `sock` (a socket file
    /// testpmd creates) is removed on drop.
    pub fn start(vdev: &str, prefix: &str, sock: Option<PathBuf>) -> Testpmd {
        let app: Vec<String> = [
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
        let owned: Vec<&std::path::Path> = sock.iter().map(|p| p.as_path()).collect();
        Testpmd(pmd_testkit::dpdk::Testpmd::spawn(&TestpmdConf {
            prefix,
            eal: &["--log-level=pmd.net.memif:debug".to_string()],
            vdevs: &[vdev.to_string()],
            app: &app,
            owned: &owned,
            ..Default::default()
        }))
    }

    /// What testpmd printed so far.
    pub fn log(&self) -> String {
        self.0.log()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.0.running()
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
        self.0.kill9();
    }
}
