//! Our own peer process dies: this testpmd (macswap, on a memif port) is killed with
//! SIGKILL while frames are in flight, and started again. The memif port in this test
//! process must see its link go down, give back (and count) what it cannot send, come
//! back up with the new testpmd (a server accepts the new client; a client reconnects
//! to the new server, whose socket file the dead one left behind), forward again, and
//! end with every buffer back in its pool. Needs nothing special: memif is unix
//! sockets and memfd memory, and testpmd runs with `--no-huge`.

use pmd_core::ethdev::{Port, PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_testkit::unique;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Our testpmd on one memif port, macswap; killed on drop.
struct Peer {
    child: Child,
}

impl Peer {
    fn start(vdev: &str) -> Peer {
        let child = Command::new(env!("CARGO_BIN_EXE_testpmd"))
            // No telemetry socket: SIGKILL would leave it behind in /var/run/dpdk.
            .args([
                "-l",
                "0",
                "--no-huge",
                "--no-telemetry",
                "--file-prefix",
                &unique("tpmdm"),
            ])
            .args(["--vdev", vdev])
            .args(["--", "--forward-mode=macswap", "--duration=120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start testpmd");
        Peer { child }
    }

    fn kill9(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our memif port, built from the driver list the apps use.
struct Side {
    port: Port,
    pool: Mempool,
    rx: RxQueueHandle,
    tx: TxQueueHandle,
}

impl Side {
    fn open(spec: &str) -> (Side, i64) {
        let vdev = spec.parse().expect("vdev spec");
        let drv = pmd_drivers::ALL
            .iter()
            .find(|d| d.name() == "net_memif")
            .expect("memif driver");
        let mut port = Port::new(0, "net_memif0", drv.probe(&vdev).expect("probe"));
        let pool = Mempool::create(&unique("memif-peer"), 4096, 0).expect("pool");
        let idle = pool.stats().in_use;
        port.configure(&PortConf::default()).expect("configure");
        let rx = port.setup_rx_queue(0, 0, &pool).expect("rx queue");
        let tx = port.setup_tx_queue(0, 0).expect("tx queue");
        port.start().expect("start");
        (Side { port, pool, rx, tx }, idle)
    }

    fn xstat(&self, name: &str) -> u64 {
        self.port
            .xstats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|x| x.1)
            .unwrap_or_else(|| panic!("no xstat {name}"))
    }

    /// Sends frames and counts the echoes (MACs swapped) until `done`; frames the port
    /// does not take are freed.
    fn pump(&mut self, what: &str, mut done: impl FnMut(&Side, u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut received = 0u64;
        let mut rb = PktBatch::new();
        while !done(self, received) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: received {received}; xstats {:?}",
                self.port.xstats()
            );
            let mut b = PktBatch::new();
            self.pool.alloc_bulk(&mut b, 32).expect("pool");
            for (i, m) in b.as_mut_slice().iter_mut().enumerate() {
                let mut f = vec![0u8; 60 + i * 16];
                f[..6].copy_from_slice(&PEER);
                f[6..12].copy_from_slice(&OURS);
                f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
                assert!(m.copy_from(&f));
            }
            self.tx.tx_burst(&mut b);
            drop(b);
            rb.clear();
            self.rx.rx_burst(&mut rb);
            for m in rb.iter() {
                let d = m.data();
                assert_eq!((&d[..6], &d[6..12]), (&OURS[..], &PEER[..]), "echo's MACs");
                received += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        received
    }

    /// Kills `peer` mid-stream, checks the port while it is dead, starts it again with
    /// `restart`, checks traffic flows, and that the pool is back at `idle` at the end.
    fn survive(mut self, idle: i64, mut peer: Peer, restart: impl Fn() -> Peer) {
        self.pump("link up", |s, _| s.port.link().up);
        self.pump("1000 echoes", |_, n| n >= 1000);
        peer.kill9();
        self.pump("link down after SIGKILL", |s, _| !s.port.link().up);
        let sent = self.port.stats().opackets;
        self.pump("link-down tx counted", |s, _| {
            s.xstat("tx_q0_link_down") >= 320
        });
        assert_eq!(self.port.stats().opackets, sent, "nothing sent while down");
        assert_eq!(self.pool.stats().in_use, idle, "buffers held while down");
        drop(peer);

        let peer = restart();
        self.pump("link up with the restarted peer", |s, _| s.port.link().up);
        assert_eq!(self.xstat("ctrl_connects"), 2);
        self.pump("1000 echoes from the restarted peer", |_, n| n >= 1000);
        drop(peer);
        self.pump("link down after the peer exits", |s, _| !s.port.link().up);
        self.port.stop().unwrap();
        drop(self.rx);
        drop(self.tx);
        assert_eq!(self.pool.stats().in_use, idle, "buffers not returned");
    }
}

#[test]
fn memif_server_survives_our_testpmd_client_killed() {
    let sock = unique("/tmp/pmd-memif-peer-s");
    let (side, idle) = Side::open(&format!("net_memif0,role=server,socket={sock}"));
    let start = || Peer::start(&format!("net_memif0,role=client,socket={sock}"));
    side.survive(idle, start(), start);
}

#[test]
fn memif_client_reconnects_to_our_testpmd_server_killed() {
    // A socket file: the killed server leaves it behind, the restarted one replaces it.
    let path = format!("{}.sock", unique("/tmp/pmd-memif-peer-c"));
    let spec = |role: &str| format!("net_memif0,role={role},socket={path},socket-abstract=no");
    let start = || Peer::start(&spec("server"));
    let peer = start();
    let (side, idle) = Side::open(&spec("client"));
    side.survive(idle, peer, start);
    let _ = std::fs::remove_file(&path);
}
