//! Guest to host: [`PackedRing::dequeue`], chains of device-readable buffers holding a
//! virtio-net header and a frame, copied into mbufs.

use super::PackedRing;
use crate::burst::{drain_pending, RxChain, RxCtx, RxGather, MAX_RX_FRAME};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;

/// How many chains ahead of the one being copied a receive burst prefetches buffers.
const RX_PREFETCH_AHEAD: usize = 8;

impl PackedRing {
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
        if self.ring.tables() {
            self.dequeue_with::<true>(batch, max, pool, ctx)
        } else {
            self.dequeue_with::<false>(batch, max, pool, ctx)
        }
    }

    /// [`Self::dequeue`], with or without INDIRECT_DESC's tables compiled in.
    // Inlined, as the split ring's (measured there).
    #[inline(always)]
    fn dequeue_with<const TABLES: bool>(
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
        if drain_pending(&mut self.pending, batch, max, &mut got, &mut bytes) || self.broken {
            ctx.stats.add(got as u64, bytes);
            return got;
        }
        let old = (self.next, self.wrap);
        let hdr_len = self.hdr_len;
        let limit = (hdr_len + MAX_RX_FRAME) as u64;
        let size = u32::from(self.ring.size());
        let mut taken = 0u32;
        let mut errors = 0u64;
        // The flags of the burst first, in one pass (their misses overlap); then, as the
        // burst goes, the buffers of the positions found available up to
        // RX_PREFETCH_AHEAD positions ahead of the one being copied: enough to overlap
        // their misses, few enough not to queue behind each other.
        let run = self.available_run(max);
        let (mut ahead_pos, mut prefetched) = (self.next, 0usize);
        while got < max && taken < size {
            while prefetched < run.min(taken as usize + RX_PREFETCH_AHEAD) {
                self.prefetch_buffer::<false>(ahead_pos);
                ahead_pos = self.ring.advance(ahead_pos, false, 1).0;
                prefetched += 1;
            }
            let (pos, wrap) = (self.next, self.wrap);
            if !self.available(pos, wrap) {
                break;
            }
            let Some(m) = pool.alloc() else {
                ctx.stats.add_no_mbuf(1);
                break;
            };
            let mut gather = RxGather::new(m, pool, ctx.scatter, hdr_len);
            let walked = self
                .ring
                .walk::<TABLES>(&self.mem, pos, false, limit, &mut gather);
            let Some(w) = walked else {
                self.break_ring(ctx.errors);
                break;
            };
            if taken + u32::from(w.descs) > size {
                // Flags flipped behind us: leave it for the next burst.
                break;
            }
            let pending = &mut self.pending;
            let done = gather.finish(w.fault.map_or(Ok(()), Err), ctx, |p| {
                if got < max {
                    bytes += p.len() as u64;
                    got += 1;
                    let _ = batch.push(p);
                } else {
                    // Within capacity: check_rx bounds the segments of one frame and
                    // `pending` was empty.
                    pending.push_back(p);
                }
            });
            match done {
                // Leave the chain for the next burst.
                RxChain::NoMbuf => break,
                RxChain::Dropped => errors += 1,
                RxChain::Delivered => {}
            }
            self.stage(pos, wrap, w.id, 0);
            (self.next, self.wrap) = self.ring.advance(pos, wrap, w.descs);
            taken += u32::from(w.descs);
        }
        self.finish_dequeue(old);
        ctx.stats.add(got as u64, bytes);
        if errors > 0 {
            ctx.stats.add_errors(errors);
        }
        got
    }
}
