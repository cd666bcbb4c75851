//! Transmit offloads (7.2.4 / 7.2.5): what the advanced context descriptor (7.2.3.2.3)
//! asks for and the data descriptors apply at EOP — IPv4 header checksum (POPTS.IXSM),
//! TCP/UDP checksum (POPTS.TXSM, seeded with the pseudo-header sum the driver left in
//! the checksum field), TCP segmentation (DCMD.TSE: MSS-sized frames with IP length/id,
//! TCP sequence number, flags and checksums fixed per frame) and VLAN tag insertion
//! (DCMD.VLE, the tag from the context).
//!
//! The field layouts are the model's own reading of the datasheet (`crate::desc`), not the
//! driver's, so a driver building descriptors wrongly is caught here.

use crate::desc::*;
use crate::hw::{TCP_CWR, TCP_FIN, TCP_PSH};
use pmd_core::csum;

/// A transmit context as the device stored it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ctx {
    /// VLAN tag for VLE.
    pub vlan: u16,
    /// MACLEN.
    pub maclen: usize,
    /// IPLEN.
    pub iplen: usize,
    /// L4LEN (TSO).
    pub l4len: usize,
    /// MSS (TSO).
    pub mss: usize,
    /// TUCMD.IPV4.
    pub ipv4: bool,
    /// TUCMD.L4T is TCP (else UDP).
    pub tcp: bool,
}

/// Decodes a context descriptor: (slot index, context).
pub(crate) fn decode_ctx(d: [u64; 2]) -> (usize, Ctx) {
    let vml = d[0] as u32;
    let tucmd = d[1] as u32;
    let mli = (d[1] >> 32) as u32;
    let ctx = Ctx {
        vlan: (vml >> CTX_VLAN_SHIFT) as u16,
        maclen: ((vml >> CTX_MACLEN_SHIFT) & CTX_MACLEN_MASK) as usize,
        iplen: (vml & CTX_IPLEN_MASK) as usize,
        l4len: ((mli >> CTX_L4LEN_SHIFT) & 0xff) as usize,
        mss: (mli >> CTX_MSS_SHIFT) as usize,
        ipv4: tucmd & CTX_TUCMD_IPV4 != 0,
        tcp: tucmd & CTX_TUCMD_L4T_MASK == CTX_TUCMD_L4T_TCP,
    };
    (((mli >> CTX_IDX_SHIFT) & 1) as usize, ctx)
}

/// What the first data descriptor of a packet asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Request {
    /// DCMD.VLE.
    pub vle: bool,
    /// DCMD.TSE.
    pub tse: bool,
    /// POPTS.IXSM.
    pub ixsm: bool,
    /// POPTS.TXSM.
    pub txsm: bool,
    /// Context slot (olinfo IDX).
    pub idx: usize,
    /// PAYLEN.
    pub paylen: usize,
}

impl Request {
    /// Decodes the offload fields of a data descriptor's cmd_type_len and olinfo_status.
    pub fn decode(cmd: u32, olinfo: u32) -> Request {
        Request {
            vle: cmd & TXD_CMD_VLE != 0,
            tse: cmd & TXD_CMD_TSE != 0,
            ixsm: olinfo & TXD_POPTS_IXSM != 0,
            txsm: olinfo & TXD_POPTS_TXSM != 0,
            idx: ((olinfo >> TXD_OLINFO_IDX_SHIFT) & 1) as usize,
            paylen: (olinfo >> TXD_OLINFO_PAYLEN_SHIFT) as usize,
        }
    }

    /// Whether any offload is asked for (a context is needed).
    pub fn any(&self) -> bool {
        self.vle || self.tse || self.ixsm || self.txsm
    }
}

/// Applies `req` with `ctx` to the gathered `frame`; returns the frames for the wire, or
/// why the packet is malformed (dropped and counted by the caller).
pub(crate) fn apply(
    frame: Vec<u8>,
    req: Request,
    ctx: Option<Ctx>,
) -> Result<Vec<Vec<u8>>, String> {
    if !req.any() {
        return Ok(vec![frame]);
    }
    let ctx = ctx.ok_or("an offload without a context descriptor in its slot")?;
    let mut frames = if req.tse {
        segment(&frame, &ctx, req)?
    } else {
        let mut f = frame;
        checksums(&mut f, &ctx, req, None)?;
        vec![f]
    };
    if req.vle {
        for f in &mut frames {
            if f.len() < 12 {
                return Err("frame too short for a VLAN tag".into());
            }
            let mut tag = [0u8; 4];
            tag[..2].copy_from_slice(&0x8100u16.to_be_bytes());
            tag[2..].copy_from_slice(&ctx.vlan.to_be_bytes());
            f.splice(12..12, tag);
        }
    }
    Ok(frames)
}

/// IPv4 header checksum (IXSM) and L4 checksum (TXSM) of one frame. `l4_len` is the L4
/// length to add to the seeded sum (TSO seeds leave it out); None: already in the seed.
fn checksums(f: &mut [u8], ctx: &Ctx, req: Request, l4_len: Option<usize>) -> Result<(), String> {
    if !req.ixsm && !req.txsm {
        return Ok(());
    }
    let ip = ctx.maclen;
    let l4 = ip + ctx.iplen;
    if ctx.maclen < 14 || ctx.iplen < 20 || l4 > f.len() {
        return Err(format!(
            "MACLEN {} / IPLEN {} do not fit the {}-byte frame",
            ctx.maclen,
            ctx.iplen,
            f.len()
        ));
    }
    if req.ixsm {
        if !ctx.ipv4 {
            return Err("IXSM without TUCMD.IPV4".into());
        }
        f[ip + 10..ip + 12].fill(0);
        let c = csum::checksum(&f[ip..l4]);
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    }
    if req.txsm {
        let at = l4 + if ctx.tcp { 16 } else { 6 };
        if at + 2 > f.len() {
            return Err("no room for the L4 checksum field".into());
        }
        // The field holds the driver's pseudo-header sum: sum everything from L4 on.
        let mut acc = csum::add(0, &f[l4..]);
        if let Some(n) = l4_len {
            acc += n as u64;
        }
        let mut c = !csum::fold(acc);
        if !ctx.tcp && c == 0 {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

/// TCP segmentation: the header (MACLEN + IPLEN + L4LEN bytes) repeated in front of each
/// MSS-sized piece of the payload, with the per-frame fields fixed.
fn segment(frame: &[u8], ctx: &Ctx, req: Request) -> Result<Vec<Vec<u8>>, String> {
    let hlen = ctx.maclen + ctx.iplen + ctx.l4len;
    if !ctx.tcp || ctx.l4len < 20 || ctx.mss == 0 || hlen >= frame.len() {
        return Err(format!(
            "TSO needs TCP, L4LEN >= 20, MSS > 0 and payload (L4LEN {}, MSS {}, {} header bytes of {})",
            ctx.l4len,
            ctx.mss,
            hlen,
            frame.len()
        ));
    }
    let payload = &frame[hlen..];
    if payload.len() != req.paylen {
        return Err(format!(
            "PAYLEN {} but {} payload bytes follow the headers",
            req.paylen,
            payload.len()
        ));
    }
    let (ip, l4) = (ctx.maclen, ctx.maclen + ctx.iplen);
    let hdr = &frame[..hlen];
    let seq0 = u32::from_be_bytes([hdr[l4 + 4], hdr[l4 + 5], hdr[l4 + 6], hdr[l4 + 7]]);
    let flags0 = hdr[l4 + 13];
    let id0 = u16::from_be_bytes([hdr[ip + 4], hdr[ip + 5]]);
    let n = payload.len().div_ceil(ctx.mss);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(ctx.mss).enumerate() {
        let mut f = Vec::with_capacity(hlen + chunk.len());
        f.extend_from_slice(hdr);
        f.extend_from_slice(chunk);
        let l4_total = ctx.l4len + chunk.len();
        if ctx.ipv4 {
            let tot = (ctx.iplen + l4_total) as u16;
            f[ip + 2..ip + 4].copy_from_slice(&tot.to_be_bytes());
            f[ip + 4..ip + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        } else {
            // IPv6: the payload length covers extension headers and the segment.
            let pl = (ctx.iplen - 40 + l4_total) as u16;
            f[ip + 4..ip + 6].copy_from_slice(&pl.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * ctx.mss) as u32);
        f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        f[l4 + 13] = flags;
        checksums(&mut f, ctx, req, Some(l4_total))?;
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_fields_decode_per_the_datasheet() {
        // vlan_macip_lens: IPLEN 8:0, MACLEN 15:9, VLAN 31:16; TUCMD IPV4 bit 10, L4T
        // 12:11; mss_l4len_idx: IDX 6:4, L4LEN 15:8, MSS 31:16.
        let w0 = 20u64 | 14 << 9 | 0xabc << 16;
        let w1 = 0x2020_0c00u64 | (1460u64 << 16 | 32 << 8 | 1 << 4) << 32;
        let (idx, c) = decode_ctx([w0, w1]);
        assert_eq!(idx, 1);
        assert_eq!(
            c,
            Ctx {
                vlan: 0xabc,
                maclen: 14,
                iplen: 20,
                l4len: 32,
                mss: 1460,
                ipv4: true,
                tcp: true
            }
        );
        let r = Request::decode(0xC000_0000, 5000 << 14 | 0x300 | 1 << 4);
        assert!(r.vle && r.tse && r.ixsm && r.txsm);
        assert_eq!((r.idx, r.paylen), (1, 5000));
    }
}
