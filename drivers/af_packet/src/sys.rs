//! The kernel side: `AF_PACKET` constants and structures (from `linux/if_packet.h`,
//! `linux/sockios.h`, `linux/ethtool.h`), and small safe wrappers around the socket
//! calls and the `PACKET_MMAP` ring mapping. Every `unsafe` block of the crate that
//! touches the kernel lives here.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

// ---- if_packet.h -----------------------------------------------------------------

pub(crate) const PACKET_ADD_MEMBERSHIP: libc::c_int = libc::PACKET_ADD_MEMBERSHIP;
pub(crate) const PACKET_DROP_MEMBERSHIP: libc::c_int = libc::PACKET_DROP_MEMBERSHIP;
pub(crate) const PACKET_RX_RING: libc::c_int = libc::PACKET_RX_RING;
pub(crate) const PACKET_STATISTICS: libc::c_int = libc::PACKET_STATISTICS;
pub(crate) const PACKET_AUXDATA: libc::c_int = libc::PACKET_AUXDATA;
pub(crate) const PACKET_VERSION: libc::c_int = libc::PACKET_VERSION;
pub(crate) const PACKET_TX_RING: libc::c_int = libc::PACKET_TX_RING;
pub(crate) const PACKET_LOSS: libc::c_int = libc::PACKET_LOSS;
pub(crate) const PACKET_FANOUT: libc::c_int = libc::PACKET_FANOUT;
pub(crate) const PACKET_QDISC_BYPASS: libc::c_int = libc::PACKET_QDISC_BYPASS;
pub(crate) const PACKET_IGNORE_OUTGOING: libc::c_int = libc::PACKET_IGNORE_OUTGOING;
/// A `struct virtio_net_hdr` in front of every rx and tx frame (set before the rings).
pub(crate) const PACKET_VNET_HDR: libc::c_int = libc::PACKET_VNET_HDR;

pub(crate) const PACKET_MR_PROMISC: libc::c_ushort = libc::PACKET_MR_PROMISC as libc::c_ushort;
pub(crate) const PACKET_FANOUT_HASH: u32 = libc::PACKET_FANOUT_HASH;
pub(crate) const TPACKET_V2: libc::c_int = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
/// `sll_pkttype` of a frame this host sent.
pub(crate) const PACKET_OUTGOING: u8 = libc::PACKET_OUTGOING;

/// Rx frame status: owned by the kernel.
pub(crate) const TP_STATUS_KERNEL: u32 = libc::TP_STATUS_KERNEL;
/// Rx frame status: holds a packet for user space.
pub(crate) const TP_STATUS_USER: u32 = libc::TP_STATUS_USER;
/// Rx frame status flag: the kernel dropped packets since the last PACKET_STATISTICS.
pub(crate) const TP_STATUS_LOSING: u32 = libc::TP_STATUS_LOSING;
/// Rx frame status flag: `tp_vlan_tci` holds a VLAN tag the kernel took out of the frame.
pub(crate) const TP_STATUS_VLAN_VALID: u32 = libc::TP_STATUS_VLAN_VALID;
/// Rx frame status flag: `tp_vlan_tpid` holds that tag's TPID (else it was 0x8100).
pub(crate) const TP_STATUS_VLAN_TPID_VALID: u32 = libc::TP_STATUS_VLAN_TPID_VALID;

/// Tx frame status: free for user space.
pub(crate) const TP_STATUS_AVAILABLE: u32 = libc::TP_STATUS_AVAILABLE;
/// Tx frame status: filled, waiting for the kernel.
pub(crate) const TP_STATUS_SEND_REQUEST: u32 = libc::TP_STATUS_SEND_REQUEST;
/// Tx frame status: the kernel rejected the frame (only without PACKET_LOSS).
pub(crate) const TP_STATUS_WRONG_FORMAT: u32 = libc::TP_STATUS_WRONG_FORMAT;

pub(crate) const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
/// Smallest frame the kernel transmits (an Ethernet header).
pub(crate) const ETH_HLEN: usize = libc::ETH_HLEN as usize;

const TPACKET_ALIGNMENT: usize = libc::TPACKET_ALIGNMENT;

/// `TPACKET_ALIGN(x)` from if_packet.h.
pub(crate) const fn tpacket_align(x: usize) -> usize {
    (x + TPACKET_ALIGNMENT - 1) & !(TPACKET_ALIGNMENT - 1)
}

/// `struct tpacket2_hdr`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Tpacket2Hdr {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_sec: u32,
    pub tp_nsec: u32,
    pub tp_vlan_tci: u16,
    pub tp_vlan_tpid: u16,
    pub tp_padding: [u8; 4],
}

const _: () = assert!(size_of::<Tpacket2Hdr>() == 32);
const _: () = assert!(size_of::<Tpacket2Hdr>() == size_of::<libc::tpacket2_hdr>());
const _: () = assert!(TPACKET2_HDRLEN == libc::TPACKET2_HDRLEN);
const _: () = assert!(size_of::<libc::sockaddr_ll>() == 20);

/// Offset of the `sockaddr_ll` the kernel writes after the header of an rx frame.
pub(crate) const RX_SLL_OFFSET: usize = tpacket_align(size_of::<Tpacket2Hdr>());
/// `TPACKET2_HDRLEN`.
pub(crate) const TPACKET2_HDRLEN: usize = RX_SLL_OFFSET + size_of::<libc::sockaddr_ll>();
/// Where the kernel expects tx packet data (`TPACKET2_HDRLEN - sizeof(sockaddr_ll)`).
pub(crate) const TX_DATA_OFFSET: usize = TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();

/// Largest offset of the packet in an rx frame that we plan for: the kernel puts the
/// network header at `TPACKET_ALIGN(TPACKET2_HDRLEN + max(maclen, 16))` (80 for
/// Ethernet, so the packet starts at 66); counting the whole 80 leaves some slack.
pub(crate) const RX_MAX_MAC_OFFSET: usize = tpacket_align(TPACKET2_HDRLEN + 16);
/// Bytes a frame carries beyond its MTU: the Ethernet header and two VLAN tags.
pub(crate) const L2_OVERHEAD: usize = ETH_HLEN + 2 * 4;

/// Smallest ring frame size that holds a whole frame of an interface with MTU `mtu`
/// (the rx header, the packet offset, the Ethernet header and two VLAN tags).
pub(crate) const fn frame_size_for_mtu(mtu: u32) -> u32 {
    tpacket_align(RX_MAX_MAC_OFFSET + mtu as usize + L2_OVERHEAD) as u32
}

/// Largest MTU whose frames a ring frame of `frame_size` bytes holds.
pub(crate) const fn max_mtu_for_frame(frame_size: u32) -> u32 {
    frame_size.saturating_sub((RX_MAX_MAC_OFFSET + L2_OVERHEAD) as u32)
}

/// `struct tpacket_req`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// `struct tpacket_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TpacketStats {
    pub tp_packets: u32,
    pub tp_drops: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

// ---- sockios.h / if.h / ethtool.h ------------------------------------------------

const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCGIFMTU: libc::c_ulong = libc::SIOCGIFMTU;
const SIOCSIFMTU: libc::c_ulong = libc::SIOCSIFMTU;
const SIOCGIFHWADDR: u64 = 0x8927;
const SIOCGIFINDEX: u64 = 0x8933;
const SIOCETHTOOL: u64 = 0x8946;
const ETHTOOL_GSET: u32 = 0x1;
/// Longest interface name (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// `struct ifreq` (name plus the union, 40 bytes on 64-bit targets).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfReqData {
    flags: libc::c_short,
    ifindex: libc::c_int,
    mtu: libc::c_int,
    hwaddr: libc::sockaddr,
    ptr: *mut libc::c_void,
    _pad: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > IFNAME_MAX || b.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (d, s) in r.name.iter_mut().zip(b) {
            *d = *s as libc::c_char;
        }
        Ok(r)
    }
}

/// `struct ethtool_cmd` (the legacy ETHTOOL_GSET layout).
#[repr(C)]
#[derive(Default)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

const _: () = assert!(size_of::<EthtoolCmd>() == 44);

// ---- socket helpers --------------------------------------------------------------

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens an `AF_PACKET` `SOCK_RAW` socket that receives nothing until bound with a protocol.
pub(crate) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0, // protocol 0: no packets until bind() names one
        )
    })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &val, sizeof val)`.
pub(crate) fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to a live, initialised `T` of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `setsockopt` with an `int` value at `SOL_PACKET`.
pub(crate) fn set_packet_opt(fd: RawFd, name: libc::c_int, val: libc::c_int) -> io::Result<()> {
    setsockopt(fd, libc::SOL_PACKET, name, &val)
}

/// Interface index of `name`, looked up in the network namespace of `fd`.
pub(crate) fn if_index(fd: RawFd, name: &str) -> io::Result<libc::c_int> {
    let mut r = IfReq::new(name)?;
    // SAFETY: SIOCGIFINDEX reads the name and writes the int member of our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCGIFINDEX as _, &mut r as *mut IfReq) })?;
    // SAFETY: the kernel filled in the ifindex member.
    Ok(unsafe { r.data.ifindex })
}

/// Interface flags (`IFF_*`).
pub(crate) fn if_flags(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    // SAFETY: SIOCGIFFLAGS writes the short flags member of our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCGIFFLAGS as _, &mut r as *mut IfReq) })?;
    // SAFETY: the kernel filled in the flags member.
    Ok(unsafe { r.data.flags } as u16 as u32)
}

/// MTU of the interface (bytes of payload after the Ethernet header).
pub(crate) fn if_mtu(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    // SAFETY: SIOCGIFMTU reads the name and writes the int mtu member of our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCGIFMTU as _, &mut r as *mut IfReq) })?;
    // SAFETY: the kernel filled in the mtu member.
    Ok(unsafe { r.data.mtu }.max(0) as u32)
}

/// Sets the MTU of the interface (needs CAP_NET_ADMIN).
pub(crate) fn if_set_mtu(fd: RawFd, name: &str, mtu: u32) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    r.data.mtu =
        libc::c_int::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: SIOCSIFMTU reads the name and the int mtu member of our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCSIFMTU as _, &mut r as *mut IfReq) }).map(drop)
}

/// Brings an interface up (tests only: the driver never changes interface state).
#[cfg(test)]
pub(crate) fn if_set_up(fd: RawFd, name: &str) -> io::Result<()> {
    const SIOCSIFFLAGS: u64 = 0x8914;
    let flags = if_flags(fd, name)? | libc::IFF_UP as u32;
    let mut r = IfReq::new(name)?;
    r.data.flags = flags as u16 as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and flags of our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCSIFFLAGS as _, &mut r as *mut IfReq) }).map(drop)
}

/// Hardware address of the interface (first 6 bytes).
pub(crate) fn if_hwaddr(fd: RawFd, name: &str) -> io::Result<[u8; 6]> {
    let mut r = IfReq::new(name)?;
    // SAFETY: SIOCGIFHWADDR writes a sockaddr into our ifreq.
    cvt(unsafe { libc::ioctl(fd, SIOCGIFHWADDR as _, &mut r as *mut IfReq) })?;
    // SAFETY: the kernel filled in the sockaddr member.
    let sa = unsafe { r.data.hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// Speed (Mbit/s, 0 = unknown) and full duplex, through ETHTOOL_GSET.
pub(crate) fn if_speed(fd: RawFd, name: &str) -> io::Result<(u32, bool)> {
    let mut cmd = EthtoolCmd {
        cmd: ETHTOOL_GSET,
        ..EthtoolCmd::default()
    };
    let mut r = IfReq::new(name)?;
    r.data.ptr = (&mut cmd as *mut EthtoolCmd).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GSET writes one `ethtool_cmd` through `ifr_data`,
    // which points to `cmd`, alive for the call.
    cvt(unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut r as *mut IfReq) })?;
    let speed = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
    let speed = if speed == u32::MAX { 0 } else { speed };
    Ok((speed, cmd.duplex == 1))
}

/// Binds `fd` to interface `ifindex` with ethertype `proto` (0: transmit only).
pub(crate) fn bind_ll(fd: RawFd, ifindex: libc::c_int, proto: u16) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll of the length passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Adds or drops a PACKET_MR_PROMISC membership on `fd`.
pub(crate) fn set_promisc(fd: RawFd, ifindex: libc::c_int, on: bool) -> io::Result<()> {
    let mreq = PacketMreq {
        mr_ifindex: ifindex,
        mr_type: PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let opt = if on {
        PACKET_ADD_MEMBERSHIP
    } else {
        PACKET_DROP_MEMBERSHIP
    };
    setsockopt(fd, libc::SOL_PACKET, opt, &mreq)
}

/// Reads (and thereby resets) the socket's PACKET_STATISTICS.
pub(crate) fn packet_stats(fd: RawFd) -> io::Result<TpacketStats> {
    let mut st = MaybeUninit::<TpacketStats>::zeroed();
    let mut len = size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `st`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zero-initialised, and any bytes the kernel wrote are valid u32s.
    Ok(unsafe { st.assume_init() })
}

/// Asks the kernel to transmit the frames marked SEND_REQUEST, without waiting.
pub(crate) fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer and no address.
    let rc = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

// ---- ring geometry ---------------------------------------------------------------

/// Layout of one PACKET_MMAP ring: `block_nr` blocks of `block_size` bytes, each holding
/// `block_size / frame_size` frames (frames never straddle blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
}

impl Geometry {
    /// Validates the sizes as the kernel will (plus a floor on the frame size that leaves
    /// room for a header and a minimal packet); the error says which rule failed.
    pub fn new(
        block_size: u32,
        frame_size: u32,
        frame_nr: u32,
        page_size: u32,
    ) -> Result<Geometry, String> {
        let min_frame = tpacket_align(TPACKET2_HDRLEN + 64) as u32;
        if frame_size < min_frame || !frame_size.is_multiple_of(TPACKET_ALIGNMENT as u32) {
            return Err(format!(
                "framesz={frame_size} must be a multiple of {TPACKET_ALIGNMENT} and at least {min_frame}"
            ));
        }
        if block_size == 0 || !block_size.is_multiple_of(page_size) {
            return Err(format!(
                "blocksz={block_size} must be a non-zero multiple of the page size ({page_size})"
            ));
        }
        if frame_size > block_size {
            return Err(format!(
                "framesz={frame_size} must not exceed blocksz={block_size}"
            ));
        }
        let per_block = block_size / frame_size;
        if frame_nr == 0 || !frame_nr.is_multiple_of(per_block) {
            return Err(format!(
                "framecnt={frame_nr} must be a non-zero multiple of the frames per block \
                 (blocksz/framesz = {per_block})"
            ));
        }
        let g = Geometry {
            block_size,
            block_nr: frame_nr / per_block,
            frame_size,
            frame_nr,
        };
        if g.ring_bytes().checked_mul(2).is_none_or(|b| b > (1 << 40)) {
            return Err(format!(
                "rings of {frame_nr} frames of blocksz={block_size} are too large"
            ));
        }
        Ok(g)
    }

    /// Frames per block.
    pub fn frames_per_block(&self) -> u32 {
        self.block_size / self.frame_size
    }

    /// Bytes of one ring.
    pub fn ring_bytes(&self) -> usize {
        self.block_size as usize * self.block_nr as usize
    }

    /// Offset of frame `i` (< frame_nr) from the start of its ring.
    pub fn frame_offset(&self, i: u32) -> usize {
        let fpb = self.frames_per_block();
        (i / fpb) as usize * self.block_size as usize
            + (i % fpb) as usize * self.frame_size as usize
    }

    fn req(&self) -> TpacketReq {
        TpacketReq {
            tp_block_size: self.block_size,
            tp_block_nr: self.block_nr,
            tp_frame_size: self.frame_size,
            tp_frame_nr: self.frame_nr,
        }
    }
}

// ---- the mapped rings ------------------------------------------------------------

/// Which ring of the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

/// The header fields of one rx frame, read once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxFrameHdr {
    pub status: u32,
    pub len: u32,
    pub snaplen: u32,
    pub mac: u16,
    pub vlan_tci: u16,
    pub vlan_tpid: u16,
    pub pkttype: u8,
}

/// The rx and tx rings of one socket, mapped together (rx first). Unmapped on drop.
///
/// The memory is shared with the kernel: a frame belongs to user space only while its
/// status says so, and status words are accessed atomically. All other accesses are
/// bounds-checked copies within one frame.
pub(crate) struct PacketRing {
    base: NonNull<u8>,
    len: usize,
    geom: Geometry,
}

// SAFETY: the mapping is plain shared memory; `PacketRing` only hands out copies and
// atomic status accesses. Which thread may touch which frames is arbitrated by the owner
// (one rx queue and one tx queue per socket, see `PacketSocket`).
unsafe impl Send for PacketRing {}
// SAFETY: as above; `&PacketRing` methods use atomics or raw copies, never references
// into the shared memory that could alias a kernel write.
unsafe impl Sync for PacketRing {}

impl PacketRing {
    /// Creates the rx and tx rings on `fd` and maps them.
    pub fn create(fd: RawFd, geom: Geometry) -> io::Result<PacketRing> {
        let req = geom.req();
        setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        setsockopt(fd, libc::SOL_PACKET, PACKET_TX_RING, &req)?;
        let len = geom.ring_bytes() * 2;
        // SAFETY: mapping the socket's rings, a fresh shared mapping that nothing aliases.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(PacketRing { base, len, geom })
    }

    /// The ring layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    /// Pointer to the start of frame `i` of ring `dir`. Panics if `i` is out of range
    /// (indices are the driver's own, never the kernel's).
    #[inline(always)]
    fn frame(&self, dir: Dir, i: u32) -> *mut u8 {
        assert!(i < self.geom.frame_nr, "frame index out of range");
        let ring = match dir {
            Dir::Rx => 0,
            Dir::Tx => self.geom.ring_bytes(),
        };
        let off = ring + self.geom.frame_offset(i);
        debug_assert!(off + self.geom.frame_size as usize <= self.len);
        // SAFETY: off + frame_size <= len: the frame lies inside the mapping.
        unsafe { self.base.as_ptr().add(off) }
    }

    #[inline(always)]
    fn status_word(&self, dir: Dir, i: u32) -> &AtomicU32 {
        let p = self.frame(dir, i);
        // SAFETY: tp_status is the first, 4-byte aligned field (frames are 16-byte aligned
        // in a page-aligned mapping) and lives as long as `self`; the kernel updates it
        // with ordinary stores/barriers, we only with atomic ones.
        unsafe { &*p.cast::<AtomicU32>() }
    }

    /// Status of frame `i`, with acquire ordering (frame contents are visible after it).
    #[inline(always)]
    pub fn status(&self, dir: Dir, i: u32) -> u32 {
        self.status_word(dir, i).load(Ordering::Acquire)
    }

    /// Sets the status of frame `i` with release ordering (our writes before it are
    /// visible to the kernel first).
    #[inline(always)]
    pub fn set_status(&self, dir: Dir, i: u32, status: u32) {
        self.status_word(dir, i).store(status, Ordering::Release)
    }

    /// Reads the header of rx frame `i` once (call after seeing TP_STATUS_USER).
    #[inline(always)]
    pub fn rx_header(&self, i: u32) -> RxFrameHdr {
        let p = self.frame(Dir::Rx, i);
        let h = p.cast::<Tpacket2Hdr>();
        // SAFETY: the header and the sockaddr_ll after it are within the frame
        // (frame_size >= TPACKET2_HDRLEN, checked by Geometry::new) and aligned; volatile
        // reads because the memory is shared with the kernel.
        unsafe {
            RxFrameHdr {
                status: self.status(Dir::Rx, i),
                len: std::ptr::addr_of!((*h).tp_len).read_volatile(),
                snaplen: std::ptr::addr_of!((*h).tp_snaplen).read_volatile(),
                mac: std::ptr::addr_of!((*h).tp_mac).read_volatile(),
                vlan_tci: std::ptr::addr_of!((*h).tp_vlan_tci).read_volatile(),
                vlan_tpid: std::ptr::addr_of!((*h).tp_vlan_tpid).read_volatile(),
                pkttype: p.add(RX_SLL_OFFSET + 10).read_volatile(),
            }
        }
    }

    /// Copies `dst.len()` bytes from offset `off` of rx frame `i`; false (nothing copied)
    /// if that range is not inside the frame.
    #[inline(always)]
    pub fn copy_from_rx(&self, i: u32, off: usize, dst: &mut [u8]) -> bool {
        if off
            .checked_add(dst.len())
            .is_none_or(|end| end > self.geom.frame_size as usize)
        {
            return false;
        }
        let p = self.frame(Dir::Rx, i);
        // SAFETY: off + len is within the frame (checked above), the frame is owned by
        // user space (status USER) so the kernel does not write it, and `dst` is ordinary
        // memory that cannot overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(p.add(off), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Largest packet a tx frame holds.
    pub fn tx_capacity(&self) -> usize {
        self.geom.frame_size as usize - TX_DATA_OFFSET
    }

    /// Copies the pieces of one packet of `len` bytes in total (segments, a VLAN tag)
    /// back to back into tx frame `i` and sets `tp_len` (not the status); false if `len`
    /// does not fit the frame or the pieces do not add up to `len` (the frame may then
    /// hold part of them, which is harmless: its status is unchanged).
    #[inline(always)]
    pub fn fill_tx_parts<'a>(
        &self,
        i: u32,
        len: usize,
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        if len > self.tx_capacity() {
            return false;
        }
        let p = self.frame(Dir::Tx, i);
        let mut at = 0usize;
        for part in parts {
            if part.len() > len - at {
                return false;
            }
            // SAFETY: TX_DATA_OFFSET + at + part.len() <= TX_DATA_OFFSET + len <=
            // frame_size (checked above); the frame is available to user space (the
            // caller saw AVAILABLE/WRONG_FORMAT), so the kernel does not touch it until we
            // set SEND_REQUEST; `part` is ordinary memory, not the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), p.add(TX_DATA_OFFSET + at), part.len())
            };
            at += part.len();
        }
        if at != len {
            return false;
        }
        let h = p.cast::<Tpacket2Hdr>();
        // SAFETY: the header is inside the frame and user-owned, as above.
        unsafe {
            std::ptr::addr_of_mut!((*h).tp_len).write_volatile(len as u32);
            std::ptr::addr_of_mut!((*h).tp_snaplen).write_volatile(len as u32);
        }
        true
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `create` mapped; nothing refers to it any more
        // (all accessors borrow `self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The fd of a socket, for the helpers above.
pub(crate) fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// The system page size.
pub(crate) fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p <= 0 {
        4096
    } else {
        p as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants() {
        assert_eq!(RX_SLL_OFFSET, 32);
        assert_eq!(TPACKET2_HDRLEN, 52);
        assert_eq!(TX_DATA_OFFSET, 32);
        assert_eq!(size_of::<IfReq>(), 40);
        assert_eq!(size_of::<PacketMreq>(), 16);
    }

    #[test]
    fn frame_sizes_for_mtus() {
        assert_eq!(RX_MAX_MAC_OFFSET, 80);
        assert_eq!(frame_size_for_mtu(1500), 1616);
        assert_eq!(frame_size_for_mtu(9000), 9104);
        assert_eq!(max_mtu_for_frame(2048), 1946);
        for mtu in [68, 1500, 1501, 9000, 9216, 16000] {
            let f = frame_size_for_mtu(mtu);
            assert_eq!(f % 16, 0);
            assert!(max_mtu_for_frame(f) >= mtu);
            assert!(max_mtu_for_frame(f - 16) < mtu);
        }
    }

    #[test]
    fn geometry_rules() {
        let g = Geometry::new(4096, 2048, 512, 4096).unwrap();
        assert_eq!(g.block_nr, 256);
        assert_eq!(g.frames_per_block(), 2);
        assert_eq!(g.ring_bytes(), 512 * 2048);
        assert_eq!(g.frame_offset(3), 4096 + 2048);
        // Frames do not straddle blocks: 3 frames of 1360 in a 4096 block leave a gap.
        let g = Geometry::new(4096, 1360, 30, 4096).unwrap();
        assert_eq!(g.frame_offset(2), 2720);
        assert_eq!(g.frame_offset(3), 4096);
        assert_eq!(g.frame_offset(29), 9 * 4096 + 2 * 1360);
        for (b, f, n) in [
            (4096, 2047, 512), // not 16-aligned
            (4096, 64, 512),   // too small
            (4000, 2048, 512), // block not page multiple
            (4096, 8192, 512), // frame > block
            (4096, 2048, 511), // not a multiple of frames per block
            (4096, 2048, 0),
            (0, 2048, 2),
        ] {
            assert!(Geometry::new(b, f, n, 4096).is_err(), "{b} {f} {n}");
        }
    }
}
