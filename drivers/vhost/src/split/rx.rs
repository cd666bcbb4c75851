//! Guest to host: [`SplitRing::dequeue`], chains of device-readable buffers holding a
//! virtio-net header and a frame, copied into mbufs.

use super::guest::{ChainFault, Step};
use super::{count_fault, RxCtx, SplitRing};
use pmd_core::mbuf::{Mbuf, PktBatch};
use pmd_core::vnet::{VnetHdr, VNET_HDR_LEN};
use pmd_core::Mempool;

/// Largest frame taken from the guest (a TCP super-frame of 64 KiB with its Ethernet
/// header and two tags, [`pmd_core::vnet::GSO_MAX_FRAME`]); longer chains are dropped and
/// counted `too_long`.
pub const MAX_RX_FRAME: usize = pmd_core::vnet::GSO_MAX_FRAME;

/// Why a chain's copy into an mbuf stopped early.
enum CopyStop {
    /// The frame is longer than one mbuf and the queue does not scatter.
    TooLong,
    /// The pool ran dry for another segment.
    NoMbuf,
}

/// Copies `n` bytes from guest memory at `src` to the end of `m`, chaining segments
/// from `pool` when `scatter`.
///
/// # Safety
/// `src` must be valid for reads of `n` bytes (a buffer translated through the memory
/// table); the guest may write it meanwhile (a raw copy).
#[inline(always)]
unsafe fn append_guest(
    m: &mut Mbuf,
    pool: &Mempool,
    scatter: bool,
    src: *const u8,
    n: usize,
) -> Result<(), CopyStop> {
    let mut done = 0;
    while done < n {
        if m.last_tailroom() == 0 {
            if !scatter {
                return Err(CopyStop::TooLong);
            }
            let seg = pool.alloc().ok_or(CopyStop::NoMbuf)?;
            m.chain(seg).map_err(|_| CopyStop::TooLong)?;
        }
        let k = (n - done).min(m.last_tailroom());
        let dst = m.append(k).ok_or(CopyStop::TooLong)?;
        // SAFETY: the caller vouches for `src..src + n`; `dst` is k bytes of our mbuf.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.as_mut_ptr(), k) };
        done += k;
    }
    Ok(())
}

impl SplitRing {
    /// Receives up to `max` packets (at most the batch's spare room) from the guest's
    /// transmit queue into `batch`, mbufs from `pool`; returns how many were added.
    ///
    /// Every chain taken goes back to the guest (used length 0), delivered or not. A bad
    /// chain drops its packet and is counted in `ctx.errors` and the queue's errors; a
    /// header the [`pmd_core::vnet::RxProcessor`] refuses likewise (counted in its
    /// stats). With the pool empty the burst stops, the chain stays available and
    /// `no_mbuf` counts it. A frame of 0 bytes (a chain of only a header, or less) is a
    /// bad chain.
    pub fn dequeue(
        &mut self,
        batch: &mut PktBatch,
        max: usize,
        pool: &Mempool,
        ctx: &RxCtx<'_>,
    ) -> usize {
        let max = max.min(batch.spare());
        let mut got = 0usize;
        let mut bytes = 0u64;
        // Segments of an earlier super-frame first; no new chain until they are out.
        while got < max {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            bytes += p.len() as u64;
            got += 1;
            let _ = batch.push(p);
        }
        if !self.pending.is_empty() {
            ctx.stats.add(got as u64, bytes);
            return got;
        }
        let Some(avail) = self.begin(ctx.errors) else {
            ctx.stats.add(got as u64, bytes);
            return got;
        };
        let old = self.next;
        let hdr_len = self.hdr_len;
        let limit = (hdr_len + MAX_RX_FRAME) as u64;
        let mut errors = 0u64;
        while got < max && self.next != avail {
            let head = self.ring.avail_head(self.next);
            if head >= self.ring.size() {
                self.break_ring(ctx.errors);
                break;
            }
            let Some(mut m) = pool.alloc() else {
                ctx.stats.add_no_mbuf(1);
                break;
            };
            let mut hdr = [0u8; 12];
            let mut have_hdr = 0usize;
            let mut stop = None;
            let walked = self.ring.walk(&self.mem, head, false, limit, |p, n| {
                let mut off = 0;
                if have_hdr < hdr_len {
                    off = n.min(hdr_len - have_hdr);
                    // SAFETY: `p` is valid for `n >= off` bytes (translated by the
                    // walker); the destination is inside `hdr` (have_hdr + off <= 12).
                    unsafe { std::ptr::copy_nonoverlapping(p, hdr[have_hdr..].as_mut_ptr(), off) };
                    have_hdr += off;
                }
                if off < n {
                    // SAFETY: `p + off .. p + n` lies in the translated buffer.
                    let r = unsafe { append_guest(&mut m, pool, ctx.scatter, p.add(off), n - off) };
                    if let Err(e) = r {
                        stop = Some(e);
                        return Step::Stop;
                    }
                }
                Step::Continue
            });
            match (walked, stop) {
                (_, Some(CopyStop::NoMbuf)) => {
                    // Leave the chain for the next burst.
                    drop(m);
                    ctx.stats.add_no_mbuf(1);
                    break;
                }
                (Err(f), _) => {
                    count_fault(ctx.errors, f);
                    errors += 1;
                }
                (Ok(()), Some(CopyStop::TooLong)) => {
                    count_fault(ctx.errors, ChainFault::TooLong);
                    errors += 1;
                }
                (Ok(()), None) if have_hdr < hdr_len || m.is_empty() => {
                    count_fault(ctx.errors, ChainFault::Chain);
                    errors += 1;
                }
                (Ok(()), None) => {
                    let mut h = [0u8; VNET_HDR_LEN];
                    h.copy_from_slice(&hdr[..VNET_HDR_LEN]);
                    m.set_port(ctx.port);
                    let pending = &mut self.pending;
                    let res = ctx.vnet.process(&VnetHdr::from_bytes(&h), m, pool, |p| {
                        if got < max {
                            bytes += p.len() as u64;
                            got += 1;
                            let _ = batch.push(p);
                        } else {
                            // Within capacity: check_rx bounds the segments of one
                            // frame and `pending` was empty.
                            pending.push_back(p);
                        }
                    });
                    if res.is_err() {
                        errors += 1;
                    }
                }
            }
            self.ring.set_used_elem(self.next, head, 0);
            self.next = self.next.wrapping_add(1);
        }
        self.finish(old);
        ctx.stats.add(got as u64, bytes);
        if errors > 0 {
            ctx.stats.add_errors(errors);
        }
        got
    }
}
