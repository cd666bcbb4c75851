//! The seam between the virtio-net PMD and how it reaches the device.
//!
//! The net layer (`net`, above this module) only needs: the device's feature bits and a way to
//! accept a subset, the device's MAC (if it has config space), a notifier per queue, and
//! a way to hand the device the queue addresses and start/stop it. Two transports
//! implement it on top of the same [`crate::virtqueue`] code:
//! - [`vhost_user`]: virtio-user, a vhost-user front end over a unix socket;
//! - [`pci`]: virtio-pci (modern or legacy), a function the EAL opened.

pub mod pci;
pub mod vhost_user;

use crate::net::ctrl::CtrlCommand;
use crate::virtqueue::{AddrMode, RingAddrs};
use pmd_core::error::Result;
use pmd_core::ethdev::MacAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Tells the device there is new work in one queue ("kick": an eventfd write for
/// vhost-user, a doorbell register write for PCI). Called from the queue's lcore.
pub trait Notifier: Send + Sync {
    /// Notifies the device.
    fn notify(&self);
}

/// What the transport needs to (re)start one queue on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSetup {
    /// Where the ring is (in the transport's [`AddrMode`]).
    pub addrs: RingAddrs,
    /// The index the device starts reading the available ring at.
    pub base: u16,
}

/// Who serves the virtio-net control queue (`VIRTIO_NET_F_CTRL_VQ`) on a transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlMode {
    /// Nobody: the net layer does not ask for `CTRL_VQ` (nor `MQ`), so the device runs one
    /// queue pair and stays promiscuous. The default, for transports that have not opted in.
    None,
    /// The device: the net layer drives a control virtqueue (`net::ctrl::queue::CtrlQueue`)
    /// at index `2 * N` (`N` = [`Transport::max_queue_pairs`] with `MQ` negotiated, else 1)
    /// and passes its ring to [`Transport::start`] after the data queues. virtio-pci.
    Device,
    /// The transport itself: the device's back end does not process a control queue, so
    /// the transport executes each command ([`Transport::ctrl_command`]) by its own means
    /// and no control ring is given to the device. vhost-user (back ends offer `CTRL_VQ`
    /// for the VMM to serve; the VMM is us).
    Emulated,
}

/// What a receive queue sleeps on: a descriptor that becomes readable when the device
/// signals used buffers, and how to take that signal off it.
pub trait CallSource: Send + Sync {
    /// The descriptor to wait on.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Consumes what was signalled; for a line interrupt also acknowledges the device and
    /// unmasks the line, so the next one can fire.
    fn ack(&self);
}

/// An eventfd as a [`CallSource`] (vhost-user's call eventfd, an MSI-X vector's).
#[derive(Debug)]
pub struct EventFdCall(pub Arc<OwnedFd>);

impl CallSource for EventFdCall {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn ack(&self) {
        pmd_core::unix::eventfd_drain(self.0.as_fd());
    }
}

/// A virtio transport: how the PMD reaches the device's feature bits, configuration and
/// queues. Queue index `2k` is receive queue `k`, `2k + 1` transmit queue `k` (virtio-net).
pub trait Transport: Send {
    /// Short description for logs and errors (e.g. `vhost-user:/tmp/vhost.sock`).
    fn describe(&self) -> String;
    /// Which addresses descriptors and ring addresses must carry.
    fn addr_mode(&self) -> AddrMode;
    /// Feature bits the device offers.
    fn device_features(&self) -> u64;
    /// Accepts `wanted & device_features()` (the transport may add bits of its own, like
    /// `VHOST_USER_F_PROTOCOL_FEATURES`); returns the negotiated set.
    fn negotiate(&mut self, wanted: u64) -> Result<u64>;
    /// The device's MAC address, if it has one to give.
    fn mac(&self) -> Option<MacAddr>;
    /// Most queue pairs the device supports (for a device with `VIRTIO_NET_F_MQ`: its
    /// `max_virtqueue_pairs`, which also places the control queue at `2 * N`).
    fn max_queue_pairs(&self) -> u16;
    /// The notifier for queue `index`.
    fn notifier(&mut self, index: u16) -> Result<Arc<dyn Notifier>>;
    /// What the device signals after adding used buffers to queue `index` (unless the
    /// driver suppresses that), if the transport has it: an rx queue waits on its
    /// descriptor while its interrupt is armed. It stays the same for the transport's life
    /// (a device that reconnects is given the same eventfd). The default: none, the queue
    /// is polled.
    fn call_source(&self, _index: u16) -> Option<Arc<dyn CallSource>> {
        None
    }
    /// The device's configuration-change interrupt, which announces a link status
    /// change (`VIRTIO_NET_F_STATUS`), if the transport delivers it apart from the rings'
    /// (a modern PCI device's config MSI-X vector); asked for after [`Transport::start`].
    fn link_source(&self) -> Option<Arc<dyn CallSource>> {
        None
    }
    /// Tells the device about all queues (every data queue index `0..2 * pairs` exactly
    /// once, in order; with [`CtrlMode::Device`] the control ring follows, at its own
    /// index) and starts it. Shared memory must already hold the rings.
    fn start(&mut self, rings: &[RingSetup]) -> Result<()>;
    /// Stops the device; returns, per queue, the index it would resume at.
    fn stop(&mut self) -> Result<Vec<u16>>;
    /// Whether the device is reachable and running.
    fn link_up(&self) -> bool;
    /// Whether a device that went away ([`Transport::link_up`] false) can be replaced by
    /// a new one through [`Transport::reconnect`]; the default is no.
    fn can_reconnect(&self) -> bool {
        false
    }
    /// Looks once, without waiting, for a device that replaces one that went away and,
    /// if there is one, negotiates as before and restarts `rings` on it (each resumes
    /// at its `base`); true when the new device runs. The default finds none.
    fn reconnect(&self, _rings: &[RingSetup]) -> Result<bool> {
        Ok(false)
    }
    /// Transport-specific counters.
    fn xstats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Releases the device (closes the connection); the default does nothing.
    fn close(&mut self) {}
    /// Who serves the control queue; the default is [`CtrlMode::None`]. A transport
    /// returning [`CtrlMode::Device`] must accept the control ring in [`Transport::start`]
    /// (index `2 * N`, after the data rings, possibly with a gap when fewer pairs than
    /// `N` are configured) and give a notifier for it.
    fn ctrl_mode(&self) -> CtrlMode {
        CtrlMode::None
    }
    /// Executes a control command ([`CtrlMode::Emulated`] only; called while started).
    /// The default refuses.
    fn ctrl_command(&mut self, cmd: CtrlCommand) -> Result<()> {
        Err(pmd_core::error::Error::driver(
            self.describe(),
            format!("{cmd}: this transport has no control queue"),
        ))
    }
}
