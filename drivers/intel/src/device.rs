//! One ethdev [`Device`] for every Intel chip: the chip-specific parts (reset, link,
//! MAC setup, register layout) come from a [`Chip`]; the driver-loaded handshake, MAC
//! address, RSS, queue setup, global enables, start/stop with resume, promiscuous mode
//! and statistics are written once here.

use crate::bar::{Bar, QueuePos, RegBits};
use crate::counters::{self, CounterSet, CounterSpec};
use crate::msix::{LineRegs, MsixRegs};
use crate::queues::{QueueLayout, RssRegs};
use crate::regs::{self, CTRL_EXT, CTRL_EXT_DRV_LOAD, SRRCTL_DESCTYPE_ADV_ONEBUF};
use crate::rx::{RxCsumBits, RxIntr, RxRing, RxRingConf};
use crate::tx::{TxRing, TxRingConf};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PciId, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, DEFAULT_MTU,
};
use pmd_core::pci::{IrqWait, PciBackend};
use pmd_core::{Error, Result};
use std::cell::RefCell;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long `start` waits for the link before reporting it down (and starting anyway, as
/// a cable may be plugged in later).
pub const LINK_WAIT: Duration = Duration::from_secs(2);

/// What differs between Intel chips: identity, register layout, and the few steps that
/// are not the same on each (bring-up, link, MAC setup, frame size, VLAN stripping).
///
/// A chip is a value the device holds (`Default` makes it): physical functions keep no
/// state in it, a virtual function keeps its mailbox to the physical function there.
pub trait Chip: Default + Send + 'static {
    /// Driver name (DPDK's, e.g. `net_ixgbe`).
    const DRIVER: &'static str;
    /// Chip name for messages (e.g. `82599`).
    const CHIP: &'static str;
    /// One line for `--help`.
    const DESCRIPTION: &'static str;
    /// PCI functions the driver claims.
    const PCI_IDS: &'static [PciId];
    /// Length of BAR 0 (the register space).
    const BAR0_LEN: usize = regs::BAR0_LEN;
    /// Where the queue registers are.
    const LAYOUT: QueueLayout;
    /// Where the RSS registers are and which hash types the chip turns on; `None`: the
    /// function cannot spread flows itself (a VF, whose pool the PF configures).
    const RSS: Option<RssRegs>;
    /// Most rx / tx queues.
    const MAX_QUEUES: (u16, u16);
    /// Write-back error bits that make a received packet bad.
    const RX_ERR: u32;
    /// Write-back checksum error bits.
    const RX_CSUM: RxCsumBits;
    /// TXDCTL value without the enable bit (thresholds).
    const TXDCTL: u32;
    /// SRRCTL's drop-enable bit (drop frames when a queue has no descriptor).
    const SRRCTL_DROP_EN: u32;
    /// The global receive enable (`None`: the queue enables are all there is).
    const RX_ENABLE: Option<RegBits>;
    /// The global transmit enable (`None`: the queue enables are all there is).
    const TX_ENABLE: Option<RegBits>;
    /// Receive Address Low of entry 0, where the NVM's MAC address is after reset
    /// (Receive Address High follows at +4), for the default [`Chip::bring_up`].
    const RAL0: usize;
    /// The good packet and octet counters.
    const GOOD_COUNTERS: &'static [CounterSpec] = counters::GOOD;
    /// Statistics registers beyond the good packet and octet counters.
    const COUNTERS: &'static [CounterSpec];
    /// Largest frame the MAC takes, CRC included (without VLAN tags: the MAC allows
    /// four more bytes per tag).
    const MAX_FRAME: u32 = regs::JUMBO_MAX_FRAME;
    /// Receive offloads the function offers.
    const RX_OFFLOADS: RxOffloads =
        RxOffloads(RxOffloads::SCATTER.0 | RxOffloads::VLAN_STRIP.0 | RxOffloads::CHECKSUM.0);

    /// Takes the function from power-on to ready and returns its MAC address. The
    /// default, for physical functions: [`Chip::reset`], the driver-loaded bit, the
    /// address in receive-address entry 0, [`Chip::start_link`].
    fn bring_up(&self, bar: &Bar) -> Result<MacAddr> {
        self.reset(bar)?;
        bar.set_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);
        let mac = bar.read_mac(Self::RAL0, Self::RAL0 + 4)?;
        self.start_link(bar);
        Ok(mac)
    }
    /// Hands the function back at close (the default clears the driver-loaded bit, for
    /// the firmware).
    fn release(&self, bar: &Bar) {
        bar.clear_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);
    }
    /// Masks interrupts, resets the device and waits until it is ready.
    fn reset(&self, bar: &Bar) -> Result<()>;
    /// Starts link setup (auto-negotiation) after reset.
    fn start_link(&self, bar: &Bar);
    /// Current link state.
    fn link(&self, bar: &Bar) -> Link;
    /// MAC setup at configure time, receive and transmit disabled: CRC strip, broadcast
    /// acceptance, padding (a VF: its reset again, if its PF reset). Filters and RSS
    /// follow.
    fn configure(&self, bar: &Bar) -> Result<()>;
    /// Sets unicast/multicast promiscuous mode.
    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()>;
    /// Programs the largest frame accepted, `mfs` bytes with CRC and without VLAN tags
    /// (jumbo frames enabled above [`regs::STD_MAX_FRAME`]).
    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()>;
    /// Turns hardware VLAN stripping on or off for rx queue `q` (tag into the write-back
    /// descriptor).
    fn set_vlan_strip(&self, bar: &Bar, q: usize, on: bool);
    /// Called around the programming of a tx queue (`true` before, `false` after).
    fn tx_setup_window(&self, bar: &Bar, open: bool) {
        let _ = (bar, open);
    }
    /// Replaces the multicast list (the default: not supported).
    fn set_multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        let _ = list;
        Err(bar.err("no multicast list in this driver; use promiscuous mode"))
    }
    /// Adds or removes a VLAN filter (the default: not supported).
    fn set_vlan_filter(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        let _ = (vlan, on);
        Err(bar.err("no VLAN filter in this driver"))
    }
    /// Whether the port starts promiscuous (physical functions: yes, as DPDK's testpmd
    /// leaves them; a VF asks its PF only when told to).
    const PROMISC_AT_START: bool = true;
    /// More xstats of the chip's own (a VF's mailbox counts), after the counters'.
    fn xstats(&self, out: &mut Vec<(String, u64)>) {
        let _ = out;
    }
    /// The MSI-X registers, if the driver runs this chip's rx queues on interrupts
    /// ([`MsixRegs::setup`]); `None`: its queues are polled only.
    const MSIX: Option<MsixRegs> = None;
    /// The legacy interrupt registers, if rx queue 0 may sleep on the device's INTx line
    /// where there are no MSI-X vectors (UIO); `None`: it is polled there.
    const LINE: Option<LineRegs> = None;
}

/// An initialised Intel NIC as an ethdev device.
pub struct IntelDevice<C: Chip> {
    backend: Arc<dyn PciBackend>,
    bar: Bar,
    mac: MacAddr,
    rxq: Vec<QueuePos>,
    txq: Vec<QueuePos>,
    promisc: bool,
    started: bool,
    mtu: u16,
    /// Per tx queue: tells its ring that the hardware context is gone (after a stop).
    tx_ctx_lost: Vec<Arc<AtomicBool>>,
    /// Interrupts enabled at configure, rx queue `q` taking entry `q` at its setup: MSI-X
    /// vectors, or under UIO the device's INTx line (entry 0 only); empty without them.
    irqs: Vec<Option<Box<dyn IrqWait>>>,
    /// The other-causes vector and its number, with the link-state-change cause enabled
    /// on it ([`MsixRegs::arm_link`]); `None` without vectors.
    link_irq: Option<(Box<dyn IrqWait>, usize)>,
    /// Link interrupts acknowledged (xstat `link_interrupts`).
    link_intrs: AtomicU64,
    counters: RefCell<CounterSet>,
    chip: C,
}

impl<C: Chip> std::fmt::Debug for IntelDevice<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(C::DRIVER)
            .field("name", &self.bar.name())
            .field("mac", &self.mac)
            .finish()
    }
}

impl<C: Chip> IntelDevice<C> {
    /// Enables DMA, maps BAR 0, resets the chip, reads its MAC and starts link setup.
    pub fn init(backend: Arc<dyn PciBackend>, name: &str) -> Result<IntelDevice<C>> {
        backend.set_bus_master(true)?;
        let region = backend.map_bar(0)?;
        if region.len() < C::BAR0_LEN {
            return Err(Error::driver(
                C::DRIVER,
                format!(
                    "{name}: BAR 0 is {:#x} bytes, an {} has {:#x}; is this the right device?",
                    region.len(),
                    C::CHIP,
                    C::BAR0_LEN
                ),
            ));
        }
        let bar = Bar::new(region, C::DRIVER, name);
        let chip = C::default();
        let mac = chip.bring_up(&bar)?;
        let mut counters = CounterSet::new(&[C::GOOD_COUNTERS, C::COUNTERS]);
        counters.clear_hw(bar.region());
        tracing::info!(device = name, chip = C::CHIP, %mac, "device initialised");
        Ok(IntelDevice {
            backend,
            bar,
            mac,
            rxq: Vec::new(),
            txq: Vec::new(),
            promisc: C::PROMISC_AT_START,
            started: false,
            mtu: DEFAULT_MTU,
            tx_ctx_lost: Vec::new(),
            irqs: Vec::new(),
            link_irq: None,
            link_intrs: AtomicU64::new(0),
            counters: RefCell::new(counters),
            chip,
        })
    }

    /// The device's registers (for chip-specific extras and tests).
    pub fn bar(&self) -> &Bar {
        &self.bar
    }

    /// Enables one MSI-X vector per rx queue plus one for other causes (the link-state
    /// change, enabled here), if the chip's rx queues run on interrupts and the device
    /// access gives them (VFIO, the model).
    /// Without them (UIO's single line, too many queues, vectors still held by the queues
    /// of an earlier configuration) the queues are polled only: said at debug level, as
    /// interrupts are optional.
    fn enable_msix(&mut self, rx_queues: usize) {
        self.irqs.clear();
        self.link_irq = None;
        if self.backend.kind() == pmd_core::pci::BackendKind::Uio {
            self.enable_line();
            return;
        }
        let Some(msix) = C::MSIX.filter(|_| rx_queues < 16) else {
            return;
        };
        match self.backend.enable_irqs(rx_queues as u32 + 1) {
            Ok(mut v) => {
                msix.setup(&self.bar, rx_queues);
                if v.len() > rx_queues {
                    let misc = v.remove(rx_queues);
                    msix.arm_link(&self.bar, rx_queues);
                    self.link_irq = Some((misc, rx_queues));
                }
                self.irqs = v.into_iter().map(Some).collect();
            }
            Err(e) => tracing::debug!(
                device = self.bar.name(),
                "no rx interrupts (the queues are polled only): {e}"
            ),
        }
    }

    /// Under UIO, the device's one INTx line in the chip's legacy interrupt mode (MSI-X
    /// mode off, every cause masked and cleared): for rx queue 0, if the chip has it.
    fn enable_line(&mut self) {
        let Some(line) = C::LINE else {
            return;
        };
        self.bar.wr(line.imc, u32::MAX);
        let _ = self.bar.rd(line.icr);
        match self.backend.enable_irqs(1) {
            Ok(v) => self.irqs = v.into_iter().take(1).map(Some).collect(),
            Err(e) => tracing::debug!(
                device = self.bar.name(),
                "no rx interrupt (the queues are polled only): {e}"
            ),
        }
    }

    /// Rx queue `q`'s interrupt, if vectors were enabled at configure (or, under UIO,
    /// the line, for queue 0).
    fn rx_intr(&mut self, q: usize) -> Result<Option<RxIntr>> {
        let Some(irq) = self.irqs.get_mut(q).and_then(Option::take) else {
            return Ok(None);
        };
        if self.backend.kind() == pmd_core::pci::BackendKind::Uio {
            let Some(line) = C::LINE else {
                return Ok(None);
            };
            return Ok(Some(RxIntr {
                irq,
                eims: self.bar.reg32(line.ims)?,
                eimc: self.bar.reg32(line.imc)?,
                bit: line.rx_cause,
                line_icr: Some(self.bar.reg32(line.icr)?),
            }));
        }
        let Some(msix) = C::MSIX else {
            return Ok(None);
        };
        Ok(Some(RxIntr {
            irq,
            eims: self.bar.reg32(msix.eims)?,
            eimc: self.bar.reg32(msix.eimc)?,
            bit: 1 << q,
            line_icr: None,
        }))
    }

    /// Sets or clears a global enable, if the chip has one.
    fn global_enable(&self, bits: Option<RegBits>, on: bool) {
        if let Some(b) = bits {
            self.bar.set_bits_to(b.reg, b.bits, on);
        }
    }

    /// Frame size register value for `mtu`: Ethernet header and CRC added.
    fn mfs(mtu: u16) -> u32 {
        (u32::from(mtu) + ETH_HLEN_CRC).min(C::MAX_FRAME)
    }
}

/// Ethernet header plus CRC: what MAXFRS/RLPML count beyond the MTU.
const ETH_HLEN_CRC: u32 = 14 + 4;

/// Most segments of a transmitted packet (see [`crate::tx::MAX_SEGS`]).
pub const TX_MAX_SEGS: u16 = crate::tx::MAX_SEGS;

impl<C: Chip> Device for IntelDevice<C> {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: C::DRIVER,
            max_rx_queues: C::MAX_QUEUES.0,
            max_tx_queues: C::MAX_QUEUES.1,
            min_desc: 64,
            max_desc: 4096,
            default_desc: 512,
            // The ring engine indexes with a mask: a power of two >= 64 (rx.rs, tx.rs).
            desc_pow2: true,
            rx_offload_capa: C::RX_OFFLOADS,
            tx_offload_capa: TxOffloads::MULTI_SEGS
                | TxOffloads::CHECKSUM
                | TxOffloads::TCP_TSO
                | TxOffloads::VLAN_INSERT,
            // With a VLAN tag, MTU + 14 + 4 bytes (no CRC).
            max_rx_pktlen: C::MAX_FRAME,
            max_mtu: (C::MAX_FRAME - ETH_HLEN_CRC) as u16,
            nb_seg_max: TX_MAX_SEGS,
            nb_mtu_seg_max: TX_MAX_SEGS,
            ..Default::default()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        let (max_rx, max_tx) = C::MAX_QUEUES;
        if conf.rx_queues == 0 || conf.rx_queues > max_rx {
            return Err(self.bar.err(format!(
                "{} rx queues: 1..={max_rx} supported",
                conf.rx_queues
            )));
        }
        if conf.tx_queues == 0 || conf.tx_queues > max_tx {
            return Err(self.bar.err(format!(
                "{} tx queues: 1..={max_tx} supported",
                conf.tx_queues
            )));
        }
        self.global_enable(C::RX_ENABLE, false);
        // Counted up to here; a reset in the chip's configure may restart its counters.
        self.counters.borrow_mut().fold(self.bar.region());
        self.chip.configure(&self.bar)?;
        self.counters.borrow_mut().rebase(self.bar.region());
        self.chip.set_promisc(&self.bar, self.promisc)?;
        if let Some(rss) = C::RSS {
            rss.program(&self.bar, conf.rx_queues as usize);
        }
        self.chip.set_max_frame(&self.bar, Self::mfs(self.mtu))?;
        self.rxq = vec![QueuePos::default(); conf.rx_queues as usize];
        self.enable_msix(conf.rx_queues as usize);
        self.txq = vec![QueuePos::default(); conf.tx_queues as usize];
        self.tx_ctx_lost = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let q = qid as usize;
        let l = C::LAYOUT;
        l.disable(&self.bar, l.rxdctl(q));
        let (tail, enable) = l.rx_handles(&self.bar, q)?;
        // The queue's vector (once: a queue set up again is polled only).
        let intr = self.rx_intr(q)?;
        let ring = RxRing::new(RxRingConf {
            driver: C::DRIVER,
            name: format!("{}-rx{qid}", self.bar.name()),
            size: conf.nb_desc,
            pool: conf.pool,
            tail,
            error_mask: C::RX_ERR,
            port: conf.port,
            stats: conf.stats,
            vlan_strip: conf.offloads.contains(RxOffloads::VLAN_STRIP),
            scatter: conf.offloads.contains(RxOffloads::SCATTER),
            // A tagged frame may be 4 bytes longer; the CRC is stripped.
            max_frame: (C::MAX_FRAME + 4) as usize,
            csum: Some(C::RX_CSUM),
            enable: Some(enable),
            intr,
        })?;
        if ring.buf_len() < 2048 {
            return Err(self.bar.err(format!(
                "rx queue {qid}: pool buffers hold {} bytes; at least 2048 are needed",
                ring.buf_len()
            )));
        }
        // Buffer size in KiB (SRRCTL.BSIZEPACKET), at most 16 KiB.
        let kib = (ring.buf_len() / 1024).min(16) as u32;
        let srrctl = kib | SRRCTL_DESCTYPE_ADV_ONEBUF | C::SRRCTL_DROP_EN;
        self.rxq[q] = l.program_rx(&self.bar, q, &ring, srrctl);
        self.chip
            .set_vlan_strip(&self.bar, q, conf.offloads.contains(RxOffloads::VLAN_STRIP));
        Ok(Box::new(ring))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let q = qid as usize;
        let l = C::LAYOUT;
        l.disable(&self.bar, l.txdctl(q));
        let (tail, enable) = l.tx_handles(&self.bar, q)?;
        let ring = TxRing::new(TxRingConf {
            driver: C::DRIVER,
            name: format!("{}-tx{qid}", self.bar.name()),
            size: conf.nb_desc,
            tail,
            stats: conf.stats,
            enable: Some(enable),
            ctx_lost: self.tx_ctx_lost[q].clone(),
        })?;
        self.chip.tx_setup_window(&self.bar, true);
        self.txq[q] = l.program_tx(&self.bar, q, &ring);
        self.chip.tx_setup_window(&self.bar, false);
        Ok(Box::new(ring))
    }

    fn start(&mut self) -> Result<()> {
        let l = C::LAYOUT;
        self.chip.set_max_frame(&self.bar, Self::mfs(self.mtu))?;
        self.global_enable(C::TX_ENABLE, true);
        for (q, pos) in self.txq.iter().enumerate() {
            l.enable_tx(&self.bar, q, *pos, C::TXDCTL)?;
        }
        for (q, pos) in self.rxq.iter().enumerate() {
            l.enable_rx(&self.bar, q, *pos)?;
        }
        self.global_enable(C::RX_ENABLE, true);
        self.started = true;
        let chip = &self.chip;
        let link = match self.bar.wait("link up", LINK_WAIT, |b| chip.link(b).up) {
            Ok(()) => self.chip.link(&self.bar),
            Err(_) => {
                tracing::warn!(
                    device = self.bar.name(),
                    "link is down after {} s; check the cable and the link partner",
                    LINK_WAIT.as_secs()
                );
                Link::default()
            }
        };
        tracing::info!(
            device = self.bar.name(),
            %link,
            rxq = self.rxq.len(),
            txq = self.txq.len(),
            "started"
        );
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        let l = C::LAYOUT;
        self.global_enable(C::RX_ENABLE, false);
        // The rings are frozen while the port is stopped: resume where the device stopped.
        for q in 0..self.rxq.len() {
            self.rxq[q] = l.stop_rx(&self.bar, q);
        }
        for q in 0..self.txq.len() {
            self.txq[q] = l.stop_tx(&self.bar, q);
            self.tx_ctx_lost[q].store(true, Ordering::Relaxed);
        }
        self.global_enable(C::TX_ENABLE, false);
        self.counters.borrow_mut().fold(self.bar.region());
        self.started = false;
        Ok(())
    }

    fn close(&mut self) {
        if self.started {
            let _ = self.stop();
        }
        // Hand the device back (to firmware, or the PF) before DMA stops.
        self.chip.release(&self.bar);
        let _ = self.backend.set_bus_master(false);
    }

    fn link(&self) -> Link {
        self.chip.link(&self.bar)
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.chip.set_promisc(&self.bar, on)?;
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    fn set_mc_addr_list(&mut self, list: &[MacAddr]) -> Result<()> {
        self.chip.set_multicast(&self.bar, list)
    }

    fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        self.chip.set_vlan_filter(&self.bar, vlan, on)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        let max = C::MAX_FRAME - ETH_HLEN_CRC;
        if u32::from(mtu) > max {
            return Err(self.bar.err(format!(
                "MTU {mtu} is above the {} maximum of {max}; lower it",
                C::CHIP
            )));
        }
        self.chip.set_max_frame(&self.bar, Self::mfs(mtu))?;
        self.mtu = mtu;
        Ok(())
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut c = self.counters.borrow_mut();
        c.fold(self.bar.region());
        let mut v = c.to_vec();
        v.push((
            "link_interrupts".into(),
            self.link_intrs.load(Ordering::Relaxed),
        ));
        self.chip.xstats(&mut v);
        v
    }

    fn link_intr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.link_irq.as_ref().map(|(irq, _)| irq.fd())
    }

    fn link_intr_ack(&self) {
        let (Some(msix), Some((irq, misc))) = (C::MSIX, &self.link_irq) else {
            return;
        };
        // Drained first: a change after the cause is cleared signals the eventfd again.
        if irq.wait(0).unwrap_or(0) > 0 {
            self.link_intrs.fetch_add(1, Ordering::Relaxed);
        }
        msix.ack_link(&self.bar, *misc);
    }
}
