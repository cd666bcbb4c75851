//! Host to guest: [`PackedRing::enqueue`], packets copied into chains of device-writable
//! buffers behind a virtio-net header, with the same rules as the split ring's
//! ([`crate::split::SplitRing::enqueue`]): one chain per packet, or with MRG_RXBUF as
//! many as it needs (each gets a used descriptor with the bytes written to it, and the
//! header's `num_buffers` says how many). Without MRG_RXBUF a packet longer than the
//! chain is dropped (`too_long`) and the chain is left for the next packet. With
//! MRG_RXBUF a packet that does not fit the chains available stops the burst, unless it
//! does not fit the whole ring: dropped, `too_long`. A bad chain drops the packet being
//! written: every chain it took goes back with length 0. The used descriptors of a
//! packet are staged until it is complete, so a packet that does not fit leaves its
//! chains available.

use super::PackedRing;
use crate::burst::{
    bump, count_fault, count_tx_offload, tx_header_for, ChainFault, TxCtx, TxStream, F_MRG_RXBUF,
};
use crate::dirty::{log_num_buffers, Logged};
use pmd_core::mbuf::Mbuf;

/// What became of one packet.
enum Outcome {
    /// Written into the guest's chains.
    Sent,
    /// Dropped (counted); the packet is consumed.
    Dropped,
    /// Not enough guest buffers: stop the burst, the packet is not consumed.
    NoRoom,
    /// The ring is broken: stop.
    Broken,
}

impl PackedRing {
    /// Sends packets from the front of `pkts` into the guest's receive queue; returns how
    /// many were consumed (sent or dropped and counted): the caller frees those and gives
    /// the rest back to the app. Stops at the first packet the guest has no buffers for.
    ///
    /// Headers, offload checks and dirty logging as for the split ring
    /// ([`crate::split::SplitRing::enqueue`]).
    pub fn enqueue(&mut self, pkts: &[Mbuf], ctx: &TxCtx<'_>) -> usize {
        match (self.ring.tables(), self.log.is_some()) {
            (true, false) => self.enqueue_with::<true, false>(pkts, ctx),
            (false, false) => self.enqueue_with::<false, false>(pkts, ctx),
            (true, true) => self.enqueue_with::<true, true>(pkts, ctx),
            (false, true) => self.enqueue_with::<false, true>(pkts, ctx),
        }
    }

    /// [`Self::enqueue`], with or without INDIRECT_DESC's tables and the dirty log
    /// compiled in.
    // Its own function per instantiation, as the split ring's (measured there).
    #[inline(never)]
    fn enqueue_with<const TABLES: bool, const LOG: bool>(
        &mut self,
        pkts: &[Mbuf],
        ctx: &TxCtx<'_>,
    ) -> usize {
        if self.broken {
            return 0;
        }
        let old = (self.next, self.wrap);
        self.prefetch_burst::<true>(pkts.len());
        let mut taken = 0u32;
        let (mut consumed, mut sent, mut bytes, mut errors) = (0usize, 0u64, 0u64, 0u64);
        for m in pkts {
            match self.send_one::<TABLES, LOG>(m, &mut taken, ctx) {
                Outcome::Sent => {
                    sent += 1;
                    bytes += m.len() as u64;
                }
                Outcome::Dropped => errors += 1,
                Outcome::NoRoom | Outcome::Broken => break,
            }
            consumed += 1;
        }
        self.finish(old);
        ctx.stats.add(sent, bytes);
        if errors > 0 {
            ctx.stats.add_errors(errors);
        }
        consumed
    }

    /// Writes one packet into chains from our position, staging their used descriptors
    /// only if it fits; `taken` counts the positions the burst used.
    fn send_one<const TABLES: bool, const LOG: bool>(
        &mut self,
        m: &Mbuf,
        taken: &mut u32,
        ctx: &TxCtx<'_>,
    ) -> Outcome {
        let Some(h) = tx_header_for(self.features, m) else {
            bump(&ctx.vnet.tx_offload_errors, 1);
            return Outcome::Dropped;
        };
        let mut stream = TxStream::new(&h, self.hdr_len, m);
        let mrg = self.features & F_MRG_RXBUF != 0;
        let size = u32::from(self.ring.size());
        let mark = self.staged.len();
        let (mut pos, mut wrap) = (self.next, self.wrap);
        let mut here = 0u32;
        loop {
            if *taken + here >= size || !self.available(pos, wrap) {
                self.staged.truncate(mark);
                if here == size {
                    // The whole ring cannot hold it: it never will.
                    count_fault(ctx.errors, ChainFault::TooLong);
                    return Outcome::Dropped;
                }
                return Outcome::NoRoom;
            }
            let mut sink = Logged::<_, LOG>::new(&mut stream, self.log.as_ref(), &self.mem);
            let walked = self
                .ring
                .walk::<TABLES>(&self.mem, pos, true, u64::MAX, &mut sink);
            let written = stream.end_chain();
            let Some(w) = walked else {
                self.staged.truncate(mark);
                self.break_ring(ctx.errors);
                return Outcome::Broken;
            };
            if *taken + here + u32::from(w.descs) > size {
                // Flags flipped behind us: not this burst.
                self.staged.truncate(mark);
                return Outcome::NoRoom;
            }
            if let Some(f) = w.fault {
                count_fault(ctx.errors, f);
                // Every chain this packet took goes back empty, the bad one too.
                for s in &mut self.staged[mark..] {
                    s.len = 0;
                }
                self.stage(pos, wrap, w.id, 0);
                (self.next, self.wrap) = self.ring.advance(pos, wrap, w.descs);
                *taken += here + u32::from(w.descs);
                return Outcome::Dropped;
            }
            self.stage(pos, wrap, w.id, written as u32);
            here += u32::from(w.descs);
            (pos, wrap) = self.ring.advance(pos, wrap, w.descs);
            if stream.done() {
                break;
            }
            if !mrg {
                // The chain stays available for the next packet.
                self.staged.truncate(mark);
                count_fault(ctx.errors, ChainFault::TooLong);
                return Outcome::Dropped;
            }
        }
        let chains = (self.staged.len() - mark) as u16;
        // SAFETY: the buffers were translated in this call; `self.mem` keeps them mapped.
        unsafe { stream.set_num_buffers(chains) };
        if let (true, Some(l)) = (LOG, &self.log) {
            log_num_buffers(&stream, &l.log, &self.mem);
        }
        (self.next, self.wrap) = (pos, wrap);
        *taken += here;
        count_tx_offload(&h, ctx.vnet);
        Outcome::Sent
    }
}
