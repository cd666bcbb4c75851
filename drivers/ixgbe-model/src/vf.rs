//! SR-IOV virtual functions: each VF is a PCI function of its own (82599 VF, device
//! 0x10ED) whose 16 KiB BAR 0 is the VF register window of the datasheet (8.3,
//! [`crate::vfregs`]): control and reset, link status, the mailbox, two queue pairs and
//! free-running statistics.
//!
//! The VF's queues are model queues (VF n's queue i is [`vf_queue`]`(n, i)`), so its
//! queue registers are windows onto the PF's register blocks of those queues and the
//! PF's receive and transmit engines serve them, DMA going through the same IOMMU. What
//! is the VF's own: its configuration space (bus mastering), its mailbox and the PF's
//! record of it ([`crate::pfmbx`]), its counters, and plain storage for the registers
//! the model gives no meaning (the interrupt registers among them: a VF driver polls).

use crate::conf::{MbxFault, ModelConf};
use crate::config::ConfigSpace;
use crate::device::Device;
use crate::engine::Engine;
use crate::hw::{vf_queue, DEVICE_82599_VF, VF_QUEUE_BASE};
use crate::lock;
use crate::model::Handle;
use crate::pfmbx::{self, VfCore};
use crate::regs::{rdbal, rxdctl, tdbal, txdctl, CTRL, CTRL_RST, DCTL_ENABLE};
use crate::stats::VfCounters;
use crate::vfregs::*;
use pmd_core::memory::{IovaMode, SegmentInfo};
use pmd_core::pci::{BackendKind, IrqWait, MmioRegion, PciAddr, PciBackend, RegisterModel};
use pmd_core::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Mask of the 36-bit octet counters.
const OCTETS_MASK: u64 = 0xF_FFFF_FFFF;

/// The VFs of one model, and what concerns them all.
#[derive(Debug)]
pub(crate) struct Vfs {
    /// VF n at index n.
    pub list: Vec<Vf>,
    /// A PF reset in progress: Some(when it ends by itself, if ever).
    pub pf_reset: Mutex<Option<Option<Instant>>>,
    /// A timed PF reset is pending (checked without the lock).
    armed: AtomicBool,
    /// The mailbox fault, as [`MbxFault`] discriminants.
    fault: AtomicU8,
}

impl Vfs {
    /// The VFs `conf` asks for, fresh from power-on.
    pub fn new(conf: &ModelConf) -> Vfs {
        Vfs {
            list: (0..conf.vfs).map(|n| Vf::new(n, conf)).collect(),
            pf_reset: Mutex::new(None),
            armed: AtomicBool::new(false),
            fault: AtomicU8::new(fault_code(conf.faults.mbx)),
        }
    }

    /// VF `vf`, if it exists.
    pub fn get(&self, vf: u8) -> Option<&Vf> {
        self.list.get(usize::from(vf))
    }

    /// The VF owning model queue `q`, if any.
    pub fn of_queue(&self, q: usize) -> Option<&Vf> {
        let n = q.checked_sub(VF_QUEUE_BASE)? / VF_QUEUES;
        self.list.get(n)
    }

    /// Whether a timed PF reset is pending.
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Notes whether a timed PF reset is pending.
    pub fn set_armed(&self, on: bool) {
        self.armed.store(on, Ordering::Release);
    }

    /// The mailbox fault in force.
    pub fn fault(&self) -> MbxFault {
        match self.fault.load(Ordering::Acquire) {
            1 => MbxFault::Silent,
            2 => MbxFault::NackAll,
            3 => MbxFault::Garbage,
            _ => MbxFault::None,
        }
    }

    /// Switches the mailbox fault.
    pub fn set_fault(&self, f: MbxFault) {
        self.fault.store(fault_code(f), Ordering::Release);
    }
}

fn fault_code(f: MbxFault) -> u8 {
    match f {
        MbxFault::None => 0,
        MbxFault::Silent => 1,
        MbxFault::NackAll => 2,
        MbxFault::Garbage => 3,
    }
}

/// One virtual function.
#[derive(Debug)]
pub(crate) struct Vf {
    /// Its number (0-based; also its PCI function number).
    pub index: u8,
    /// Its PCI configuration space.
    pub config: ConfigSpace,
    /// Storage of the registers without a modelled meaning.
    plain: Box<[AtomicU32]>,
    /// The mailbox and the PF's record of the VF.
    pub core: Mutex<VfCore>,
    /// A copy of the record's clear-to-send, for the transmit path (no lock).
    ready: AtomicBool,
    /// Traffic and mailbox counters.
    pub counters: VfCounters,
    /// VFGORC bits 35:32, latched by the VFGORC_LSB read.
    rx_octets_high: AtomicU32,
    /// VFGOTC bits 35:32, latched by the VFGOTC_LSB read.
    tx_octets_high: AtomicU32,
}

impl Vf {
    fn new(index: u8, conf: &ModelConf) -> Vf {
        Vf {
            index,
            config: ConfigSpace::of(DEVICE_82599_VF, VF_BAR0_LEN),
            plain: (0..VF_BAR0_LEN / 4).map(|_| AtomicU32::new(0)).collect(),
            core: Mutex::new(VfCore::new(conf.vf_mac(index))),
            ready: AtomicBool::new(false),
            counters: VfCounters::default(),
            rx_octets_high: AtomicU32::new(0),
            tx_octets_high: AtomicU32::new(0),
        }
    }

    /// The model queue behind the VF's queue `q`.
    pub fn queue(&self, q: usize) -> usize {
        vf_queue(usize::from(self.index), q)
    }

    /// Whether the PF takes the VF's requests (it is clear to send).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Mirrors the PF record's clear-to-send (called under the core lock).
    pub fn set_ready(&self, on: bool) {
        self.ready.store(on, Ordering::Release);
    }

    /// Whether the VF may master the bus: its bus mastering on, the device not in reset.
    pub fn dma_allowed(&self, dev: &Device) -> bool {
        self.config.bus_master() && dev.regs.get(CTRL) & CTRL_RST == 0
    }

    /// Disables the VF's queues (under the engine lock), as a VF or PF reset does.
    pub fn stop_queues(&self, dev: &Device, engine: &mut Engine) {
        for q in 0..VF_QUEUES {
            let mq = self.queue(q);
            dev.regs.clear_bits(rxdctl(mq), DCTL_ENABLE);
            dev.regs.clear_bits(txdctl(mq), DCTL_ENABLE);
            engine.rx_queue_toggled(mq);
            engine.tx_queue_toggled(mq);
        }
    }

    /// The PF register a VF queue register stands for, if `off` is one.
    fn queue_reg(&self, off: usize) -> Option<usize> {
        let span = VF_QUEUE_STRIDE * VF_QUEUES;
        let (base, regs, pf): (usize, &[usize], fn(usize) -> usize) = match off {
            _ if (VF_RX_BASE..VF_RX_BASE + span).contains(&off) => {
                (VF_RX_BASE, VF_RX_QUEUE_REGS, rdbal)
            }
            _ if (VF_TX_BASE..VF_TX_BASE + span).contains(&off) => {
                (VF_TX_BASE, VF_TX_QUEUE_REGS, tdbal)
            }
            _ => return None,
        };
        let (q, within) = (
            (off - base) / VF_QUEUE_STRIDE,
            (off - base) % VF_QUEUE_STRIDE,
        );
        regs.contains(&within).then(|| pf(self.queue(q)) + within)
    }

    fn plain(&self, off: usize) -> Option<&AtomicU32> {
        if !off.is_multiple_of(4) {
            return None;
        }
        self.plain.get(off / 4)
    }

    /// A 36-bit octet counter's low word, latching its high bits.
    fn octets_low(count: &AtomicU64, high: &AtomicU32) -> u32 {
        let v = count.load(Ordering::Acquire) & OCTETS_MASK;
        high.store((v >> 32) as u32, Ordering::Release);
        v as u32
    }

    /// A register read of the VF's BAR 0.
    pub fn read(&self, dev: &Device, off: usize) -> u32 {
        pfmbx::tick(dev);
        let c = &self.counters;
        let count32 = |a: &AtomicU64| a.load(Ordering::Relaxed) as u32;
        match off {
            // RST self-clears at once; the other bits are not modelled.
            VFCTRL | VFSTATUS | VTEICR | VTEIMC => 0,
            VFLINKS if dev.link_is_up() => VFLINKS_UP | VFLINKS_SPEED_10G,
            VFLINKS => 0,
            VFMAILBOX => pfmbx::read_ctl(self),
            _ if (VFMBMEM..VFMBMEM + 4 * MBX_WORDS).contains(&off) => {
                lock(&self.core).mbx.words[(off - VFMBMEM) / 4]
            }
            VFGPRC => count32(&c.rx_packets),
            VFGPTC => count32(&c.tx_packets),
            VFMPRC => count32(&c.rx_multicast),
            VFGORC_LSB => Self::octets_low(&c.rx_octets, &self.rx_octets_high),
            VFGORC_MSB => self.rx_octets_high.load(Ordering::Acquire),
            VFGOTC_LSB => Self::octets_low(&c.tx_octets, &self.tx_octets_high),
            VFGOTC_MSB => self.tx_octets_high.load(Ordering::Acquire),
            _ => match self.queue_reg(off) {
                Some(pf) => dev.read(pf),
                None => self.plain(off).map_or(0, |w| w.load(Ordering::Acquire)),
            },
        }
    }

    /// A register write to the VF's BAR 0.
    pub fn write(&self, dev: &Device, off: usize, v: u32) {
        pfmbx::tick(dev);
        match off {
            VFCTRL => {
                if v & VFCTRL_RST != 0 {
                    let mut engine = lock(&dev.engine);
                    pfmbx::vf_reset(dev, &mut engine, self);
                }
            }
            // Read only.
            VFSTATUS | VFLINKS | VTEICR => {}
            VFGPRC | VFGPTC | VFMPRC | VFGORC_LSB | VFGORC_MSB | VFGOTC_LSB | VFGOTC_MSB => {}
            VFMAILBOX => {
                // With a request: the addresses SET_MAC_ADDR may not take, gathered
                // before this VF's mailbox is locked (one VF's lock at a time).
                let taken: Vec<crate::MacAddr> = if v & crate::vfregs::mbx::REQ != 0 {
                    std::iter::once(dev.mac)
                        .chain(
                            dev.vfs
                                .list
                                .iter()
                                .filter(|o| o.index != self.index)
                                .filter_map(|o| pfmbx::info(o).mac),
                        )
                        .collect()
                } else {
                    Vec::new()
                };
                pfmbx::write_ctl(self, dev.vfs.fault(), v, &taken)
            }
            _ if (VFMBMEM..VFMBMEM + 4 * MBX_WORDS).contains(&off) => {
                lock(&self.core).mbx.words[(off - VFMBMEM) / 4] = v;
            }
            _ => match self.queue_reg(off) {
                Some(pf) => dev.write(pf, v),
                None => {
                    if let Some(w) = self.plain(off) {
                        w.store(v, Ordering::Release);
                    }
                }
            },
        }
    }

    /// A function-level reset: a VF reset, and configuration space and the plain
    /// registers back to power-on values (bus mastering off).
    fn function_reset(&self, dev: &Device) {
        let mut engine = lock(&dev.engine);
        pfmbx::vf_reset(dev, &mut engine, self);
        self.config.reset();
        for w in self.plain.iter() {
            w.store(0, Ordering::Release);
        }
    }
}

/// The VF's BAR 0 as a register model; it keeps the model alive.
struct VfBar {
    handle: Arc<Handle>,
    vf: u8,
}

impl RegisterModel for VfBar {
    fn read32(&self, offset: usize) -> u32 {
        let dev = &self.handle.dev;
        dev.vfs.get(self.vf).map_or(0, |vf| vf.read(dev, offset))
    }

    fn write32(&self, offset: usize, value: u32) {
        let dev = &self.handle.dev;
        if let Some(vf) = dev.vfs.get(self.vf) {
            vf.write(dev, offset, value)
        }
    }
}

/// A VF as a PCI function (`Model82599::vf_backend`).
pub(crate) struct VfBackend {
    /// The model.
    pub handle: Arc<Handle>,
    /// The VF's number (checked to exist).
    pub vf: u8,
    /// Its PCI address.
    pub addr: PciAddr,
}

impl VfBackend {
    fn dev(&self) -> &Device {
        &self.handle.dev
    }

    fn this(&self) -> Result<&Vf> {
        self.dev()
            .vfs
            .get(self.vf)
            .ok_or_else(|| Error::driver("ixgbe-model", format!("{}: no such VF", self.addr)))
    }
}

impl PciBackend for VfBackend {
    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Model
    }

    fn iova_mode(&self) -> IovaMode {
        IovaMode::Va
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        self.this()?.config.read(offset, buf)
    }

    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        // Bus mastering off stops the VF's DMA before the write returns.
        let _engine = lock(&self.dev().engine);
        self.this()?.config.write(offset, buf)
    }

    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        if bar != 0 {
            return Err(Error::driver(
                "ixgbe-model",
                format!(
                    "{}: the 82599 VF model implements only BAR 0 (registers), not BAR {bar}",
                    self.addr
                ),
            ));
        }
        let regs = Arc::new(VfBar {
            handle: self.handle.clone(),
            vf: self.vf,
        });
        Ok(MmioRegion::over_model(regs, VF_BAR0_LEN))
    }

    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        self.dev().iommu.map(seg)
    }

    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
        let _engine = lock(&self.dev().engine);
        self.dev().iommu.unmap(seg);
        Ok(())
    }

    /// The VF model raises no interrupt: its driver polls (link through VFLINKS and the
    /// mailbox, queues through their descriptors).
    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        Err(Error::driver(
            "ixgbe-model",
            format!(
                "{}: enable_irqs({count}): the 82599 VF model has no MSI-X vectors; poll",
                self.addr
            ),
        ))
    }

    fn reset(&self) -> Result<()> {
        self.this()?.function_reset(self.dev());
        Ok(())
    }
}
