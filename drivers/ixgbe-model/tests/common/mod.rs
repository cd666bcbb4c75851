//! Test scaffolding: a model driven through its BAR like a driver would, and descriptor
//! rings in registered memory segments (IOVA == VA, as the model's backend says).

#![allow(dead_code)]

use pmd_core::memory::Segment;
use pmd_core::pci::{MmioRegion, PciBackend};
use pmd_ixgbe_model::regs::*;
use pmd_ixgbe_model::{Model82599, ModelConf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An rx queue's configuration for the driver tests: 256 descriptors from `pool`, frames
/// up to 1522 bytes, no offloads, port 0.
pub fn rx_conf(pool: &pmd_core::Mempool) -> pmd_core::ethdev::RxQueueConf {
    pmd_core::ethdev::RxQueueConf {
        offloads: Default::default(),
        max_rx_pktlen: 1522,
        port: 0,
        nb_desc: 256,
        pool: pool.clone(),
        stats: Arc::default(),
    }
}

/// A tx queue's configuration for the driver tests: 256 descriptors, no offloads.
pub fn tx_conf() -> pmd_core::ethdev::TxQueueConf {
    pmd_core::ethdev::TxQueueConf {
        offloads: Default::default(),
        nb_desc: 256,
        stats: Arc::default(),
    }
}

/// Polls `cond` for up to 5 s.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A model, its backend and its mapped BAR 0.
pub struct Nic {
    pub model: Model82599,
    pub backend: Arc<dyn PciBackend>,
    pub bar: MmioRegion,
}

impl Nic {
    /// A model with bus mastering enabled (as the driver's probe does).
    pub fn new(conf: ModelConf) -> Nic {
        let model = Model82599::new(conf).unwrap();
        let backend = model.backend();
        backend.set_bus_master(true).unwrap();
        let bar = backend.map_bar(0).unwrap();
        Nic {
            model,
            backend,
            bar,
        }
    }

    pub fn rd(&self, off: usize) -> u32 {
        self.bar.read32_at(off).unwrap()
    }

    pub fn wr(&self, off: usize, v: u32) {
        self.bar.write32_at(off, v).unwrap()
    }

    /// Restarts auto-negotiation and waits for LINKS.UP.
    pub fn link_up(&self) {
        self.wr(AUTOC, self.rd(AUTOC) | AUTOC_RESTART_AN);
        wait_for("link up", || self.rd(LINKS) & LINKS_UP != 0);
    }

    /// Link up, receive enabled, broadcast accepted.
    pub fn rx_ready(&self) {
        self.link_up();
        self.wr(FCTRL, FCTRL_BAM);
        self.wr(RXCTRL, RXCTRL_RXEN);
    }

    /// Programs rx queue `q` over `ring` with 2 KiB buffers and enables it, posting
    /// `posted` descriptors (RDT = posted).
    pub fn rx_queue(&self, q: usize, ring: &Ring, posted: u32) {
        self.rx_queue_kib(q, ring, posted, 2);
    }

    /// As [`Nic::rx_queue`] with `kib` KiB buffers.
    pub fn rx_queue_kib(&self, q: usize, ring: &Ring, posted: u32, kib: u32) {
        self.wr(rdbal(q), ring.iova() as u32);
        self.wr(rdbah(q), (ring.iova() >> 32) as u32);
        self.wr(rdlen(q), ring.count * 16);
        self.wr(srrctl(q), kib | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN);
        self.wr(rdh(q), 0);
        self.wr(rxdctl(q), DCTL_ENABLE);
        assert_ne!(self.rd(rxdctl(q)) & DCTL_ENABLE, 0, "ENABLE reads back set");
        self.wr(rdt(q), posted);
    }

    /// Programs tx queue `q` over `ring`, with transmit enabled and the queue on.
    pub fn tx_queue(&self, q: usize, ring: &Ring) {
        self.wr(DMATXCTL, DMATXCTL_TE);
        self.wr(tdbal(q), ring.iova() as u32);
        self.wr(tdbah(q), (ring.iova() >> 32) as u32);
        self.wr(tdlen(q), ring.count * 16);
        self.wr(tdh(q), 0);
        self.wr(tdt(q), 0);
        self.wr(txdctl(q), DCTL_ENABLE);
        assert_ne!(self.rd(txdctl(q)) & DCTL_ENABLE, 0, "ENABLE reads back set");
    }
}

/// A descriptor ring with one 2 KiB buffer per descriptor, both in registered segments.
pub struct Ring {
    pub count: u32,
    descs: Segment,
    bufs: Segment,
}

pub const BUF: usize = 2048;

/// SRRCTL bit 28, drop when no descriptor is free (what drivers set; the model drops anyway).
pub const SRRCTL_DROP_EN: u32 = 1 << 28;

impl Ring {
    pub fn new(name: &str, count: u32) -> Ring {
        let descs = Segment::alloc(&format!("{name}-desc"), count as usize * 16).unwrap();
        let bufs = Segment::alloc(&format!("{name}-buf"), count as usize * BUF).unwrap();
        Ring { count, descs, bufs }
    }

    pub fn iova(&self) -> u64 {
        self.descs.iova_at(0)
    }

    /// IOVA of buffer `i`.
    pub fn buf_iova(&self, i: u32) -> u64 {
        self.bufs.iova_at(i as usize * BUF)
    }

    fn slot(&self, i: u32) -> *mut [u64; 2] {
        assert!(i < self.count);
        // In bounds: i < count and the segment holds count descriptors.
        self.descs
            .as_ptr()
            .cast::<[u64; 2]>()
            .wrapping_add(i as usize)
    }

    /// Reads descriptor `i`.
    pub fn get(&self, i: u32) -> [u64; 2] {
        // SAFETY: the slot is inside our segment; the device may write it concurrently,
        // hence volatile.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Writes descriptor `i`.
    pub fn set(&self, i: u32, d: [u64; 2]) {
        // SAFETY: as in `get`.
        unsafe { self.slot(i).write_volatile(d) }
    }

    /// Posts buffer `i` in rx descriptor `i` (read format) for every descriptor.
    pub fn post_rx_buffers(&self) {
        for i in 0..self.count {
            self.set(i, [self.buf_iova(i), 0]);
        }
    }

    /// `len` bytes of buffer `i`.
    pub fn buf(&self, i: u32, len: usize) -> Vec<u8> {
        assert!(len <= BUF);
        let mut v = vec![0u8; len];
        // SAFETY: buffer i lies inside the buffer segment (i < count, len <= BUF).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.bufs.as_ptr().add(i as usize * BUF),
                v.as_mut_ptr(),
                len,
            )
        };
        v
    }

    /// Fills buffer `i` with `data`.
    pub fn fill(&self, i: u32, data: &[u8]) {
        assert!(data.len() <= BUF && i < self.count);
        // SAFETY: as in `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.bufs.as_ptr().add(i as usize * BUF),
                data.len(),
            )
        };
    }
}

/// An address inside no segment of this process (nothing is ever mapped there).
pub const OUTSIDE: u64 = 0x0dea_d000_0000;

/// Status/error word (low 32 bits of the second word) of an rx write-back.
pub fn rx_status(d: [u64; 2]) -> u32 {
    d[1] as u32
}

/// Packet length of an rx write-back.
pub fn rx_len(d: [u64; 2]) -> usize {
    (d[1] >> 32) as u16 as usize
}

pub mod vf;
