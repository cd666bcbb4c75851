//! Shared by the peer-death tests (`peer_death_server.rs`, `peer_death_client.rs`): our
//! `net_virtio_user0` port against `dpdk-testpmd`'s `net_vhost` in macswap mode, driven
//! with frames whose echoes are checked, a `net_null` port beside it that must keep
//! forwarding while the back end is dead, and a finish that checks every buffer came back.

use super::{xstat, MACS};
use pmd_core::ethdev::{PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use std::path::Path;
use std::time::{Duration, Instant};

/// Our port and its queues.
pub struct Ours {
    /// The EAL holding the port.
    pub eal: Eal,
    /// The pool of the rx queue and of the frames sent.
    pub pool: Mempool,
    rx: RxQueueHandle,
    tx: TxQueueHandle,
    seq: u32,
    /// Port 1, `net_null0`, and its queues.
    null_rx: RxQueueHandle,
    null_tx: TxQueueHandle,
}

impl Ours {
    /// Opens `net_virtio_user0` on `sock` with `extra` arguments and starts it; returns
    /// it with the pool's in-use count before the queues were set up.
    pub fn open(sock: &Path, prefix: &str, extra: &str) -> (Ours, i64) {
        let opts = EalOptions::builder()
            .lcores("0")
            .no_pci(true)
            .file_prefix(prefix)
            .vdev(&format!(
                "net_virtio_user0,path={},queue_size=256,mac=02:00:00:00:00:01{extra}",
                sock.display()
            ))
            .vdev("net_null0")
            .build()
            .unwrap();
        let mut eal = Eal::init(opts, &[&pmd_virtio::DRIVER, &pmd_null::DRIVER]).unwrap();
        let pool = Mempool::create("virtio-death", 2048, 0).unwrap();
        let idle = pool.stats().in_use;
        let null = eal.port_mut(1).unwrap();
        null.configure(&PortConf::default()).unwrap();
        let null_rx = null.setup_rx_queue(0, 0, &pool).unwrap();
        let null_tx = null.setup_tx_queue(0, 0).unwrap();
        null.start().unwrap();
        let port = eal.port_mut(0).unwrap();
        port.configure(&PortConf::default()).unwrap();
        let rx = port.setup_rx_queue(0, 0, &pool).unwrap();
        let tx = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(10)).up, "link down");
        let ours = Ours {
            eal,
            pool,
            rx,
            tx,
            seq: 0,
            null_rx,
            null_tx,
        };
        (ours, idle)
    }

    /// Port 0's link state (asking for it lets a transport reconnect).
    pub fn link_up(&self) -> bool {
        self.eal.ports()[0].link().up
    }

    /// Sends frames and receives the echoes until `done(self, received)`; frames the
    /// port does not take are freed. Echoes must carry the MACs swapped.
    pub fn pump(&mut self, what: &str, mut done: impl FnMut(&Ours, u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut received = 0u64;
        let mut rb = PktBatch::new();
        while !done(self, received) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: received {received}; stats {:?}",
                self.eal.ports()[0].stats()
            );
            let mut b = PktBatch::new();
            while b.len() < 32 {
                let mut f = super::jumbo_frame(self.seq % 64);
                f.truncate(60 + (self.seq % 64) as usize);
                f[..6].copy_from_slice(&MACS.1);
                f[6..12].copy_from_slice(&MACS.0);
                b.push(pmd_core::Mbuf::from_slice(&f, &self.pool).expect("pool"))
                    .unwrap();
                self.seq = self.seq.wrapping_add(1);
            }
            self.tx.tx_burst(&mut b);
            drop(b);
            rb.clear();
            self.rx.rx_burst(&mut rb);
            for m in rb.iter() {
                let d = m.data();
                assert_eq!((&d[..6], &d[6..12]), (&MACS.0[..], &MACS.1[..]), "MACs");
                received += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        received
    }

    /// The other port (net_null0) forwards 100 bursts from its rx to its tx.
    pub fn other_port_runs(&mut self) {
        let before = self.eal.ports()[1].stats();
        let mut b = PktBatch::new();
        for _ in 0..100 {
            assert!(self.null_rx.rx_burst(&mut b) > 0, "the null port receives");
            self.null_tx.tx_burst(&mut b);
            b.clear();
        }
        let after = self.eal.ports()[1].stats();
        assert!(after.ipackets >= before.ipackets + 100, "{after:?}");
        assert!(after.opackets >= before.opackets + 100, "{after:?}");
    }

    /// Stops the ports, drops the queues: the pool must be back at `idle`.
    pub fn finish(mut self, idle: i64) {
        self.eal.port_mut(0).unwrap().stop().unwrap();
        self.eal.port_mut(1).unwrap().stop().unwrap();
        drop(self.rx);
        drop(self.tx);
        drop(self.null_rx);
        drop(self.null_tx);
        assert_eq!(self.pool.stats().in_use, idle, "buffers not returned");
    }

    /// An xstat of the port.
    pub fn xstat(&self, name: &str) -> u64 {
        xstat(&self.eal, name)
    }
}
