//! Tests of the virtio-pci transport against a fake PCI function: a modern device in
//! plain memory and a legacy device model behind the I/O-port accessors.

use super::*;
use crate::net::{
    net_hdr_len, NetConf, VirtioNet, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, WANTED_FEATURES,
};
use caps::tests::{config, modern_caps, vcap};
use caps::CAP_COMMON_CFG;
use pmd_core::memory::SegmentInfo;
use pmd_core::pci::mmio::region_over_memory;
use pmd_core::pci::{IrqWait, PciAddr};
use std::collections::HashMap;
use std::sync::Mutex;

/// Legacy device model behind `read_io`/`write_io` of BAR 0.
#[derive(Default)]
struct LegacyModel {
    host_features: u32,
    guest_features: u32,
    status: u8,
    select: u16,
    sizes: Vec<u16>,
    pfn: [u32; 3],
    notified: Vec<u16>,
    status_writes: Vec<u8>,
    mac: [u8; 6],
}

/// A PCI function over byte arrays: config space, memory BARs, an I/O BAR model.
struct FakeBackend {
    cfg: Mutex<[u8; 256]>,
    bars: HashMap<u8, MmioRegion>,
    legacy: Mutex<LegacyModel>,
    kind: BackendKind,
    /// What the IOVAs the device is given are (the EAL's choice behind an IOMMU).
    iova_mode: IovaMode,
    dma: Mutex<Vec<(bool, u64, usize)>>,
}

impl FakeBackend {
    fn new(cfg: [u8; 256], bars: HashMap<u8, MmioRegion>) -> FakeBackend {
        FakeBackend {
            cfg: Mutex::new(cfg),
            bars,
            legacy: Mutex::new(LegacyModel::default()),
            kind: BackendKind::Model,
            iova_mode: IovaMode::Va,
            dma: Mutex::new(Vec::new()),
        }
    }
}

fn in_range(off: u64, len: usize, size: usize) -> Result<usize> {
    let o = off as usize;
    if o + len > size {
        return Err(Error::driver("fake", "outside"));
    }
    Ok(o)
}

impl PciBackend for FakeBackend {
    fn addr(&self) -> PciAddr {
        "0000:00:04.0".parse().unwrap()
    }
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        let o = in_range(offset.into(), buf.len(), 256)?;
        buf.copy_from_slice(&self.cfg.lock().unwrap_or_else(|e| e.into_inner())[o..o + buf.len()]);
        Ok(())
    }
    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        let o = in_range(offset.into(), buf.len(), 256)?;
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        self.bars
            .get(&bar)
            .cloned()
            .ok_or_else(|| Error::driver("fake", format!("BAR {bar} not implemented")))
    }
    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        self.dma
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((true, seg.iova, seg.len));
        Ok(())
    }
    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
        self.dma
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((false, seg.iova, seg.len));
        Ok(())
    }
    fn enable_irqs(&self, _count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        Err(Error::driver("fake", "no interrupts"))
    }
    fn reset(&self) -> Result<()> {
        Ok(())
    }
    fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
        assert_eq!(bar, 0);
        let o = in_range(offset, buf.len(), legacy::LEN)?;
        let m = self.legacy.lock().unwrap_or_else(|e| e.into_inner());
        let v: u32 = match (o, buf.len()) {
            (legacy::HOST_FEATURES, 4) => m.host_features,
            (legacy::GUEST_FEATURES, 4) => m.guest_features,
            (legacy::QUEUE_PFN, 4) => m.pfn.get(m.select as usize).copied().unwrap_or(0),
            (legacy::QUEUE_SIZE, 2) => m.sizes.get(m.select as usize).copied().unwrap_or(0).into(),
            (legacy::QUEUE_SELECT, 2) => m.select.into(),
            (legacy::STATUS, 1) => m.status.into(),
            (o, 1) if (legacy::DEVICE_CFG..legacy::DEVICE_CFG + 6).contains(&o) => {
                m.mac[o - legacy::DEVICE_CFG].into()
            }
            (o, 1) if o == legacy::DEVICE_CFG + 6 => 1, // link up
            (o, 1) if o == legacy::DEVICE_CFG + 7 => 0,
            _ => panic!("unexpected legacy read at {o}+{}", buf.len()),
        };
        buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
        Ok(())
    }
    fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
        assert_eq!(bar, 0);
        let o = in_range(offset, buf.len(), legacy::LEN)?;
        let mut v = [0u8; 4];
        v[..buf.len()].copy_from_slice(buf);
        let v = u32::from_le_bytes(v);
        let mut m = self.legacy.lock().unwrap_or_else(|e| e.into_inner());
        match (o, buf.len()) {
            (legacy::GUEST_FEATURES, 4) => m.guest_features = v,
            (legacy::QUEUE_PFN, 4) => {
                let q = m.select as usize;
                if q < 3 {
                    m.pfn[q] = v;
                }
            }
            (legacy::QUEUE_SELECT, 2) => m.select = v as u16,
            (legacy::QUEUE_NOTIFY, 2) => m.notified.push(v as u16),
            (legacy::STATUS, 1) => {
                m.status = v as u8;
                m.status_writes.push(v as u8);
                if v == 0 {
                    m.pfn = [0; 3];
                    m.guest_features = 0;
                }
            }
            _ => panic!("unexpected legacy write at {o}+{}", buf.len()),
        }
        Ok(())
    }
}

/// BAR 4 of 0x4000 bytes laid out as `modern_caps` says, preset like a device: features
/// `f` in both halves (plain memory ignores the select register), 2 queues of 256,
/// MAC 52:54:00:12:34:56, link up.
fn modern_backend(f: u32, caps: Vec<(u8, Vec<u8>)>) -> (Arc<FakeBackend>, MmioRegion) {
    let bar = region_over_memory(0x4000);
    bar.write32_at(common::DF, f).unwrap();
    bar.write16_at(common::NUM_QUEUES, 2).unwrap();
    bar.write16_at(common::Q_SIZE, 256).unwrap();
    for (i, b) in [0x52u8, 0x54, 0, 0x12, 0x34, 0x56, 1, 0].iter().enumerate() {
        bar.write8_at(0x2000 + i, *b).unwrap();
    }
    let b = FakeBackend::new(config(0x1041, &caps), HashMap::from([(4, bar.clone())]));
    (Arc::new(b), bar)
}

const F_LOW: u32 = 1 | (1 << 5) | (1 << 15) | (1 << 16) | (1 << 29);

#[test]
fn probes_a_modern_device_from_its_config_space() {
    let (b, bar) = modern_backend(F_LOW, modern_caps(4, 0));
    let mut t = VirtioPci::probe(b.clone()).unwrap();
    assert!(t.is_modern());
    assert_eq!(
        bar.read8_at(common::STATUS).unwrap(),
        STATUS_ACKNOWLEDGE | STATUS_DRIVER
    );
    // Both halves read F_LOW: bit 32 is VERSION_1.
    assert_eq!(
        t.device_features(),
        u64::from(F_LOW) | (u64::from(F_LOW) << 32)
    );
    assert_eq!(t.queue_size().unwrap(), 256);
    let f = t.negotiate(WANTED_FEATURES).unwrap();
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    assert_eq!(t.mac(), Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
    // Doorbell: queue_notify_off 3 * multiplier 4 = 12 bytes into the notify area; silent
    // before DRIVER_OK, rung once at start, then on every notify.
    bar.write16_at(common::Q_NOTIFY_OFF, 3).unwrap();
    let n = t.notifier(1).unwrap();
    bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
    n.notify();
    assert_eq!(
        bar.read16_at(0x3000 + 12).unwrap(),
        0xeeee,
        "not before DRIVER_OK"
    );
    t.start(&rings(256)).unwrap();
    assert_eq!(bar.read16_at(0x3000 + 12).unwrap(), 1, "kicked at start");
    assert_ne!(bar.read8_at(common::STATUS).unwrap() & STATUS_DRIVER_OK, 0);
    assert!(t.link_up());
    bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
    n.notify();
    assert_eq!(bar.read16_at(0x3000 + 12).unwrap(), 1);
    t.stop().unwrap();
    bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
    n.notify();
    assert_eq!(
        bar.read16_at(0x3000 + 12).unwrap(),
        0xeeee,
        "not after stop"
    );
    // A doorbell outside the notify area is an error.
    bar.write16_at(common::Q_NOTIFY_OFF, 0x400).unwrap();
    assert!(t.notifier(1).is_err());
    assert!(t.notifier(2).is_err(), "only 2 queues");
    // Through the net layer: 12-byte header, the device's MAC.
    let (b2, _) = modern_backend(F_LOW, modern_caps(4, 0));
    let net = VirtioNet::new(
        NetConf {
            driver: crate::PCI_DRIVER_NAME,
            name: "pci".into(),
            queue_size: 256,
            queue_pairs: 1,
            mac: MacAddr::local(1),
        },
        Box::new(VirtioPci::probe(b2).unwrap()),
    )
    .unwrap();
    assert_eq!(net.hdr_len(), 12);
    assert_eq!(
        pmd_core::ethdev::Device::mac_addr(&net),
        MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    drop(net);
    t.close();
    assert_eq!(bar.read8_at(common::STATUS).unwrap(), 0, "reset at close");
}

#[test]
fn hostile_modern_layouts_are_errors() {
    // A structure beyond its BAR.
    let (b, _) = modern_backend(F_LOW, modern_caps(4, 0x3f00));
    let e = VirtioPci::probe(b).unwrap_err().to_string();
    assert!(e.contains("outside"), "{e}");
    // A BAR that is not there.
    let (b, _) = modern_backend(F_LOW, modern_caps(2, 0));
    assert!(VirtioPci::probe(b).is_err());
    // A reserved BAR index: the device is not usable.
    let (b, _) = modern_backend(F_LOW, modern_caps(7, 0));
    assert!(VirtioPci::probe(b).is_err());
    // A common configuration too short.
    let mut caps = modern_caps(4, 0);
    caps[4].1 = vcap(CAP_COMMON_CFG, 4, 0, 0x10, None);
    let (b, _) = modern_backend(F_LOW, caps);
    let e = VirtioPci::probe(b).unwrap_err().to_string();
    assert!(e.contains("needs"), "{e}");
    // Huge offsets: no overflow.
    let mut caps = modern_caps(4, 0);
    caps[4].1 = vcap(CAP_COMMON_CFG, 4, u32::MAX, u32::MAX, None);
    let (b, _) = modern_backend(F_LOW, caps);
    assert!(VirtioPci::probe(b).is_err());
    // Not VERSION_1.
    let (b, bar) = modern_backend(F_LOW & !1, modern_caps(4, 0));
    let e = VirtioPci::probe(b).unwrap_err().to_string();
    assert!(e.contains("VERSION_1"), "{e}");
    assert_eq!(
        bar.read8_at(common::STATUS).unwrap(),
        0,
        "FAILED, then reset on drop"
    );
    // Not virtio-net.
    let mut c = config(0x1041, &modern_caps(4, 0));
    c[2] = 0x42;
    let b = Arc::new(FakeBackend::new(c, HashMap::new()));
    assert!(VirtioPci::probe(b).is_err());
    // A modern-only id without capabilities.
    let b = Arc::new(FakeBackend::new(config(0x1041, &[]), HashMap::new()));
    assert!(VirtioPci::probe(b).is_err());
}

/// The common configuration as a device would behave, recording every write.
#[derive(Default)]
struct SimCommon {
    st: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    features: u64,
    dfselect: u32,
    gfselect: u32,
    driver_features: u64,
    status: u8,
    refuse_features_ok: bool,
    select: u16,
    num_queues: u16,
    queues: [SimQueue; 3],
    writes: Vec<(usize, u32)>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct SimQueue {
    size: u16,
    enable: u16,
    desc: u64,
    driver: u64,
    device: u64,
}

fn set_half(v: &mut u64, off: usize, base: usize, x: u32) {
    let sh = if off == base { 0 } else { 32 };
    *v = (*v & !(0xffff_ffffu64 << sh)) | (u64::from(x) << sh);
}

impl Regs for SimCommon {
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        let s = self.st.lock().unwrap_or_else(|e| e.into_inner());
        let q = s.queues.get(s.select as usize).copied();
        let v: u32 = match off {
            common::DF => (s.features >> (32 * s.dfselect)) as u32,
            common::NUM_QUEUES => s.num_queues.into(),
            common::STATUS => s.status.into(),
            common::CFG_GENERATION => 0,
            common::Q_SIZE => q.map_or(0, |q| q.size.into()),
            common::Q_NOTIFY_OFF => s.select.into(),
            common::Q_ENABLE => q.map_or(0, |q| q.enable.into()),
            _ => panic!("unexpected read at {off:#x}"),
        };
        buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
        Ok(())
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        let mut b = [0u8; 4];
        b[..buf.len()].copy_from_slice(buf);
        let v = u32::from_le_bytes(b);
        let mut s = self.st.lock().unwrap_or_else(|e| e.into_inner());
        s.writes.push((off, v));
        let sel = s.select as usize;
        match off {
            common::DFSELECT => s.dfselect = v,
            common::GFSELECT => s.gfselect = v,
            common::GF => {
                let sh = 32 * s.gfselect;
                s.driver_features =
                    (s.driver_features & !(0xffff_ffffu64 << sh)) | (u64::from(v) << sh);
            }
            common::STATUS => {
                let mut v = v as u8;
                if v == 0 {
                    let w = std::mem::take(&mut s.writes);
                    *s = SimState {
                        features: s.features,
                        refuse_features_ok: s.refuse_features_ok,
                        num_queues: s.num_queues,
                        writes: w,
                        queues: [SimQueue {
                            size: 256,
                            ..Default::default()
                        }; 3],
                        ..Default::default()
                    };
                }
                if s.refuse_features_ok {
                    v &= !STATUS_FEATURES_OK;
                }
                s.status = v;
            }
            common::MSIX | common::Q_MSIX => {}
            common::Q_SELECT => s.select = v as u16,
            common::Q_SIZE => s.queues[sel].size = v as u16,
            common::Q_ENABLE => s.queues[sel].enable = v as u16,
            o @ (0x20 | 0x24) => set_half(&mut s.queues[sel].desc, o, 0x20, v),
            o @ (0x28 | 0x2c) => set_half(&mut s.queues[sel].driver, o, 0x28, v),
            o @ (0x30 | 0x34) => set_half(&mut s.queues[sel].device, o, 0x30, v),
            _ => panic!("unexpected write at {off:#x}"),
        }
        Ok(())
    }
}

fn sim_transport(features: u64, refuse: bool) -> (VirtioPci, Arc<SimCommon>) {
    let (t, sim, _) = sim_transport_queues(features, refuse, 2);
    (t, sim)
}

/// [`sim_transport`] with `queues` queues (of 256 entries at most); also returns the
/// notify area.
fn sim_transport_queues(
    features: u64,
    refuse: bool,
    queues: u16,
) -> (VirtioPci, Arc<SimCommon>, MmioRegion) {
    let sim = Arc::new(SimCommon::default());
    {
        let mut s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
        s.num_queues = queues;
        s.features = features;
        s.refuse_features_ok = refuse;
        s.status = 0x0f; // left running by a previous driver
    }
    let notify = region_over_memory(0x100);
    let device = region_over_memory(0x100);
    let regs = ModernRegs {
        common: sim.clone(),
        notify: Arc::new(MmioWindow::new(notify.clone(), 0, 0x100).unwrap()),
        notify_mult: 4,
        notify_len: 0x100,
        device: Some(Arc::new(MmioWindow::new(device, 0, 0x100).unwrap())),
        isr: None,
    };
    let (b, _) = modern_backend(F_LOW, modern_caps(4, 0));
    let t = VirtioPci::modern_from_regs(b, regs).unwrap();
    (t, sim, notify)
}

fn status_writes(sim: &SimCommon) -> Vec<u8> {
    sim.st
        .lock()
        .unwrap()
        .writes
        .iter()
        .filter(|(o, _)| *o == common::STATUS)
        .map(|(_, v)| *v as u8)
        .collect()
}

fn rings(size: u16) -> Vec<RingSetup> {
    (0..2u16)
        .map(|i| RingSetup {
            addrs: RingAddrs {
                index: i,
                size,
                desc: 0x10_0000 + 0x10000 * u64::from(i),
                avail: 0x10_1000 + 0x10000 * u64::from(i),
                used: 0x10_2000 + 0x10000 * u64::from(i),
            },
            base: 0,
        })
        .collect()
}

const OFFERED: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_CTRL_VQ
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_F_ACCESS_PLATFORM
    | 1 << 3; // not a bit the driver wants

#[test]
fn modern_status_handshake_and_features() {
    const A: u8 = STATUS_ACKNOWLEDGE;
    const D: u8 = STATUS_DRIVER;
    const F: u8 = STATUS_FEATURES_OK;
    const K: u8 = STATUS_DRIVER_OK;
    let (mut t, sim) = sim_transport(OFFERED, false);
    assert_eq!(status_writes(&sim), vec![0, A, A | D]);
    let f = t.negotiate(WANTED_FEATURES).unwrap();
    assert_eq!(
        f,
        VIRTIO_F_VERSION_1
            | VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_MRG_RXBUF
            | VIRTIO_F_EVENT_IDX
            | VIRTIO_NET_F_STATUS
            | VIRTIO_F_ACCESS_PLATFORM
    );
    assert_eq!(
        sim.st
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .driver_features,
        f,
        "both halves written"
    );
    assert_eq!(status_writes(&sim), vec![0, A, A | D, A | D | F]);
    assert!(!t.link_up());
    t.start(&rings(128)).unwrap();
    assert_eq!(
        status_writes(&sim),
        vec![0, A, A | D, A | D | F, A | D | F | K]
    );
    {
        let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
        for (i, q) in s.queues.iter().take(2).enumerate() {
            let r = rings(128)[i].addrs;
            assert_eq!(
                *q,
                SimQueue {
                    size: 128,
                    enable: 1,
                    desc: r.desc,
                    driver: r.avail,
                    device: r.used
                }
            );
        }
        // Every queue enabled before DRIVER_OK.
        let w = &s.writes;
        let en = w.iter().rposition(|(o, _)| *o == common::Q_ENABLE).unwrap();
        let ok = w
            .iter()
            .rposition(|(o, v)| *o == common::STATUS && *v as u8 & K != 0)
            .unwrap();
        assert!(en < ok);
    }
    assert!(t.start(&rings(128)).is_err(), "already started");
    // Stop resets; a restart repeats the whole handshake.
    assert_eq!(t.stop().unwrap(), vec![0, 0]);
    sim.st
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .writes
        .clear();
    t.start(&rings(128)).unwrap();
    assert_eq!(
        status_writes(&sim),
        vec![0, A, A | D, A | D | F, A | D | F | K]
    );
    // A ring bigger than the device allows, a resumed ring: errors, device left reset.
    t.stop().unwrap();
    assert!(t.start(&rings(512)).is_err());
    let mut r = rings(128);
    r[1].base = 7;
    assert!(t.start(&r).is_err());
    assert_eq!(sim.st.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
    t.close();
    assert_eq!(*status_writes(&sim).last().unwrap(), 0);
    assert!(t.start(&rings(128)).is_err(), "closed");
}

/// Packed rings (QEMU `packed=on`): a fresh ring starts at position 0 with wrap counter
/// 1 (base 0x8000), which must be accepted; one the device handed buffers back on (or
/// base 0, what a stop reports) must be refused. The three addresses go to queue_desc,
/// queue_driver (driver event suppression) and queue_device (device event suppression).
#[test]
fn packed_rings_start_at_wrap_counter_one() {
    use crate::net::VIRTIO_F_RING_PACKED;
    use crate::virtqueue::packed::{tests::SimPackedDevice, PackedLayout};
    use crate::virtqueue::PackedQueue;
    let (mut t, sim) = sim_transport(OFFERED | VIRTIO_F_RING_PACKED, false);
    let f = t.negotiate(WANTED_FEATURES | VIRTIO_F_RING_PACKED).unwrap();
    assert_ne!(f & VIRTIO_F_RING_PACKED, 0);
    let l = PackedLayout::new(64).unwrap();
    let mem = Arc::new(memory::Segment::alloc("pci-packed-test", 2 * l.total).unwrap());
    let mut qs = [0u16, 1]
        .map(|i| PackedQueue::new(mem.clone(), usize::from(i) * l.total, i, 64, true).unwrap());
    // What the net layer hands over: the addresses and the base taken at queue setup.
    let r: Vec<RingSetup> = qs
        .iter()
        .map(|q| RingSetup {
            addrs: q.addrs(AddrMode::Iova),
            base: q.avail_idx(),
        })
        .collect();
    assert_eq!(r[0].base, PACKED_FRESH_BASE);
    // A receive buffer posted before DRIVER_OK, as the rx queue setup does.
    qs[0].push(0x1000, 2048, true).unwrap();
    qs[0].publish();
    t.start(&r).unwrap();
    {
        let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
        for (q, r) in s.queues.iter().zip(&r) {
            let a = r.addrs;
            assert_eq!((q.size, q.enable), (64, 1));
            assert_eq!((q.desc, q.driver, q.device), (a.desc, a.avail, a.used));
            assert_eq!(a.avail, a.desc + l.driver_event_off as u64);
            assert_eq!(a.used, a.desc + l.device_event_off as u64);
        }
    }
    assert_eq!(t.stop().unwrap(), vec![0, 0]);
    // Base 0 (what stop reports for a queue not set up again) is no packed start.
    let mut r0 = r.clone();
    r0[1].base = 0;
    let e = t.start(&r0).unwrap_err().to_string();
    assert!(e.contains("cannot resume"), "{e}");
    // The device handed the buffer back: the ring ran, even though the base is fresh.
    let mut dev = SimPackedDevice::at(qs[0].addrs(AddrMode::Va));
    let (id, _) = dev.take_avail()[0];
    dev.complete(id, 64);
    let e = t.start(&r).unwrap_err().to_string();
    assert!(e.contains("already ran"), "{e}");
    assert_eq!(sim.st.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
}

#[test]
fn refused_features_ok_fails_the_device() {
    let (mut t, sim) = sim_transport(OFFERED, true);
    let e = t.negotiate(WANTED_FEATURES).unwrap_err().to_string();
    assert!(e.contains("FEATURES_OK"), "{e}");
    assert_eq!(*status_writes(&sim).last().unwrap(), STATUS_FAILED);
}

fn legacy_backend(sizes: &[u16], kind: BackendKind) -> Arc<FakeBackend> {
    let mut c = config(0x1000, &[]);
    c[0x10] = 0xc1; // BAR 0: I/O space
    let mut b = FakeBackend::new(c, HashMap::new());
    b.kind = kind;
    {
        let mut m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
        m.host_features = (VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_MRG_RXBUF
            | VIRTIO_NET_F_STATUS
            | VIRTIO_F_EVENT_IDX
            | VIRTIO_NET_F_CTRL_VQ) as u32;
        m.sizes = sizes.to_vec();
        m.mac = [0x52, 0x54, 0, 0, 1, 2];
        m.status = 7;
    }
    Arc::new(b)
}

fn contiguous(mut r: Vec<RingSetup>) -> Vec<RingSetup> {
    for x in r.iter_mut() {
        let l = Layout::new(x.addrs.size).unwrap();
        x.addrs.avail = x.addrs.desc + l.avail_off as u64;
        x.addrs.used = x.addrs.desc + l.used_off as u64;
    }
    r
}

#[test]
fn legacy_device_over_io_bar() {
    let b = legacy_backend(&[256, 256], BackendKind::Model);
    let mut t = VirtioPci::probe(b.clone()).unwrap();
    assert!(!t.is_modern());
    assert_eq!(t.queue_size().unwrap(), 256);
    let f = t.negotiate(WANTED_FEATURES).unwrap();
    assert_eq!(f & VIRTIO_F_VERSION_1, 0);
    assert_eq!(
        f,
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_F_EVENT_IDX | VIRTIO_NET_F_STATUS
    );
    assert_eq!(net_hdr_len(f), 12);
    assert_eq!(net_hdr_len(f & !VIRTIO_NET_F_MRG_RXBUF), 10);
    assert_eq!(
        b.legacy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .guest_features as u64,
        f
    );
    assert_eq!(t.mac(), Some(MacAddr([0x52, 0x54, 0, 0, 1, 2])));
    // Wrong ring size (legacy sizes are fixed), non-contiguous ring: errors.
    let e = t.start(&contiguous(rings(128))).unwrap_err().to_string();
    assert!(e.contains("exactly"), "{e}");
    let mut r = contiguous(rings(256));
    r[1].addrs.used += 0x1000;
    let e = t.start(&r).unwrap_err().to_string();
    assert!(e.contains("contiguous"), "{e}");
    let n = t.notifier(1).unwrap();
    n.notify();
    assert!(
        b.legacy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notified
            .is_empty(),
        "not before DRIVER_OK"
    );
    let r = contiguous(rings(256));
    t.start(&r).unwrap();
    assert_eq!(
        b.legacy.lock().unwrap_or_else(|e| e.into_inner()).notified,
        vec![1],
        "kicked at start"
    );
    assert!(t.link_up());
    {
        let m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(m.pfn, [0x100, 0x110, 0]);
        // No FEATURES_OK in legacy; resets after the failed starts.
        assert_eq!(&m.status_writes[..4], &[0, 1, 3, 0]);
        assert_eq!(
            &m.status_writes[m.status_writes.len() - 4..],
            &[0, 1, 3, 7][..]
        );
    }
    n.notify();
    assert_eq!(
        b.legacy.lock().unwrap_or_else(|e| e.into_inner()).notified,
        vec![1, 1]
    );
    // A ring beyond 16 TiB, and this backend cannot add an IOMMU alias: error.
    t.stop().unwrap();
    let mut hi = r.clone();
    for x in hi.iter_mut() {
        for a in [&mut x.addrs.desc, &mut x.addrs.avail, &mut x.addrs.used] {
            *a += 0x7f00_0000_0000;
        }
    }
    let e = t.start(&hi).unwrap_err().to_string();
    assert!(e.contains("32-bit"), "{e}");
    t.close();
    assert_eq!(b.legacy.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
    // Legacy queues of different sizes, a missing queue, a size not a power of two.
    for sizes in [[256, 128], [256, 0], [256, 100]] {
        let t = VirtioPci::probe(legacy_backend(&sizes, BackendKind::Model)).unwrap();
        assert!(t.queue_size().is_err(), "{sizes:?}");
    }
    // BAR 0 not an I/O BAR.
    let b = legacy_backend(&[256, 256], BackendKind::Model);
    b.cfg.lock().unwrap_or_else(|e| e.into_inner())[0x10] = 0;
    assert!(VirtioPci::probe(b).is_err());
}

#[test]
fn bypassing_devices_refuse_iova_as_va_behind_vfio() {
    // The fake VFIO device was opened for IOVA-as-VA (the EAL's default).
    let b = legacy_backend(&[256, 256], BackendKind::Vfio);
    assert_eq!(b.iova_mode(), IovaMode::Va);
    let mut t = VirtioPci::probe(b.clone()).unwrap();
    let e = t.negotiate(WANTED_FEATURES).unwrap_err().to_string();
    assert!(e.contains("--iova-mode pa"), "{e}");
    assert_eq!(
        b.legacy.lock().unwrap_or_else(|e| e.into_inner()).status,
        STATUS_FAILED
    );
    // The same device opened for IOVA-as-PA (`--iova-mode pa`) is given physical addresses.
    let b = Arc::new(FakeBackend {
        iova_mode: IovaMode::Pa,
        ..Arc::into_inner(legacy_backend(&[256, 256], BackendKind::Vfio)).unwrap()
    });
    let mut t = VirtioPci::probe(b.clone()).unwrap();
    let f = t.negotiate(WANTED_FEATURES).unwrap();
    assert_eq!(f & VIRTIO_F_ACCESS_PLATFORM, 0);
    assert_eq!(
        b.legacy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .guest_features,
        f as u32
    );
    // A modern device offering ACCESS_PLATFORM is fine behind VFIO.
    let (b, bar) = modern_backend(F_LOW | (1 << 1), modern_caps(4, 0));
    let mut t = VirtioPci::probe(Arc::new(FakeBackend {
        kind: BackendKind::Vfio,
        ..Arc::into_inner(b).unwrap()
    }))
    .unwrap();
    let f = t.negotiate(WANTED_FEATURES).unwrap();
    assert_ne!(f & VIRTIO_F_ACCESS_PLATFORM, 0);
    assert_ne!(
        bar.read8_at(common::STATUS).unwrap() & STATUS_FEATURES_OK,
        0
    );
}

/// The control ring as the net layer passes it: index 2, after the data rings.
fn ctrl_ring(size: u16) -> RingSetup {
    RingSetup {
        addrs: RingAddrs {
            index: CTRL_QUEUE_INDEX,
            size,
            desc: 0x12_0000,
            avail: 0x12_1000,
            used: 0x12_2000,
        },
        base: 0,
    }
}

const CTRL_WANTED: u64 = WANTED_FEATURES | VIRTIO_NET_F_CTRL_VQ | crate::net::VIRTIO_NET_F_CTRL_RX;

/// A modern device with a third queue serves the control queue: the transport says
/// so, the net layer asks for CTRL_VQ + CTRL_RX (not MQ), and the control ring is
/// programmed at index 2 with its own size (any power of two up to the maximum).
#[test]
fn modern_control_queue_at_index_2() {
    use crate::net::{VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_MQ};
    let offered = OFFERED | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ;
    // Two queues only: no control queue, whatever the features say.
    let (t, _) = sim_transport(offered, false);
    assert_eq!(t.ctrl_mode(), CtrlMode::None);
    let (mut t, sim, notify) = sim_transport_queues(offered, false, 3);
    assert_eq!(t.ctrl_mode(), CtrlMode::Device);
    assert_eq!(t.max_queue_pairs(), 1);
    let f = t.negotiate(CTRL_WANTED).unwrap();
    assert_eq!(
        f & (VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ),
        VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX
    );
    let n = t.notifier(CTRL_QUEUE_INDEX).unwrap();
    let mut r = rings(256);
    r.push(ctrl_ring(CTRL_QUEUE_SIZE));
    t.start(&r).unwrap();
    {
        let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
        let c = ctrl_ring(CTRL_QUEUE_SIZE).addrs;
        assert_eq!(
            s.queues[2],
            SimQueue {
                size: CTRL_QUEUE_SIZE,
                enable: 1,
                desc: c.desc,
                driver: c.avail,
                device: c.used
            }
        );
        assert_eq!((s.queues[0].size, s.queues[1].size), (256, 256));
    }
    // Queue 2's doorbell (notify_off 2 * multiplier 4) rung at start, then on notify.
    assert_eq!(notify.read16_at(8).unwrap(), CTRL_QUEUE_INDEX);
    notify.write16_at(8, 0xeeee).unwrap();
    n.notify();
    assert_eq!(notify.read16_at(8).unwrap(), CTRL_QUEUE_INDEX);
    assert_eq!(t.stop().unwrap(), vec![0, 0, 0]);
    // Any power of two up to the maximum; not beyond it, not other sizes.
    for (size, ok) in [(16, true), (256, true), (512, false), (48, false)] {
        let mut r = rings(256);
        r.push(ctrl_ring(size));
        assert_eq!(t.start(&r).is_ok(), ok, "{size}");
        if ok {
            assert_eq!(
                sim.st.lock().unwrap_or_else(|e| e.into_inner()).queues[2].size,
                size
            );
            t.stop().unwrap();
        }
    }
    // The control ring must follow the data rings at its own index.
    let mut r = rings(256);
    let mut c = ctrl_ring(64);
    c.addrs.index = 3;
    r.push(c);
    assert!(t.start(&r).unwrap_err().to_string().contains("order"));
    let e = t.start(&[rings(256)[0], ctrl_ring(64)]).unwrap_err();
    assert!(e.to_string().contains("control ring"), "{e}");
    // Through the net layer: the control queue is the device's, at index 2, one pair.
    let (t, _, _) = sim_transport_queues(offered, false, 3);
    let net = VirtioNet::new(
        NetConf {
            driver: crate::PCI_DRIVER_NAME,
            name: "pci-ctrl".into(),
            queue_size: 256,
            queue_pairs: 1,
            mac: MacAddr::local(1),
        },
        Box::new(t),
    )
    .unwrap();
    assert_eq!(net.ctrl_mode(), CtrlMode::Device);
}

/// Legacy queue sizes are fixed: the control queue is used only when the device's is
/// exactly the control ring's size (QEMU: 64), and the ring must have that size.
#[test]
fn legacy_control_queue_uses_the_fixed_size() {
    for sizes in [&[256, 256][..], &[256, 256, 128], &[256, 256, 0]] {
        let t = VirtioPci::probe(legacy_backend(sizes, BackendKind::Model)).unwrap();
        assert_eq!(t.ctrl_mode(), CtrlMode::None, "{sizes:?}");
    }
    let b = legacy_backend(&[256, 256, CTRL_QUEUE_SIZE], BackendKind::Model);
    let mut t = VirtioPci::probe(b.clone()).unwrap();
    assert_eq!(t.ctrl_mode(), CtrlMode::Device);
    assert_eq!(t.queue_size().unwrap(), 256, "data rings keep their size");
    let f = t.negotiate(CTRL_WANTED).unwrap();
    assert_ne!(f & VIRTIO_NET_F_CTRL_VQ, 0);
    t.notifier(CTRL_QUEUE_INDEX).unwrap();
    // A control ring of another size than the device's: refused.
    let mut r = contiguous(rings(256));
    r.extend(contiguous(vec![ctrl_ring(128)]));
    let e = t.start(&r).unwrap_err().to_string();
    assert!(e.contains("exactly"), "{e}");
    let mut r = contiguous(rings(256));
    r.extend(contiguous(vec![ctrl_ring(CTRL_QUEUE_SIZE)]));
    t.start(&r).unwrap();
    let m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(m.pfn, [0x100, 0x110, 0x120]);
    assert_eq!(m.notified, vec![CTRL_QUEUE_INDEX], "kicked at start");
}
