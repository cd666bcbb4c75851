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

use super::guest::{ChainFault, Step};
use super::{
    bump, count_fault, SplitRing, TxCtx, F_GUEST_CSUM, F_GUEST_ECN, F_GUEST_TSO4, F_GUEST_TSO6,
    F_MRG_RXBUF,
};
use pmd_core::mbuf::Mbuf;
use pmd_core::vnet::{
    tx_header, VnetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, VNET_HDR_LEN,
};

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

/// Writes bytes `[pos, pos + k)` of the stream `hdr ++ m` to `dst`.
///
/// # Safety
/// `dst` must be valid for writes of `k` bytes, and `pos + k` at most the stream's length.
#[inline(always)]
unsafe fn write_stream(dst: *mut u8, pos: usize, k: usize, hdr: &[u8], m: &Mbuf) {
    let mut done = 0;
    if pos < hdr.len() {
        done = k.min(hdr.len() - pos);
        // SAFETY: `done` bytes of `hdr` from `pos`, into the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(hdr[pos..].as_ptr(), dst, done) };
    }
    if done < k {
        let off = pos + done - hdr.len();
        // In range by the caller's contract, so never an error.
        let _ = m.for_each_chunk(off, k - done, |chunk, at| {
            // SAFETY: `done + at + chunk.len() <= k`: inside the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst.add(done + at), chunk.len())
            };
        });
    }
}

impl SplitRing {
    /// Sends packets from the front of `pkts` into the guest's receive queue; returns how
    /// many were consumed (sent or dropped and counted): the caller frees those and gives
    /// the rest back to the app. Stops at the first packet the guest has no buffers for.
    ///
    /// The header comes from each packet's offload request ([`tx_header`]); a request
    /// its headers do not allow, or that the guest did not negotiate (GUEST_CSUM,
    /// GUEST_TSO4/6, GUEST_ECN for a super-frame with CWR), drops the packet
    /// (`tx_offload_errors`). The header has no IPv4 header checksum request: a packet
    /// asking for `TX_IP_CKSUM` must have had it computed before (the queue's
    /// `tx_prepare`, as [`pmd_core::vnet::ip_checksum_for_kernel`] does for a tap).
    pub fn enqueue(&mut self, pkts: &[Mbuf], ctx: &TxCtx<'_>) -> usize {
        let Some(avail) = self.begin(ctx.errors) else {
            return 0;
        };
        let old = self.next;
        let (mut consumed, mut sent, mut bytes, mut errors) = (0usize, 0u64, 0u64, 0u64);
        for m in pkts {
            match self.send_one(m, avail, ctx) {
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

    /// The header for `m`, if its request is valid and the guest takes it.
    #[inline(always)]
    fn header_for(&self, m: &Mbuf) -> Option<VnetHdr> {
        let tso4 = self.has(F_GUEST_TSO4);
        let tso6 = self.has(F_GUEST_TSO6);
        let h = tx_header(m, tso4 || tso6)?;
        let ecn_ok = h.gso_type & GSO_ECN == 0 || self.has(F_GUEST_ECN);
        let ok = match h.gso_type & !GSO_ECN {
            GSO_NONE => h.flags & F_NEEDS_CSUM == 0 || self.has(F_GUEST_CSUM),
            GSO_TCPV4 => tso4 && ecn_ok && self.has(F_GUEST_CSUM),
            _ => tso6 && ecn_ok && self.has(F_GUEST_CSUM),
        };
        ok.then_some(h)
    }

    /// Writes one packet into chains from `self.next` (available up to `avail`),
    /// committing them only if it fits.
    fn send_one(&mut self, m: &Mbuf, avail: u16, ctx: &TxCtx<'_>) -> Outcome {
        let Some(h) = self.header_for(m) else {
            bump(&ctx.vnet.tx_offload_errors, 1);
            return Outcome::Dropped;
        };
        let mut hdr = [0u8; 12];
        hdr[..VNET_HDR_LEN].copy_from_slice(&h.to_bytes());
        hdr[VNET_HDR_LEN..].copy_from_slice(&1u16.to_le_bytes());
        let hdr = &hdr[..self.hdr_len];
        let total = hdr.len() + m.len();
        let mrg = self.has(F_MRG_RXBUF);
        let start = self.next;
        let mut cur = start;
        let mut pos = 0usize;
        // Where bytes 10 and 11 of the stream (num_buffers) went.
        let mut nb_at = [std::ptr::null_mut::<u8>(); 2];
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
            let mut written = 0usize;
            let walked = self.ring.walk(&self.mem, head, true, u64::MAX, |p, n| {
                let k = n.min(total - pos);
                for (i, at) in nb_at.iter_mut().enumerate() {
                    let b = VNET_HDR_LEN + i;
                    if hdr.len() > b && (pos..pos + k).contains(&b) {
                        // SAFETY: b - pos < k <= n: inside the buffer.
                        *at = unsafe { p.add(b - pos) };
                    }
                }
                // SAFETY: `p` is valid for n >= k bytes (translated by the walker);
                // pos + k <= total.
                unsafe { write_stream(p, pos, k, hdr, m) };
                pos += k;
                written += k;
                if pos == total {
                    Step::Stop
                } else {
                    Step::Continue
                }
            });
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
            if pos == total {
                break;
            }
            if !mrg {
                // The chain stays available for the next packet.
                count_fault(ctx.errors, ChainFault::TooLong);
                return Outcome::Dropped;
            }
        }
        let chains = cur.wrapping_sub(start);
        let nb = chains.to_le_bytes();
        for (at, b) in nb_at.iter().zip(nb) {
            if !at.is_null() {
                // SAFETY: a byte of a buffer translated in this call; the memory table
                // is still mapped (held by `self.mem`).
                unsafe { at.write_volatile(b) };
            }
        }
        self.next = cur;
        if h.gso_type != GSO_NONE {
            bump(&ctx.vnet.tx_gso_packets, 1);
        } else if h.flags & F_NEEDS_CSUM != 0 {
            bump(&ctx.vnet.tx_csum_packets, 1);
        }
        Outcome::Sent
    }
}
