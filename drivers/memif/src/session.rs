//! An established connection: the mapped regions and the rings of both directions. The
//! control thread builds it (client: creates everything; server: from the client's
//! ADD_REGION/ADD_RING messages), publishes it, and queues hold it through an `Arc` while
//! they use its rings, so the memory outlives every access even across a reconnect.
//!
//! Client region layout (DPDK memif.rst, "Shared memory format", copy mode): one region
//! 0 with the client-to-server rings, then the server-to-client rings, then one packet
//! buffer of `bsize` bytes per descriptor of every ring, in ring order.

use crate::config::Role;
use crate::proto::{self, COOKIE, RING_FLAG_MASK_INT};
use crate::ring::{Desc, RingPtr};
use crate::shm::{Region, MAX_REGION_SIZE};
use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

/// One ring of a session.
#[derive(Debug)]
pub struct RingInfo {
    /// The ring.
    pub ring: RingPtr,
    /// Region holding the ring.
    pub region: u16,
    /// Offset of the ring in that region.
    pub offset: u32,
    /// Ring size, log2.
    pub log2: u8,
    /// Client only: offset (region 0) of the buffer of slot 0; slot `s` is at
    /// `buf_base + s * bsize`.
    pub buf_base: u32,
    /// The ring's interrupt eventfd (signalled after a send when the receiver has not
    /// set `RING_FLAG_MASK_INT`).
    pub intr: OwnedFd,
}

/// An established memif connection.
#[derive(Debug)]
pub struct Session {
    /// Our role.
    pub role: Role,
    /// Regions, by index.
    pub regions: Vec<Region>,
    /// Client-to-server rings, by index.
    pub c2s: Vec<RingInfo>,
    /// Server-to-client rings, by index.
    pub s2c: Vec<RingInfo>,
    /// Client only: packet buffer size.
    pub bsize: u32,
    /// Client only: zero-copy (`zero-copy=yes`): regions after 0 are pools' data
    /// segments.
    pub zero_copy: bool,
    /// Peer application name (HELLO/INIT).
    pub peer_name: String,
    /// Peer interface name (CONNECT/CONNECTED).
    pub peer_if: String,
}

impl Session {
    /// The ring rx queue `qid` reads: server-to-client for a client, the other way round
    /// for a server.
    pub fn rx_ring(&self, qid: u16) -> Option<&RingInfo> {
        match self.role {
            Role::Client => self.s2c.get(qid as usize),
            Role::Server => self.c2s.get(qid as usize),
        }
    }

    /// The ring tx queue `qid` writes.
    pub fn tx_ring(&self, qid: u16) -> Option<&RingInfo> {
        match self.role {
            Role::Client => self.c2s.get(qid as usize),
            Role::Server => self.s2c.get(qid as usize),
        }
    }

    /// Resets both counters of every ring to 0 and marks the rings we receive on as
    /// polled (no interrupts wanted), as both sides do when the connection completes. A
    /// client then offers every buffer of its receive rings at once (head = ring size),
    /// so the server can send before the client's first poll (a zero-copy client too:
    /// its receive queues offer mbufs in their place as those buffers come back). (The
    /// server resets its counters when it gets CONNECT, the client when it gets
    /// CONNECTED: after it.)
    pub fn reset_rings(&self) {
        for (i, r) in self.c2s.iter().chain(&self.s2c).enumerate() {
            r.ring.head().store(0, Ordering::Relaxed);
            r.ring.tail().store(0, Ordering::Relaxed);
            let ours_rx = match self.role {
                Role::Server => i < self.c2s.len(),
                Role::Client => i >= self.c2s.len(),
            };
            if ours_rx {
                r.ring.set_flags(RING_FLAG_MASK_INT);
            }
            if ours_rx && self.role == Role::Client {
                let size = r.ring.size() as u16;
                for slot in 0..size {
                    r.ring.set_desc_len(slot, 0, self.bsize);
                }
                r.ring.head().store(size, Ordering::Relaxed);
            }
        }
        std::sync::atomic::fence(Ordering::Release);
    }
}

/// A new non-blocking eventfd (for a ring's interrupts).
pub use pmd_core::unix::eventfd;

/// Whether `fd` is an eventfd (what ADD_RING must carry); makes it non-blocking.
pub fn check_eventfd(fd: &OwnedFd) -> bool {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if !link.is_ok_and(|l| l.as_os_str() == "anon_inode:[eventfd]") {
        return false;
    }
    sys::set_nonblocking(fd.as_fd()).is_ok()
}

/// What a client negotiated from HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLayout {
    /// Client-to-server rings (our tx queues).
    pub c2s: u16,
    /// Server-to-client rings (our rx queues).
    pub s2c: u16,
    /// Ring size, log2.
    pub log2: u8,
    /// Packet buffer size.
    pub bsize: u32,
    /// Zero-copy: the most pool regions the server takes after region 0 (its HELLO's
    /// `max_region`); 0 in copy mode.
    pub pool_regions: u16,
}

impl ClientLayout {
    /// Bytes of all rings (where the buffers start).
    pub fn rings_bytes(&self) -> u64 {
        (self.c2s as u64 + self.s2c as u64) * proto::ring_bytes(self.log2)
    }

    /// Bytes of the whole region; `None` if the descriptors' 32-bit offsets cannot
    /// address it.
    pub fn region_bytes(&self) -> Option<u64> {
        let slots = (self.c2s as u64 + self.s2c as u64) << self.log2;
        let total = self.rings_bytes() + slots * self.bsize as u64;
        (total < MAX_REGION_SIZE).then_some(total)
    }

    /// Creates the region, lays out and initialises the rings (cookie, counters, one
    /// buffer per descriptor) and one eventfd per ring.
    pub fn build(&self, name: &str, huge: bool) -> io::Result<Session> {
        let bytes = self.region_bytes().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "rings and buffers exceed 4 GiB: lower rsize, bsize or the queue count",
            )
        })?;
        let region = Region::create(name, bytes, huge)?;
        let ring_bytes = proto::ring_bytes(self.log2);
        let buf0 = self.rings_bytes();
        let size = 1u64 << self.log2;
        let mut rings = Vec::new();
        for i in 0..(self.c2s as u64 + self.s2c as u64) {
            let offset = i * ring_bytes;
            let ring = RingPtr::new(&region, offset, self.log2)
                .ok_or_else(|| io::Error::other("ring layout does not fit its region"))?;
            let buf_base = buf0 + i * size * self.bsize as u64;
            ring.set_cookie(COOKIE);
            ring.set_flags(0);
            ring.head().store(0, Ordering::Relaxed);
            ring.tail().store(0, Ordering::Relaxed);
            for s in 0..size {
                ring.set_desc(
                    s as u16,
                    Desc {
                        flags: 0,
                        region: 0,
                        length: self.bsize,
                        offset: (buf_base + s * self.bsize as u64) as u32,
                    },
                );
            }
            rings.push(RingInfo {
                ring,
                region: 0,
                offset: offset as u32,
                log2: self.log2,
                buf_base: buf_base as u32,
                intr: eventfd()?,
            });
        }
        let s2c = rings.split_off(self.c2s as usize);
        let mut regions = vec![region];
        // Zero-copy: the data segment of every pool kept apart, as far as the server
        // takes regions. Pools beyond that (or made later) are sent from by copying.
        regions.extend(
            pmd_core::Mempool::list()
                .iter()
                .filter_map(Region::share_pool)
                .take(usize::from(self.pool_regions)),
        );
        Ok(Session {
            role: Role::Client,
            zero_copy: self.pool_regions > 0,
            regions,
            c2s: rings,
            s2c,
            bsize: self.bsize,
            peer_name: String::new(),
            peer_if: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_layout_is_dpdks() {
        let l = ClientLayout {
            c2s: 2,
            s2c: 1,
            log2: 4,
            bsize: 256,
            pool_regions: 0,
        };
        let s = l.build("layout-test", false).unwrap();
        let rb = 128 + 16 * 16;
        assert_eq!(l.rings_bytes(), 3 * rb);
        assert_eq!(s.c2s.len(), 2);
        assert_eq!(s.s2c.len(), 1);
        assert_eq!(s.s2c[0].offset as u64, 2 * rb);
        // S2C ring 0 is the third ring: its buffers follow those of the two C2S rings.
        assert_eq!(s.s2c[0].buf_base as u64, 3 * rb + 2 * 16 * 256);
        let d = s.c2s[1].ring.desc(3);
        assert_eq!(d.offset as u64, 3 * rb + (16 + 3) * 256);
        assert_eq!((d.length, d.region), (256, 0));
        assert_eq!(s.c2s[0].ring.cookie(), COOKIE);
        assert!(check_eventfd(&s.c2s[0].intr));
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!check_eventfd(&r.into()));
        assert!(ClientLayout {
            c2s: 255,
            s2c: 255,
            log2: 14,
            bsize: 65535,
            pool_regions: 0,
        }
        .region_bytes()
        .is_none());
    }
}
