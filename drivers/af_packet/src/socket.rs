//! One queue pair's socket: the fd, its mapped rings, and the bookkeeping shared between
//! the device and the queues that use it.

use crate::config::Config;
use crate::sys::{self, PacketRing};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// A bound `AF_PACKET` socket with its rx and tx rings.
///
/// Shared (`Arc`) by the device and the at most one rx and one tx queue using it, so the
/// mapping outlives every queue even after the device is closed.
pub(crate) struct PacketSocket {
    // Field order = drop order: unmap before closing the fd.
    pub ring: PacketRing,
    fd: OwnedFd,
    /// The kernel filters our own transmissions (PACKET_IGNORE_OUTGOING); if false the
    /// rx path skips frames whose `sll_pkttype` is PACKET_OUTGOING.
    pub ignore_outgoing: bool,
    /// Frames carry a virtio-net header (`PACKET_VNET_HDR`, [`Config::vnet`]).
    pub vnet: bool,
    /// An rx queue owns the rx ring.
    pub rx_claimed: AtomicBool,
    /// A tx queue owns the tx ring.
    pub tx_claimed: AtomicBool,
    /// Next rx frame, saved when an rx queue goes away (the kernel's position).
    pub rx_next: AtomicU32,
    /// Next tx frame, saved when a tx queue goes away.
    pub tx_next: AtomicU32,
    /// Kernel drops read from PACKET_STATISTICS so far (which resets on read).
    pub kernel_drops: AtomicU64,
    /// Kernel packet count (received + dropped) read so far.
    pub kernel_packets: AtomicU64,
}

impl std::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("fd", &self.fd)
            .field("geometry", self.ring.geometry())
            .finish()
    }
}

/// Where opening a socket failed (for the error message).
#[derive(Debug)]
pub(crate) struct OpenError {
    pub step: &'static str,
    pub err: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> OpenError {
    move |err| OpenError { step, err }
}

impl PacketSocket {
    /// Opens and sets up one socket on `ifindex`. With `receive` it is bound with
    /// ETH_P_ALL; otherwise with protocol 0, which transmits but receives nothing.
    /// `fanout` (`PACKET_FANOUT` argument) joins a fanout group after binding.
    pub fn open(
        cfg: &Config,
        ifindex: u32,
        receive: bool,
        fanout: Option<u32>,
    ) -> Result<PacketSocket, OpenError> {
        Self::open_with(cfg, ifindex, receive, fanout, true)
    }

    /// [`PacketSocket::open`], optionally without asking the kernel to drop our own
    /// transmissions (as on kernels older than 4.20; for tests of the fallback filter).
    pub(crate) fn open_with(
        cfg: &Config,
        ifindex: u32,
        receive: bool,
        fanout: Option<u32>,
        try_ignore_outgoing: bool,
    ) -> Result<PacketSocket, OpenError> {
        let fd = pmd_core::netif::packet_socket().map_err(step("socket(AF_PACKET)"))?;
        let raw = fd.as_raw_fd();
        let tpacket_v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        sys::set_packet_opt(raw, libc::PACKET_VERSION, tpacket_v2)
            .map_err(step("PACKET_VERSION"))?;
        let ignore_outgoing = try_ignore_outgoing
            && match sys::set_packet_opt(raw, libc::PACKET_IGNORE_OUTGOING, 1) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => false,
                Err(e) => return Err(step("PACKET_IGNORE_OUTGOING")(e)),
            };
        sys::set_packet_opt(raw, libc::PACKET_AUXDATA, 0).map_err(step("PACKET_AUXDATA"))?;
        sys::set_packet_opt(raw, libc::PACKET_LOSS, 1).map_err(step("PACKET_LOSS"))?;
        if cfg.vnet {
            // Must precede the rings: the kernel refuses it (EBUSY) once they exist.
            // A `struct virtio_net_hdr` is then in front of every rx and tx frame.
            sys::set_packet_opt(raw, libc::PACKET_VNET_HDR, 1).map_err(step("PACKET_VNET_HDR"))?;
        }
        if cfg.qdisc_bypass {
            sys::set_packet_opt(raw, libc::PACKET_QDISC_BYPASS, 1)
                .map_err(step("PACKET_QDISC_BYPASS"))?;
        }
        let ring =
            PacketRing::create(fd.as_fd(), cfg.geom).map_err(step("PACKET_RX_RING/TX_RING"))?;
        let proto = if receive { libc::ETH_P_ALL as u16 } else { 0 };
        sys::bind_ll(raw, ifindex, proto).map_err(step("bind"))?;
        if let Some(arg) = fanout {
            sys::set_packet_opt(raw, libc::PACKET_FANOUT, arg as libc::c_int)
                .map_err(step("PACKET_FANOUT"))?;
        }
        Ok(PacketSocket {
            ring,
            fd,
            ignore_outgoing,
            vnet: cfg.vnet,
            rx_claimed: AtomicBool::new(false),
            tx_claimed: AtomicBool::new(false),
            rx_next: AtomicU32::new(0),
            tx_next: AtomicU32::new(0),
            kernel_drops: AtomicU64::new(0),
            kernel_packets: AtomicU64::new(0),
        })
    }

    /// The socket's fd.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads PACKET_STATISTICS (resetting the kernel's counters) into the running totals.
    pub fn fetch_stats(&self) -> io::Result<()> {
        let st = sys::packet_stats(self.fd())?;
        self.kernel_drops
            .fetch_add(u64::from(st.tp_drops), Ordering::Relaxed);
        self.kernel_packets
            .fetch_add(u64::from(st.tp_packets), Ordering::Relaxed);
        Ok(())
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sockets of one device arrangement: the first `rx` receive (in a fanout group if more
/// than one), the rest only transmit.
#[derive(Debug)]
pub(crate) struct SocketSet {
    pub socks: Vec<Arc<PacketSocket>>,
    pub rx: usize,
}

static GROUP_SEQ: AtomicU32 = AtomicU32::new(0);

/// A fanout group id from the process id, the interface index and a per-process
/// sequence number (so two devices on one interface get different groups).
pub(crate) fn fanout_group_id(pid: u32, ifindex: u32, seq: u32) -> u16 {
    (pid ^ (ifindex << 8) ^ seq.wrapping_mul(0x9e37)) as u16
}

impl SocketSet {
    /// Opens `total` sockets of which the first `rx` receive.
    pub fn open(
        cfg: &Config,
        ifindex: u32,
        rx: usize,
        total: usize,
    ) -> Result<SocketSet, OpenError> {
        let mut socks = Vec::with_capacity(total);
        let mut fanout = None;
        for i in 0..total {
            let receive = i < rx;
            let sock = if receive && rx > 1 && i == 0 {
                // The first member creates the group; an id already taken by a group
                // with other parameters (EINVAL) makes us try the next one.
                let mut tries = 0;
                loop {
                    let seq = GROUP_SEQ.fetch_add(1, Ordering::Relaxed);
                    let id = fanout_group_id(std::process::id(), ifindex, seq);
                    let arg = u32::from(id) | (libc::PACKET_FANOUT_HASH << 16);
                    match PacketSocket::open(cfg, ifindex, true, Some(arg)) {
                        Ok(s) => {
                            fanout = Some(arg);
                            break s;
                        }
                        Err(e)
                            if e.step == "PACKET_FANOUT"
                                && e.err.raw_os_error() == Some(libc::EINVAL)
                                && tries < 16 =>
                        {
                            tries += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            } else {
                PacketSocket::open(cfg, ifindex, receive, fanout.filter(|_| receive))?
            };
            socks.push(Arc::new(sock));
        }
        Ok(SocketSet { socks, rx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_differ() {
        let a = fanout_group_id(1234, 2, 0);
        assert_ne!(a, fanout_group_id(1235, 2, 0));
        assert_ne!(a, fanout_group_id(1234, 3, 0));
        assert_ne!(a, fanout_group_id(1234, 2, 1));
    }
}
