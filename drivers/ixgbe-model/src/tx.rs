//! The transmit path (7.2): for each enabled queue, descriptors from TDH up to TDT are
//! fetched; advanced data descriptors (DTYP 0011b) contribute their buffer to the frame
//! in progress, which goes on the wire at EOP after the offloads its first data
//! descriptor asked for ([`crate::offload`]); advanced context descriptors (DTYP 0010b)
//! load one of the queue's two context slots. Descriptors with RS get DD written
//! back (bit 0 of the status field, 7.2.3.2.4); TDH advances past every descriptor
//! processed.
//!
//! An SR-IOV VF's queues run here too: they need the VF clear to send and its bus
//! mastering on rather than the PF's transmit enable, and their frames count in the
//! VF's statistics instead of GPTC/GOTC (and are always padded to 64 bytes, as the PF's
//! driver sets HLREG0.TXPADEN).

use crate::desc::*;
use crate::device::Device;
use crate::engine::{Engine, TxQueueState};
use crate::hw::{CRC_LEN, MIN_FRAME, TX_MAX_FRAME, TX_MAX_TSO};
use crate::regs::*;
use crate::stats::bump;
use crate::vf::Vf;

/// Descriptors processed per queue per pass at most.
const BUDGET: u32 = 128;

/// Runs every enabled transmit queue once; frames for the wire are appended to `out`
/// when it is given. Returns the number of descriptors processed.
pub(crate) fn poll(dev: &Device, engine: &mut Engine, mut out: Option<&mut Vec<Vec<u8>>>) -> usize {
    if dev.tx_stall.load(std::sync::atomic::Ordering::Acquire) {
        return 0;
    }
    let pf_on = dev.regs.get(DMATXCTL) & DMATXCTL_TE != 0 && dev.dma_allowed();
    let mut done = 0;
    for (q, st) in engine.tx.iter_mut().enumerate() {
        if st.stopped || dev.regs.get(txdctl(q)) & DCTL_ENABLE == 0 {
            continue;
        }
        let vf = dev.vfs.of_queue(q);
        let on = match vf {
            Some(vf) => vf.ready() && vf.dma_allowed(dev),
            None => pf_on,
        };
        if on {
            done += poll_queue(dev, q, st, out.as_deref_mut(), vf);
        }
    }
    done
}

/// A transmit ring as its registers describe it.
struct Ring {
    base: u64,
    count: u32,
    head: u32,
    tail: u32,
}

fn load(dev: &Device, q: usize) -> Result<Ring, String> {
    let r = &dev.regs;
    let base = (u64::from(r.get(tdbah(q))) << 32 | u64::from(r.get(tdbal(q)))) & !RING_BASE_IGNORED;
    let count = (r.get(tdlen(q)) & RING_LEN_MASK) / DESC_LEN as u32;
    let (head, tail) = (r.get(tdh(q)), r.get(tdt(q)));
    if count == 0 {
        return Err("TDLEN holds no descriptor".into());
    }
    if head >= count || tail >= count {
        return Err(format!(
            "TDH {head} / TDT {tail} past the {count}-descriptor ring"
        ));
    }
    Ok(Ring {
        base,
        count,
        head,
        tail,
    })
}

/// Stops a queue after a fault; it stays stopped until TXDCTL.ENABLE is toggled.
fn stop(dev: &Device, q: usize, st: &mut TxQueueState, why: &dyn std::fmt::Display) {
    tracing::warn!(model = dev.id, queue = q, "tx queue stopped: {why}");
    *st = TxQueueState {
        stopped: true,
        ..TxQueueState::default()
    };
}

fn poll_queue(
    dev: &Device,
    q: usize,
    st: &mut TxQueueState,
    mut out: Option<&mut Vec<Vec<u8>>>,
    vf: Option<&Vf>,
) -> usize {
    let ring = match load(dev, q) {
        Ok(r) => r,
        Err(why) => {
            bump(&dev.counters.errors, 1);
            stop(dev, q, st, &why);
            return 0;
        }
    };
    let mut head = ring.head;
    let mut n = 0;
    while head != ring.tail && n < BUDGET {
        let Some(di) = ring.base.checked_add(u64::from(head) * DESC_LEN) else {
            bump(&dev.counters.dma_faults, 1);
            stop(dev, q, st, &"descriptor address overflows");
            break;
        };
        let d = match dev.iommu.read_desc(di) {
            Ok(d) => d,
            Err(f) => {
                bump(&dev.counters.dma_faults, 1);
                stop(dev, q, st, &f);
                break;
            }
        };
        let cmd = d[1] as u32;
        let dext = cmd & TXD_CMD_DEXT != 0;
        match cmd & TXD_DTYP_MASK {
            t if dext && t == TXD_DTYP_DATA => {
                if st.req.is_none() {
                    st.req = Some(crate::offload::Request::decode(cmd, (d[1] >> 32) as u32));
                }
                if let Err(f) = gather(dev, st, d[0], (cmd & TXD_DTALEN_MASK) as usize) {
                    bump(&dev.counters.dma_faults, 1);
                    stop(dev, q, st, &f);
                    break;
                }
                if cmd & TXD_CMD_EOP != 0 {
                    finish_frame(dev, st, out.as_deref_mut(), vf);
                }
            }
            t if dext && t == TXD_DTYP_CTXT => {
                let (idx, ctx) = crate::offload::decode_ctx(d);
                st.ctx[idx] = Some(ctx);
            }
            t => {
                bump(&dev.counters.errors, 1);
                let why = format!(
                    "descriptor {head}: DEXT {} DTYP {:#x} is not an advanced data or context descriptor",
                    dext as u8,
                    t >> 20
                );
                stop(dev, q, st, &why);
                break;
            }
        }
        if cmd & TXD_CMD_RS != 0 {
            let wb = d[1] | u64::from(TXD_STAT_DD) << 32;
            if let Err(f) = dev.iommu.write_u64_release(di.wrapping_add(8), wb) {
                bump(&dev.counters.dma_faults, 1);
                stop(dev, q, st, &f);
                break;
            }
        }
        head = (head + 1) % ring.count;
        dev.regs.set(tdh(q), head);
        n += 1;
    }
    n as usize
}

/// Appends `len` bytes at `addr` to the frame in progress (or marks it oversize).
fn gather(
    dev: &Device,
    st: &mut TxQueueState,
    addr: u64,
    len: usize,
) -> Result<(), crate::iommu::DmaFault> {
    if st.oversize || st.pending.len() + len > TX_MAX_TSO {
        st.oversize = true;
        return Ok(());
    }
    let start = st.pending.len();
    st.pending.resize(start + len, 0);
    let r = dev.iommu.read(addr, &mut st.pending[start..]);
    if r.is_err() {
        st.pending.truncate(start);
    }
    r
}

/// The frame in progress is complete: pad it (HLREG0.TXPADEN), count it and put it on
/// the wire, unless it is empty or oversize (errors) or the link is down (lost).
fn finish_frame(
    dev: &Device,
    st: &mut TxQueueState,
    out: Option<&mut Vec<Vec<u8>>>,
    vf: Option<&Vf>,
) {
    let frame = std::mem::take(&mut st.pending);
    let oversize = std::mem::take(&mut st.oversize);
    let req = st.req.take().unwrap_or_default();
    let c = &dev.counters;
    if oversize || frame.is_empty() || (!req.tse && frame.len() > TX_MAX_FRAME) {
        bump(&c.errors, 1);
        return;
    }
    let frames = match crate::offload::apply(frame, req, st.ctx[req.idx]) {
        Ok(f) => f,
        Err(why) => {
            tracing::warn!(model = dev.id, "transmit offload refused: {why}");
            bump(&c.errors, 1);
            return;
        }
    };
    if !dev.link_is_up() {
        bump(&c.tx_link_down, frames.len() as u64);
        return;
    }
    let mut out = out;
    for mut frame in frames {
        if frame.len() > TX_MAX_FRAME {
            bump(&c.errors, 1);
            continue;
        }
        let pad = vf.is_some() || dev.regs.get(HLREG0) & HLREG0_TXPADEN != 0;
        if pad && frame.len() < MIN_FRAME - CRC_LEN {
            frame.resize(MIN_FRAME - CRC_LEN, 0);
        }
        if let Some(vf) = vf {
            let v = &vf.counters;
            bump(&v.tx_packets, 1);
            bump(&v.tx_bytes, frame.len() as u64);
            bump(&v.tx_octets, (frame.len() + CRC_LEN) as u64);
        } else {
            dev.regs.count(GPTC, 1);
            dev.regs.count_tx_octets((frame.len() + CRC_LEN) as u64);
        }
        bump(&c.tx_frames, 1);
        bump(&c.tx_bytes, frame.len() as u64);
        if let Some(out) = out.as_deref_mut() {
            out.push(frame);
        }
    }
}
