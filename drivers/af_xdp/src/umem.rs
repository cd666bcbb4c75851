//! The UMEM: one pmd-core memory [`Segment`] (hugepages under the EAL, ordinary shared
//! memory with `--no-huge`) cut into equal frames, registered with the socket. Frames
//! `0..rx_frames` circulate through the fill and rx rings; the rest belong to the tx
//! side. All access goes through bounds-checked copies: a UMEM address is only an offset
//! the kernel (a peer) gave us.

use pmd_core::error::Result;
use pmd_core::memory::Segment;

/// The packet memory of one XDP socket.
#[derive(Debug)]
pub(crate) struct Umem {
    seg: Segment,
    frame_size: u32,
    frames: u32,
    rx_frames: u32,
}

impl Umem {
    /// Allocates `rx_frames + tx_frames` frames of `frame_size` bytes (a power of two).
    pub fn new(name: &str, frame_size: u32, rx_frames: u32, tx_frames: u32) -> Result<Umem> {
        debug_assert!(frame_size.is_power_of_two());
        let frames = rx_frames + tx_frames;
        let seg = Segment::alloc(name, frames as usize * frame_size as usize)?;
        Ok(Umem {
            seg,
            frame_size,
            frames,
            rx_frames,
        })
    }

    /// Start of the registered area.
    pub fn addr(&self) -> u64 {
        self.seg.as_ptr() as u64
    }

    /// Bytes registered (whole frames; the segment may be larger).
    pub fn len(&self) -> u64 {
        u64::from(self.frames) * u64::from(self.frame_size)
    }

    /// Frame size in bytes.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Frames reserved for receiving.
    pub fn rx_frames(&self) -> u32 {
        self.rx_frames
    }

    /// UMEM address of frame `i`.
    pub fn frame_addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_size)
    }

    /// Whether the memory is hugepage-backed.
    pub fn is_huge(&self) -> bool {
        self.seg.is_huge()
    }

    /// Copies the `dst.len()` bytes at UMEM address `addr` into `dst`; false (nothing
    /// copied) unless they lie inside one frame.
    #[inline(always)]
    pub fn copy_out(&self, addr: u64, dst: &mut [u8]) -> bool {
        if !self.within_frame(addr, dst.len()) {
            return false;
        }
        // SAFETY: addr..addr+len is inside the registered area, which is inside the
        // segment we own; `dst` is ordinary memory that cannot overlap it. The frame is
        // ours (we took it off the rx ring), so the kernel does not write it now.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.seg.as_ptr().add(addr as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        true
    }

    /// Copies `src` to UMEM address `addr`; false (nothing written) unless it fits in
    /// one frame.
    #[inline(always)]
    pub fn copy_in(&self, addr: u64, src: &[u8]) -> bool {
        if !self.within_frame(addr, src.len()) {
            return false;
        }
        // SAFETY: as in `copy_out`; the frame is a free tx frame the kernel does not own
        // until we post it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.seg.as_ptr().add(addr as usize),
                src.len(),
            )
        };
        true
    }

    /// Whether `addr..addr+len` lies inside the area and inside one frame.
    #[inline(always)]
    pub fn within_frame(&self, addr: u64, len: usize) -> bool {
        let fs = u64::from(self.frame_size);
        addr < self.len() && (addr & (fs - 1)) + len as u64 <= fs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_bounded_to_one_frame() {
        let u = Umem::new("afxdp-umem-test", 2048, 2, 2).unwrap();
        assert_eq!(u.len(), 4 * 2048);
        assert_eq!(u.frame_addr(3), 3 * 2048);
        let pkt = [0xabu8; 100];
        assert!(u.copy_in(2048 + 256, &pkt));
        let mut back = [0u8; 100];
        assert!(u.copy_out(2048 + 256, &mut back));
        assert_eq!(back, pkt);
        // Crossing into the next frame, past the end, or huge addresses are refused.
        assert!(!u.copy_out(2048 - 50, &mut back));
        assert!(!u.copy_out(4 * 2048, &mut back));
        assert!(!u.copy_out(u64::MAX - 10, &mut back));
        assert!(!u.copy_in(3 * 2048 + 1, &[0u8; 2048]));
        assert!(u.copy_in(3 * 2048, &[0u8; 2048]));
        assert!(u.within_frame(0, 0));
    }
}
