//! The kernel side of the `AF_PACKET` socket: the `PACKET_MMAP` ring layout
//! (`linux/if_packet.h`, through `libc`), small safe wrappers around the socket calls, and
//! the ring mapping. Interface requests (index, MTU, MAC, flags, speed, promiscuous
//! membership) are `pmd_core::netif`'s. Every `unsafe` block of the crate that touches the
//! kernel lives here.

use memmap2::{MmapOptions, MmapRaw};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) use libc::{
    PACKET_OUTGOING, TPACKET2_HDRLEN, TP_STATUS_AVAILABLE, TP_STATUS_KERNEL,
    TP_STATUS_SEND_REQUEST, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID,
    TP_STATUS_WRONG_FORMAT,
};
pub(crate) use pmd_core::netif::IFNAME_MAX;

/// Smallest frame the kernel transmits (an Ethernet header).
pub(crate) const ETH_HLEN: usize = libc::ETH_HLEN as usize;

const TPACKET_ALIGNMENT: usize = libc::TPACKET_ALIGNMENT;

/// `TPACKET_ALIGN(x)` from if_packet.h.
pub(crate) const fn tpacket_align(x: usize) -> usize {
    (x + TPACKET_ALIGNMENT - 1) & !(TPACKET_ALIGNMENT - 1)
}

/// Offset of the `sockaddr_ll` the kernel writes after the header of an rx frame.
pub(crate) const RX_SLL_OFFSET: usize = tpacket_align(size_of::<libc::tpacket2_hdr>());
/// Where the kernel expects tx packet data (`TPACKET2_HDRLEN - sizeof(sockaddr_ll)`).
pub(crate) const TX_DATA_OFFSET: usize = TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();

const _: () = assert!(size_of::<libc::tpacket2_hdr>() == 32);
const _: () = assert!(size_of::<libc::sockaddr_ll>() == 20);
const _: () = assert!(TPACKET2_HDRLEN == RX_SLL_OFFSET + size_of::<libc::sockaddr_ll>());

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

// ---- socket helpers --------------------------------------------------------------

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
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

/// Binds `fd` to interface `ifindex` with ethertype `proto` (0: transmit only).
pub(crate) fn bind_ll(fd: RawFd, ifindex: u32, proto: u16) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex =
        libc::c_int::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
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

/// Reads (and thereby resets) the socket's PACKET_STATISTICS.
pub(crate) fn packet_stats(fd: RawFd) -> io::Result<libc::tpacket_stats> {
    let mut st = MaybeUninit::<libc::tpacket_stats>::zeroed();
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `st`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
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

    fn req(&self) -> libc::tpacket_req {
        libc::tpacket_req {
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
/// bounds-checked copies within one frame. Which thread may touch which frames is
/// arbitrated by the owner (one rx queue and one tx queue per socket, see
/// `PacketSocket`); `&PacketRing` methods never make references into the shared memory
/// that could alias a kernel write.
pub(crate) struct PacketRing {
    /// Both rings: a plain shared read-write mapping of the socket.
    map: MmapRaw,
    geom: Geometry,
}

impl PacketRing {
    /// Creates the rx and tx rings on `fd` and maps them.
    pub fn create(fd: BorrowedFd<'_>, geom: Geometry) -> io::Result<PacketRing> {
        let req = geom.req();
        let raw = fd.as_raw_fd();
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)?;
        let map = MmapOptions::new().len(geom.ring_bytes() * 2).map_raw(raw)?;
        Ok(PacketRing { map, geom })
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
        debug_assert!(off + self.geom.frame_size as usize <= self.map.len());
        // SAFETY: off + frame_size <= len: the frame lies inside the mapping.
        unsafe { self.map.as_mut_ptr().add(off) }
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
        let h = p.cast::<libc::tpacket2_hdr>();
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
        let h = p.cast::<libc::tpacket2_hdr>();
        // SAFETY: the header is inside the frame and user-owned, as above.
        unsafe {
            std::ptr::addr_of_mut!((*h).tp_len).write_volatile(len as u32);
            std::ptr::addr_of_mut!((*h).tp_snaplen).write_volatile(len as u32);
        }
        true
    }
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
