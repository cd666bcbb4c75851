//! The device: register semantics (what a read or write of each register does), resets,
//! link state and the DMA gate. The data path lives in `rx`, `tx` and `gen`, run under
//! the engine lock; register writes that stop DMA take the same lock, so once such a
//! write returns the model no longer touches the queue's memory.

use crate::conf::{MacAddr, ModelConf};
use crate::config::ConfigSpace;
use crate::desc::RxWriteBack;
use crate::engine::Engine;
use crate::hw::{RX_QUEUES, TX_QUEUES};
use crate::iommu::Iommu;
use crate::irq::{self, Interrupts};
use crate::regfile::RegFile;
use crate::regs::*;
use crate::stats::Counters;
use crate::timers::{Timers, AN_TIME, RESET_TIME};
use crate::vf::Vfs;
use crate::wire::Wire;
use crate::{lock, pfmbx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

/// Which per-queue control register an offset is.
enum QueueReg {
    /// RXDCTL of rx queue q.
    RxCtl(usize),
    /// TXDCTL of tx queue q.
    TxCtl(usize),
    /// RDH, RDT, TDH or TDT: 16-bit ring indices.
    Index { tail: bool },
}

fn queue_reg(off: usize) -> Option<QueueReg> {
    let rx_end = RX_QUEUE_BASE + QUEUE_STRIDE * RX_QUEUES;
    let tx_end = TX_QUEUE_BASE + QUEUE_STRIDE * TX_QUEUES;
    let (base, rx) = match off {
        _ if (RX_QUEUE_BASE..rx_end).contains(&off) => (RX_QUEUE_BASE, true),
        _ if (TX_QUEUE_BASE..tx_end).contains(&off) => (TX_QUEUE_BASE, false),
        _ => return None,
    };
    let q = (off - base) / QUEUE_STRIDE;
    match off {
        _ if rx && off == rxdctl(q) => Some(QueueReg::RxCtl(q)),
        _ if !rx && off == txdctl(q) => Some(QueueReg::TxCtl(q)),
        _ if off == rdt(q) || off == tdt(q) => Some(QueueReg::Index { tail: true }),
        _ if off == rdh(q) || off == tdh(q) => Some(QueueReg::Index { tail: false }),
        _ => None,
    }
}

/// One modelled 82599.
pub(crate) struct Device {
    /// Instance number (names the thread and the PCI address).
    pub id: u32,
    /// The MAC address in the EEPROM.
    pub mac: MacAddr,
    /// BAR 0.
    pub regs: RegFile,
    /// The DMA window table.
    pub iommu: Arc<Iommu>,
    /// The model's own counters.
    pub counters: Counters,
    /// PCI configuration space.
    pub config: ConfigSpace,
    /// Data-path state; held while the model touches host memory.
    pub engine: Mutex<Engine>,
    /// The MSI-X vectors and the lock of the interrupt registers (`irq`).
    pub irq: Interrupts,
    timers: Mutex<Timers>,
    timers_armed: AtomicBool,
    link_up: AtomicBool,
    /// `Faults::reset_hang`.
    pub reset_hang: bool,
    /// `Faults::rx_error_every`.
    pub rx_error_every: Option<u32>,
    /// `Faults::tx_stall`, switchable at run time.
    pub tx_stall: AtomicBool,
    /// The wire out.
    pub wire: Wire,
    /// Tells the model thread to exit.
    pub stop: AtomicBool,
    /// The model thread, to wake it on doorbells.
    pub thread: OnceLock<Thread>,
    /// The SR-IOV virtual functions (none unless `ModelConf::vfs` asks).
    pub vfs: Vfs,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("id", &self.id).finish()
    }
}

impl Device {
    /// A device fresh from power-on: reset complete, link down until auto-negotiation.
    pub fn new(id: u32, conf: &ModelConf, iommu: Arc<Iommu>) -> Device {
        let dev = Device {
            id,
            mac: conf.mac,
            regs: RegFile::new(),
            iommu,
            counters: Counters::default(),
            config: ConfigSpace::new(),
            engine: Mutex::new(Engine::new()),
            irq: Interrupts::default(),
            timers: Mutex::new(Timers {
                forced_down: conf.faults.link_down,
                ..Timers::default()
            }),
            timers_armed: AtomicBool::new(false),
            link_up: AtomicBool::new(false),
            reset_hang: conf.faults.reset_hang,
            rx_error_every: conf.faults.rx_error_every,
            tx_stall: AtomicBool::new(conf.faults.tx_stall),
            wire: Wire::new(conf.capture),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            vfs: Vfs::new(conf),
        };
        dev.finish_reset();
        dev
    }

    /// Wakes the model thread (a doorbell was written or work appeared).
    pub fn kick(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// A register read, with the side effects the datasheet gives it.
    pub fn read(&self, off: usize) -> u32 {
        self.tick_if_armed();
        if let Some(v) = self.regs.read_stat(off) {
            return v;
        }
        match off {
            // GIO master enable reads 0 once master disable is set and no DMA is pending
            // (5.2.5.3.2); DMA stops under the engine lock, so that is immediate here.
            STATUS if self.regs.get(CTRL) & CTRL_MASTER_DISABLE != 0 => {
                self.regs.get(STATUS) & !STATUS_GIO_MASTER_ENABLE
            }
            STATUS => self.regs.get(STATUS) | STATUS_GIO_MASTER_ENABLE,
            // Clear on read (8.2.3.5.1), all of it or, with GPIE.OCD, the other causes.
            EICR => irq::read_eicr(self),
            // Write-only in the datasheet, but reads return the causes without clearing
            // them: Intel's ixgbe driver reads EICS for that (its errata workaround in
            // the other-causes handler).
            EICS => self.regs.get(EICR),
            // Write-only (8.2.3.5.4).
            EIMC => 0,
            LINKS => {
                if self.tick() {
                    LINKS_UP | LINKS_SPEED_10G
                } else {
                    0
                }
            }
            _ => self.regs.get(off),
        }
    }

    /// A register write, with the side effects the datasheet gives it.
    pub fn write(&self, off: usize, v: u32) {
        self.tick_if_armed();
        match off {
            CTRL => self.write_ctrl(v),
            STATUS | LINKS => {}
            _ if RegFile::is_stat(off) => {}
            // Write 1 to clear (8.2.3.5.1).
            EICR => irq::write_eicr(self, v),
            // Software-set causes fire as real ones do.
            EICS => irq::raise(self, v),
            // Unmasking a pending cause fires it.
            EIMS => irq::write_eims(self, v),
            EIMC => irq::write_eimc(self, v),
            // Hardware-owned status bits keep their value.
            EEC => self
                .regs
                .set(EEC, (v & !EEC_ARD) | (self.regs.get(EEC) & EEC_ARD)),
            RDRXCTL => self.regs.set(
                RDRXCTL,
                (v & !RDRXCTL_DMAIDONE) | (self.regs.get(RDRXCTL) & RDRXCTL_DMAIDONE),
            ),
            AUTOC => {
                // Restart_AN self-clears (8.2.3.22.19).
                self.regs.set(AUTOC, v & !AUTOC_RESTART_AN);
                if v & AUTOC_RESTART_AN != 0 {
                    self.restart_link(true);
                }
            }
            RXCTRL | DMATXCTL => {
                // Turning receive or transmit off waits for the data path.
                let engine = lock(&self.engine);
                self.regs.set(off, v);
                drop(engine);
                self.kick();
            }
            _ => match queue_reg(off) {
                Some(QueueReg::RxCtl(q)) => self.write_queue_ctl(off, v, q, true),
                Some(QueueReg::TxCtl(q)) => self.write_queue_ctl(off, v, q, false),
                Some(QueueReg::Index { tail }) => {
                    self.regs.set(off, v & RING_INDEX_MASK);
                    if tail {
                        self.kick();
                    }
                }
                None => self.regs.set(off, v),
            },
        }
    }

    /// RXDCTL/TXDCTL: ENABLE reads back as written. Disabling waits for the data path
    /// (the engine lock), so the queue's memory is untouched once the write returns;
    /// enabling clears a fault stop.
    fn write_queue_ctl(&self, off: usize, v: u32, q: usize, rx: bool) {
        let mut engine = lock(&self.engine);
        let was_on = self.regs.get(off) & DCTL_ENABLE != 0;
        self.regs.set(off, v);
        let on = v & DCTL_ENABLE != 0;
        if on != was_on {
            if rx {
                engine.rx_queue_toggled(q);
            } else {
                engine.tx_queue_toggled(q);
            }
        }
        drop(engine);
        self.kick();
    }

    fn write_ctrl(&self, v: u32) {
        if v & CTRL_RST != 0 {
            return self.software_reset();
        }
        let engine = lock(&self.engine);
        // A reset in progress keeps RST set whatever is written; LRST self-clears.
        let rst = self.regs.get(CTRL) & CTRL_RST;
        self.regs.set(CTRL, (v & !CTRL_LRST) | rst);
        drop(engine);
        if v & CTRL_LRST != 0 {
            self.restart_link(false);
        }
    }

    /// CTRL.RST (4.6.3.2): registers and queues back to defaults at once; CTRL.RST reads
    /// set until the reset completes [`RESET_TIME`] later (never with `reset_hang`),
    /// when EEC.ARD, RDRXCTL.DMAIDONE and RAL0/RAH0 (from the EEPROM) appear. The VFs
    /// see a PF reset until then.
    fn software_reset(&self) {
        let mut engine = lock(&self.engine);
        self.clear_registers();
        self.regs.set(CTRL, CTRL_RST);
        engine.reset();
        pfmbx::pf_reset_begin(self, &mut engine, None);
        let mut t = lock(&self.timers);
        let now = Instant::now();
        t.reset_done_at = (!self.reset_hang).then(|| now + RESET_TIME);
        t.an_done_at = None;
        self.timers_armed.store(true, Ordering::Release);
        drop(t);
        drop(engine);
        self.tick();
    }

    /// A PCI function-level reset: like CTRL.RST but complete on return (it does not
    /// hang), and configuration space returns to power-on values (bus mastering off).
    pub fn function_reset(&self) {
        let mut engine = lock(&self.engine);
        self.clear_registers();
        engine.reset();
        pfmbx::pf_reset_begin(self, &mut engine, None);
        self.config.reset();
        let mut t = lock(&self.timers);
        t.reset_done_at = None;
        t.an_done_at = None;
        drop(t);
        self.finish_reset();
        drop(engine);
        self.tick();
    }

    /// Every register back to zero, the interrupt registers among them (under their lock,
    /// so no cause is half delivered across the reset). The enabled MSI-X vectors stay: as
    /// with VFIO, a function reset does not take them from the host.
    fn clear_registers(&self) {
        let _irq = self.irq.hold();
        self.regs.clear_all();
    }

    /// What the end of a reset leaves behind: EEPROM auto-read done, the MAC address in
    /// receive-address entry 0, DMA init done, and the end of the VFs' PF reset.
    fn finish_reset(&self) {
        pfmbx::pf_reset_end(self);
        let m = self.mac;
        self.regs.clear_bits(CTRL, CTRL_RST);
        self.regs.or(EEC, EEC_ARD);
        self.regs.or(RDRXCTL, RDRXCTL_DMAIDONE);
        self.regs
            .set(ral(0), u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs
            .set(rah(0), u32::from(u16::from_le_bytes([m[4], m[5]])) | RAH_AV);
    }

    /// Auto-negotiation restart (or a link reset, which renegotiates only if the link
    /// had been negotiated before): the link drops now and comes up after [`AN_TIME`].
    fn restart_link(&self, an: bool) {
        let mut t = lock(&self.timers);
        if an || t.an_done_at.is_some() {
            t.an_done_at = Some(Instant::now() + AN_TIME);
            self.timers_armed.store(true, Ordering::Release);
        }
        drop(t);
        self.tick();
    }

    /// Starts auto-negotiation as the PF's driver does when its interface comes up (the
    /// model does it for its VFs when no PF driver runs).
    pub fn start_link(&self) {
        self.restart_link(true);
    }

    /// Forces the link down, or lets it up again (renegotiating, if auto-negotiation was
    /// ever started since the last reset).
    pub fn set_link(&self, up: bool) {
        let mut t = lock(&self.timers);
        t.forced_down = !up;
        if up && t.an_done_at.is_some() {
            t.an_done_at = Some(Instant::now() + AN_TIME);
            self.timers_armed.store(true, Ordering::Release);
        }
        drop(t);
        self.tick();
    }

    /// Runs due deadlines if any are pending (cheap when none are).
    pub fn tick_if_armed(&self) {
        if self.timers_armed.load(Ordering::Acquire) {
            self.tick();
        }
    }

    /// Completes a due reset, updates the link state (raising EICR.LSC on a change, a
    /// cause on the other-causes vector) and returns whether the link is up.
    ///
    /// The cause is raised after the timers lock is released. Most callers hold no other
    /// lock; the receive path checks the link under the engine lock, so a link change it
    /// is the first to notice signals the vector under that lock (a rare, short write(2)).
    fn tick(&self) -> bool {
        let mut t = lock(&self.timers);
        let now = Instant::now();
        if t.reset_done_at.is_some_and(|at| now >= at) {
            t.reset_done_at = None;
            self.finish_reset();
        }
        let up = t.link_up(now);
        let changed = up != t.reported_up;
        t.reported_up = up;
        self.link_up.store(up, Ordering::Release);
        self.timers_armed.store(t.armed(now), Ordering::Release);
        drop(t);
        if changed {
            irq::raise(self, EICR_LSC);
        }
        up
    }

    /// Whether the link is up (deadlines checked first).
    pub fn link_is_up(&self) -> bool {
        self.tick_if_armed();
        self.link_up.load(Ordering::Acquire)
    }

    /// Whether the device may master the bus now: PCI bus master on, CTRL master disable
    /// off, not in reset.
    pub fn dma_allowed(&self) -> bool {
        self.config.bus_master() && self.regs.get(CTRL) & (CTRL_MASTER_DISABLE | CTRL_RST) == 0
    }

    /// Writes a receive write-back descriptor at `iova`: the first word, then the status
    /// word with release ordering (the driver reads DD last).
    pub fn write_rx_desc(&self, iova: u64, d: &RxWriteBack) -> Result<(), crate::iommu::DmaFault> {
        let [w0, w1] = d.words();
        self.iommu.write(iova, &w0.to_le_bytes())?;
        self.iommu.write_u64_release(iova.wrapping_add(8), w1)
    }
}
