//! The public handle: creating a model (its segment listener and thread), the backend
//! the driver probes (and its VFs' backends), counters, run-time fault switches,
//! injection and capture.

use crate::backend::ModelBackend;
use crate::conf::{is_unicast, Generator, MacAddr, MbxFault, ModelConf};
use crate::device::Device;
use crate::iommu::Iommu;
use crate::pfmbx::{self, VfInfo};
use crate::rx::RxOutcome;
use crate::stats::{bump, ModelStats, VfStats};
use crate::vf::{Vf, VfBackend};
use crate::wire::Sink;
use crate::{engine, gen, irq, lock, rx};
use pmd_core::memory;
use pmd_core::pci::{PciAddr, PciBackend};
use pmd_core::{Error, Result};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Owns the model thread and the segment listener; the last handle to go stops both.
pub(crate) struct Handle {
    pub dev: Arc<Device>,
    thread: Option<JoinHandle<()>>,
    listener: u64,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.dev.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A sink holding the last handle would drop it on the model thread itself,
            // which cannot join itself; it exits on its own once the sink returns.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        memory::remove_listener(self.listener);
    }
}

/// A modelled Intel 82599 (SFP+, device 0x10FB): a cheap-to-clone handle. The model
/// thread runs from [`Model82599::new`] until the last handle, backend and BAR mapping
/// are dropped, and is joined then.
#[derive(Clone)]
pub struct Model82599 {
    h: Arc<Handle>,
}

impl std::fmt::Debug for Model82599 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model82599")
            .field("id", &self.h.dev.id)
            .field("mac", &self.h.dev.mac)
            .finish()
    }
}

impl Model82599 {
    /// Builds the device (power-on state: reset done, link down until auto-negotiation),
    /// starts tracking memory segments for DMA and starts the model thread.
    pub fn new(conf: ModelConf) -> Result<Model82599> {
        conf.validate()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let iommu = Arc::new(Iommu::default());
        let io = iommu.clone();
        let listener = memory::add_listener(Box::new(move |ev, seg| {
            io.on_segment(ev, seg);
            Ok(())
        }))?;
        let dev = Arc::new(Device::new(id, &conf, iommu));
        if conf.vfs > 0 {
            // The PF's driver (which the model plays for its VFs) has its interface up.
            dev.start_link();
        }
        if let Some(g) = conf.generator {
            gen::start(&dev, &mut lock(&dev.engine), g);
        }
        let d = dev.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ixgbe-model{id}"))
            .spawn(move || engine::run(d));
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                memory::remove_listener(listener);
                return Err(Error::io("starting the 82599 model thread", e));
            }
        };
        let _ = dev.thread.set(thread.thread().clone());
        Ok(Model82599 {
            h: Arc::new(Handle {
                dev,
                thread: Some(thread),
                listener,
            }),
        })
    }

    /// The PCI function the ixgbe driver probes (BAR 0 = the registers, IOVA = VA).
    pub fn backend(&self) -> Arc<dyn PciBackend> {
        Arc::new(ModelBackend {
            handle: self.h.clone(),
            addr: self.pci_addr(),
        })
    }

    /// The model's PCI address: domain 0xffff, bus and device from the instance number.
    pub fn pci_addr(&self) -> PciAddr {
        let id = self.h.dev.id;
        PciAddr {
            domain: 0xffff,
            bus: (id >> 5) as u8,
            device: (id & 0x1f) as u8,
            function: 0,
        }
    }

    /// The name of the model thread (`ixgbe-model<N>`).
    pub fn thread_name(&self) -> String {
        format!("ixgbe-model{}", self.h.dev.id)
    }

    /// The MAC address in the model's EEPROM.
    pub fn mac(&self) -> MacAddr {
        self.h.dev.mac
    }

    /// A snapshot of the model's counters (its VFs' among them).
    pub fn stats(&self) -> ModelStats {
        let dev = &self.h.dev;
        let mut s = dev.counters.snapshot();
        s.vfs = dev.vfs.list.iter().map(|v| v.counters.snapshot()).collect();
        s
    }

    /// How many SR-IOV virtual functions the model has (`ModelConf::vfs`).
    pub fn vfs(&self) -> u8 {
        self.h.dev.vfs.list.len() as u8
    }

    fn vf(&self, vf: u8) -> Result<&Vf> {
        self.h.dev.vfs.get(vf).ok_or_else(|| {
            Error::Config(format!(
                "ixgbe model {}: no VF {vf} (the model has {} VFs; set ModelConf::vfs)",
                self.h.dev.id,
                self.vfs()
            ))
        })
    }

    /// VF `vf`'s PCI address: domain 0xfffe, the PF's bus and device, function `vf`.
    pub fn vf_pci_addr(&self, vf: u8) -> Result<PciAddr> {
        self.vf(vf)?;
        Ok(PciAddr {
            domain: 0xfffe,
            function: vf,
            ..self.pci_addr()
        })
    }

    /// The PCI function a VF driver probes for VF `vf` (82599 VF, device 0x10ED; BAR 0 is
    /// the 16 KiB VF register window; DMA goes through the model's IOMMU; no MSI-X).
    pub fn vf_backend(&self, vf: u8) -> Result<Arc<dyn PciBackend>> {
        let addr = self.vf_pci_addr(vf)?;
        Ok(Arc::new(VfBackend {
            handle: self.h.clone(),
            vf,
            addr,
        }))
    }

    /// The MAC address frames to VF `vf` must carry now (None: it has none).
    pub fn vf_mac(&self, vf: u8) -> Result<Option<MacAddr>> {
        Ok(pfmbx::info(self.vf(vf)?).mac)
    }

    /// What the PF holds for VF `vf`: its address, whether it is clear to send, its API,
    /// frame size, multicast hashes, VLANs and mode.
    pub fn vf_info(&self, vf: u8) -> Result<VfInfo> {
        Ok(pfmbx::info(self.vf(vf)?))
    }

    /// The administrator sets VF `vf`'s MAC address (as `ip link set PF vf N mac ADDR`),
    /// or removes it with None: the VF's address changes now, its next RESET is answered
    /// with it (None: refused, and the VF must set its own), and the VF may not set
    /// another. The address must be unicast and not the PF's or another VF's.
    pub fn set_vf_mac(&self, vf: u8, mac: Option<MacAddr>) -> Result<()> {
        let this = self.vf(vf)?;
        if let Some(m) = mac {
            let dev = &self.h.dev;
            let taken = m == dev.mac
                || dev
                    .vfs
                    .list
                    .iter()
                    .any(|o| o.index != vf && pfmbx::info(o).mac == Some(m));
            if !is_unicast(&m) || taken {
                return Err(Error::Config(format!(
                    "ixgbe model: {m:02x?} cannot be VF {vf}'s address (not unicast, or in use)"
                )));
            }
        }
        pfmbx::set_admin_mac(this, mac);
        Ok(())
    }

    /// A snapshot of VF `vf`'s counters (also in [`Model82599::stats`]).
    pub fn vf_stats(&self, vf: u8) -> Result<VfStats> {
        Ok(self.vf(vf)?.counters.snapshot())
    }

    /// Makes the PF side of every VF mailbox misbehave (or, with `MbxFault::None`,
    /// behave again); see [`MbxFault`].
    pub fn set_mbx_fault(&self, fault: MbxFault) {
        self.h.dev.vfs.set_fault(fault);
    }

    /// The PF resets (as when its driver reloads): every VF's mailbox shows RSTI, its
    /// queues are disabled and it is no longer clear to send (frames for it are dropped
    /// and counted, its requests go unanswered). The reset ends after `done_after`, or
    /// with None only at [`Model82599::pf_reset_done`]: RSTI clears, RSTD shows and
    /// every VF gets a PF_CONTROL_MSG (0x0100) without CTS, so it must reset itself and
    /// send RESET again. No effect without VFs.
    pub fn pf_reset(&self, done_after: Option<Duration>) {
        let dev = &self.h.dev;
        let mut engine = lock(&dev.engine);
        pfmbx::pf_reset_begin(dev, &mut engine, done_after.map(|d| Instant::now() + d));
        drop(engine);
        dev.kick();
    }

    /// Ends the PF reset in progress now (see [`Model82599::pf_reset`]); nothing if none
    /// is.
    pub fn pf_reset_done(&self) {
        pfmbx::pf_reset_end(&self.h.dev);
    }

    /// Lets the link up (it renegotiates for ~10 ms, if the driver ever restarted
    /// auto-negotiation since the last reset) or forces it down (LINKS.UP reads 0, no
    /// frame is received, transmitted frames are lost). Either change raises EICR.LSC.
    pub fn set_link(&self, up: bool) {
        self.h.dev.set_link(up);
        self.h.dev.kick();
    }

    /// Stops (or resumes) transmit descriptor processing: TDH stays, no DD is written.
    pub fn set_tx_stall(&self, on: bool) {
        self.h.dev.tx_stall.store(on, Ordering::Release);
        self.h.dev.kick();
    }

    /// A frame (without CRC) arrives from the wire now; see [`Model82599::try_inject`].
    pub fn inject(&self, frame: &[u8]) {
        let _ = self.try_inject(frame);
    }

    /// A frame (without CRC) arrives from the wire now: it is delivered to a receive
    /// queue or dropped (and counted) at once, on the caller's thread, and the queue's
    /// interrupt cause is raised before this returns.
    pub fn try_inject(&self, frame: &[u8]) -> RxOutcome {
        let dev = &self.h.dev;
        bump(&dev.counters.injected, 1);
        let (outcome, written) = {
            let mut engine = lock(&dev.engine);
            let outcome = rx::receive(dev, &mut engine, frame);
            (outcome, std::mem::take(&mut engine.rx_written))
        };
        irq::rx_written_back(dev, written);
        outcome
    }

    /// The last transmitted frames kept by the capture (`ModelConf::capture`), oldest
    /// first.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.h.dev.wire.captured()
    }

    /// Sets (or removes) the callback every transmitted frame is handed to.
    pub fn set_sink(&self, sink: Option<Sink>) {
        self.h.dev.wire.set_sink(sink);
    }

    /// Starts `g`, replacing any generator in progress (frame numbers restart at 0). An
    /// invalid generator is not started; it counts as an error and is logged.
    pub fn start_generator(&self, g: Generator) {
        let dev = &self.h.dev;
        if let Err(e) = g.validate() {
            tracing::warn!(model = dev.id, "generator not started: {e}");
            bump(&dev.counters.errors, 1);
            return;
        }
        gen::start(dev, &mut lock(&dev.engine), g);
        dev.kick();
    }

    /// Stops the generator (frames not yet sent are forgotten).
    pub fn stop_generator(&self) {
        let dev = &self.h.dev;
        lock(&dev.engine).gen = None;
        dev.counters.gen_pending.store(0, Ordering::Relaxed);
    }
}
