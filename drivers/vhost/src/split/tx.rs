//! Host to guest: [`SplitRing::enqueue`], packets copied into chains of device-writable
//! buffers behind a virtio-net header.
//!
//! A packet is a byte stream, header then frame, written across the buffers of one chain
//! or, with MRG_RXBUF, of as many chains as it needs (each gets a used element with the
//! bytes written to it, and the header's `num_buffers` says how many). Without
//! MRG_RXBUF the header and the whole frame must fit one chain: a packet longer than
//! the chain is dropped (counted `too_long`) and the chain is left for the next packet,
//! as a guest whose buffers are all too small will never take it. With MRG_RXBUF a
//! packet that does not fit the chains available stops the burst (the rest goes back to
//! the caller), unless the guest offered the whole ring and it still does not fit:
//! dropped, `too_long`. A bad chain (a read-only buffer, a bad address, a loop) drops the
//! packet being written: every chain it took goes back with length 0.

use super::SplitRing;
use crate::burst::{
    bump, count_fault, count_tx_offload, tx_header_for, ChainFault, TxCtx, TxStream, F_MRG_RXBUF,
};
use crate::dirty::{log_num_buffers, Logged};
use pmd_core::mbuf::Mbuf;

/// What became of one packet.
enum Outcome {
    /// Written into `chains` chains.
    Sent,
    /// Dropped (counted); the packet is consumed.
    Dropped,
    /// Not enough guest buffers: stop the burst, the packet is not consumed.
    NoRoom,
    /// The ring is broken: stop.
    Broken,
}

impl SplitRing {
    /// Sends packets from the front of `pkts` into the guest's receive queue; returns how
    /// many were consumed (sent or dropped and counted): the caller frees those and gives
    /// the rest back to the app. Stops at the first packet the guest has no buffers for.
    ///
    /// The header comes from each packet's offload request ([`pmd_core::vnet::tx_header`]); a request
    /// its headers do not allow, or that the guest did not negotiate (GUEST_CSUM,
    /// GUEST_TSO4/6, GUEST_ECN for a super-frame with CWR), drops the packet
    /// (`tx_offload_errors`). The header has no IPv4 header checksum request: a packet
    /// asking for `TX_IP_CKSUM` must have had it computed before (the queue's
    /// `tx_prepare`, as [`pmd_core::vnet::ip_checksum_for_kernel`] does for a tap).
    ///
    /// During a migration every buffer written is logged ([`crate::dirty`]).
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
    // Its own function per instantiation (measured: inlined into the queue's burst,
    // 64-byte transmit ran at 16.7 Mpps instead of 19.2).
    #[inline(never)]
    fn enqueue_with<const TABLES: bool, const LOG: bool>(
        &mut self,
        pkts: &[Mbuf],
        ctx: &TxCtx<'_>,
    ) -> usize {
        let Some(avail) = self.begin(ctx.errors) else {
            return 0;
        };
        let old = self.next;
        let (mut consumed, mut sent, mut bytes, mut errors) = (0usize, 0u64, 0u64, 0u64);
        for m in pkts {
            self.prefetch_ahead(avail);
            match self.send_one::<TABLES, LOG>(m, avail, ctx) {
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

    /// Writes one packet into chains from `self.next` (available up to `avail`),
    /// committing them only if it fits.
    fn send_one<const TABLES: bool, const LOG: bool>(
        &mut self,
        m: &Mbuf,
        avail: u16,
        ctx: &TxCtx<'_>,
    ) -> Outcome {
        let Some(h) = tx_header_for(self.features, m) else {
            bump(&ctx.vnet.tx_offload_errors, 1);
            return Outcome::Dropped;
        };
        let mut stream = TxStream::new(&h, self.hdr_len, m);
        let mrg = self.has(F_MRG_RXBUF);
        let start = self.next;
        let mut cur = start;
        loop {
            if cur == avail {
                if avail.wrapping_sub(start) == self.ring.size() {
                    // The whole ring cannot hold it: it never will.
                    count_fault(ctx.errors, ChainFault::TooLong);
                    return Outcome::Dropped;
                }
                return Outcome::NoRoom;
            }
            let head = self.ring.avail_head(cur);
            if head >= self.ring.size() {
                self.break_ring(ctx.errors);
                return Outcome::Broken;
            }
            let mut sink = Logged::<_, LOG>::new(&mut stream, self.log.as_ref(), &self.mem);
            let walked = self
                .ring
                .walk::<TABLES>(&self.mem, head, true, u64::MAX, &mut sink);
            let written = stream.end_chain();
            if let Err(f) = walked {
                count_fault(ctx.errors, f);
                // Every chain this packet took goes back empty, the bad one too.
                let mut i = start;
                while i != cur {
                    self.ring.set_used_len(i, 0);
                    i = i.wrapping_add(1);
                }
                self.ring.set_used_elem(cur, head, 0);
                self.next = cur.wrapping_add(1);
                return Outcome::Dropped;
            }
            self.ring.set_used_elem(cur, head, written as u32);
            cur = cur.wrapping_add(1);
            if stream.done() {
                break;
            }
            if !mrg {
                // The chain stays available for the next packet.
                count_fault(ctx.errors, ChainFault::TooLong);
                return Outcome::Dropped;
            }
        }
        // SAFETY: the buffers were translated in this call; `self.mem` keeps them mapped.
        unsafe { stream.set_num_buffers(cur.wrapping_sub(start)) };
        if let (true, Some(l)) = (LOG, &self.log) {
            log_num_buffers(&stream, &l.log, &self.mem);
        }
        self.next = cur;
        count_tx_offload(&h, ctx.vnet);
        Outcome::Sent
    }
}
