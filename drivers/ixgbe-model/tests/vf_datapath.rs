//! SR-IOV virtual functions on the data path: frames to a VF's address (and broadcast,
//! and the multicast it registered) land in rings set up through the VF's BAR and count
//! in its free-running statistics; frames a VF transmits go to the wire.

mod common;

use common::vf::VfPort;
use common::{rx_len, rx_status, wait_for, Ring};
use pmd_intel::desc::{TxDesc, RXD_STAT_DD, RXD_STAT_EOP, TXD_STAT_DD};
use pmd_ixgbe_model::regs::{GPRC, GPTC};
use pmd_ixgbe_model::vfregs::*;
use pmd_ixgbe_model::{default_vf_mac, Generator, Model82599, ModelConf, RxOutcome};
use std::time::Duration;

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x6f, 0x00, 0x01];
const DONE: u32 = RXD_STAT_DD | RXD_STAT_EOP;
/// Model queue of VF 0's queue 0, VF 1's queue 0.
const VF0_Q0: usize = 48;

fn model(vfs: u8) -> Model82599 {
    Model82599::new(ModelConf {
        mac: MAC,
        capture: 16,
        ..ModelConf::default().with_vfs(vfs)
    })
    .unwrap()
}

fn frame_to(dst: [u8; 6], size: usize, seq: u64) -> Vec<u8> {
    Generator {
        size,
        ..Generator::new(1, dst)
    }
    .frame(seq)
}

/// VF `n` reset (clear to send) with its rx queue 0 over a fresh 64-descriptor ring.
fn ready_vf(m: &Model82599, n: u8, name: &str, posted: u32) -> (VfPort, Ring) {
    let vf = VfPort::new(m, n);
    vf.reset();
    let ring = Ring::new(name, 64);
    ring.post_rx_buffers();
    vf.rx_queue(0, &ring, posted);
    vf.link_up();
    (vf, ring)
}

fn delivered(queue: usize) -> RxOutcome {
    RxOutcome::Delivered {
        queue,
        descriptors: 1,
    }
}

#[test]
fn a_frame_to_the_vf_address_lands_in_its_ring_and_counts_in_vfgprc() {
    let m = model(2);
    let (vf, ring) = ready_vf(&m, 0, "vf-rx", 63);
    let mac = default_vf_mac(MAC, 0);
    let f = frame_to(mac, 100, 1);
    assert_eq!(m.try_inject(&f), delivered(VF0_Q0));
    let d = ring.get(0);
    assert_eq!(rx_status(d) & DONE, DONE);
    assert_eq!(rx_len(d), 100);
    assert_eq!(ring.buf(0, 100), f);
    assert_eq!(vf.rd(vfrdh(0)), 1);
    // Free-running: reads do not clear; octets count the CRC.
    for _ in 0..2 {
        assert_eq!(vf.rd(VFGPRC), 1);
        assert_eq!((vf.rd(VFGORC_LSB), vf.rd(VFGORC_MSB)), (104, 0));
    }
    assert_eq!(vf.rd(VFMPRC), 0);
    // A frame to another address (the PF's) does not reach the VF.
    assert_ne!(m.try_inject(&frame_to(MAC, 100, 2)), delivered(VF0_Q0));
    assert_eq!(rx_status(ring.get(1)), 0, "descriptor 1 untouched");
    assert_eq!(vf.rd(VFGPRC), 1);
    // A frame to VF 1, which never reset, is dropped and counted for VF 1.
    let to1 = frame_to(default_vf_mac(MAC, 1), 100, 3);
    assert_eq!(m.try_inject(&to1), RxOutcome::VfNotReady { vf: 1 });
    let s = m.stats();
    assert_eq!((s.vfs[0].rx_packets, s.vfs[0].rx_bytes), (1, 100));
    assert_eq!(s.vfs[1].rx_dropped_not_ready, 1);
    assert_eq!(s.vfs[1].rx_dropped(), 1);
    assert_eq!(s.rx_delivered_per_queue[VF0_Q0], 1);
    // The PF's clear-on-read counters see only the PF's frames.
    let pf = m.backend().map_bar(0).unwrap();
    assert_eq!(pf.read32_at(GPRC).unwrap(), 0);
    // Many frames: the counter keeps counting, RDH wraps with the ring.
    for seq in 0..100 {
        // Re-post the descriptor the device takes next, and hand over all but one.
        let h = vf.rd(vfrdh(0));
        ring.set(h, [ring.buf_iova(h), 0]);
        vf.wr(vfrdt(0), (h + 63) % 64);
        assert_eq!(m.try_inject(&frame_to(mac, 60, seq)), delivered(VF0_Q0));
    }
    assert_eq!(vf.rd(VFGPRC), 101);
    assert_eq!(vf.rd(VFGORC_LSB), 104 + 100 * 64);
}

#[test]
fn broadcast_and_registered_multicast_reach_the_vfs_that_take_them() {
    let m = model(2);
    let (vf, ring) = ready_vf(&m, 0, "vf-bc", 63);
    let _idle = VfPort::new(&m, 1); // never resets: takes nothing
    assert_ne!(
        m.try_inject(&frame_to([0xff; 6], 60, 0)),
        delivered(VF0_Q0),
        "the PF's outcome"
    );
    assert_eq!(
        rx_status(ring.get(0)) & DONE,
        DONE,
        "the VF got the broadcast"
    );
    let mc = [0x01, 0x00, 0x5e, 0x00, 0x12, 0x34];
    m.inject(&frame_to(mc, 60, 1));
    assert_eq!(vf.rd(VFGPRC), 1, "not registered");
    let hash = (u32::from(mc[4]) >> 4 | u32::from(mc[5]) << 4) & 0xfff;
    assert_eq!(
        vf.request(&[msg::SET_MULTICAST | 1 << 16, hash]).head(),
        msg::SET_MULTICAST | 1 << 16 | msg::ACK | msg::CTS
    );
    m.inject(&frame_to(mc, 60, 2));
    assert_eq!((vf.rd(VFGPRC), vf.rd(VFMPRC)), (2, 1));
    // Broadcast only; then all multicast.
    vf.request(&[msg::API_NEGOTIATE, api::V1_2, 0]);
    vf.request(&[msg::UPDATE_XCAST_MODE, xcast::NONE]);
    m.inject(&frame_to(mc, 60, 3));
    m.inject(&frame_to([0xff; 6], 60, 4));
    assert_eq!((vf.rd(VFGPRC), vf.rd(VFMPRC)), (3, 1));
    vf.request(&[msg::UPDATE_XCAST_MODE, xcast::ALLMULTI]);
    m.inject(&frame_to([0x33, 0x33, 0, 0, 0, 1], 60, 5));
    assert_eq!((vf.rd(VFGPRC), vf.rd(VFMPRC)), (4, 2));
    let s = m.stats();
    assert_eq!(s.vfs[1], Default::default(), "VF 1 saw nothing");
}

#[test]
fn frames_longer_than_the_vf_frame_size_are_dropped_and_counted() {
    let m = model(1);
    let (vf, ring) = ready_vf(&m, 0, "vf-lpe", 63);
    let mac = default_vf_mac(MAC, 0);
    // Without SET_LPE: 1518 bytes with CRC.
    assert_eq!(m.try_inject(&frame_to(mac, 1515, 0)), RxOutcome::Oversize);
    assert!(matches!(
        m.try_inject(&frame_to(mac, 1514, 1)),
        RxOutcome::Delivered {
            queue: VF0_Q0,
            descriptors: 1
        }
    ));
    // A jumbo size: a 3000-byte frame over two 2 KiB buffers.
    vf.request(&[msg::SET_LPE, 9018]);
    assert_eq!(
        m.try_inject(&frame_to(mac, 3000, 2)),
        RxOutcome::Delivered {
            queue: VF0_Q0,
            descriptors: 2
        }
    );
    assert_eq!(rx_status(ring.get(1)) & DONE, RXD_STAT_DD);
    assert_eq!(rx_status(ring.get(2)) & DONE, DONE);
    vf.request(&[msg::SET_LPE, 100]);
    assert_eq!(m.try_inject(&frame_to(mac, 200, 3)), RxOutcome::Oversize);
    let s = m.vf_stats(0).unwrap();
    assert_eq!((s.rx_dropped_length, s.rx_packets), (2, 2));
    assert_eq!(m.stats().dropped_length, 0, "not the PF's drops");
}

#[test]
fn a_vf_queue_that_is_off_full_or_reset_drops_and_counts() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    vf.reset();
    vf.link_up();
    let mac = default_vf_mac(MAC, 0);
    let f = frame_to(mac, 60, 0);
    assert_eq!(m.try_inject(&f), RxOutcome::QueueOff { queue: VF0_Q0 });
    let ring = Ring::new("vf-full", 64);
    ring.post_rx_buffers();
    vf.rx_queue(0, &ring, 2);
    assert_eq!(m.try_inject(&f), delivered(VF0_Q0));
    assert_eq!(m.try_inject(&f), delivered(VF0_Q0));
    assert_eq!(m.try_inject(&f), RxOutcome::NoDescriptor { queue: VF0_Q0 });
    vf.wr(vfrdt(0), 10);
    vf.backend.set_bus_master(false).unwrap();
    assert_eq!(m.try_inject(&f), RxOutcome::QueueOff { queue: VF0_Q0 });
    vf.backend.set_bus_master(true).unwrap();
    assert_eq!(m.try_inject(&f), delivered(VF0_Q0));
    m.pf_reset(None);
    assert_eq!(m.try_inject(&f), RxOutcome::VfNotReady { vf: 0 });
    m.pf_reset_done();
    assert_eq!(
        m.try_inject(&f),
        RxOutcome::VfNotReady { vf: 0 },
        "until it resets"
    );
    let s = m.vf_stats(0).unwrap();
    assert_eq!(
        (
            s.rx_dropped_queue_off,
            s.rx_dropped_no_desc,
            s.rx_dropped_not_ready
        ),
        (2, 1, 2)
    );
    assert_eq!(s.rx_packets, 3);
    let pf = m.stats();
    assert_eq!((pf.dropped_queue_off, pf.dropped_no_desc), (0, 0));
}

#[test]
fn vf_transmit_goes_to_the_wire_and_counts_in_vfgptc() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    vf.wr(VFCTRL, VFCTRL_RST);
    let _ = vf.rd(VFMAILBOX);
    vf.link_up();
    let ring = Ring::new("vf-tx", 64);
    vf.tx_queue(1, &ring);
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| frame_to([0x02, 0, 0, 0, 0, 9], 60 + 10 * i, i as u64))
        .collect();
    for (i, f) in frames.iter().enumerate() {
        ring.fill(i as u32, f);
        let d = TxDesc::data(ring.buf_iova(i as u32), f.len() as u16, true);
        ring.set(i as u32, [d.w0, d.w1]);
    }
    vf.wr(vftdt(1), 3);
    // Not clear to send yet: the PF has not enabled the VF's transmit.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(vf.rd(vftdh(1)), 0);
    assert_eq!(vf.request(&[msg::RESET]).head(), msg::RESET | msg::ACK);
    wait_for("VF transmit", || vf.rd(vftdh(1)) == 3);
    assert_eq!(m.captured(), frames);
    assert!((0..3).all(|i| (ring.get(i)[1] >> 32) as u32 & TXD_STAT_DD != 0));
    for _ in 0..2 {
        assert_eq!(vf.rd(VFGPTC), 3);
        assert_eq!((vf.rd(VFGOTC_LSB), vf.rd(VFGOTC_MSB)), (64 + 74 + 84, 0));
    }
    let s = m.stats();
    assert_eq!((s.vfs[0].tx_packets, s.vfs[0].tx_bytes), (3, 60 + 70 + 80));
    assert_eq!(s.tx_frames, 3);
    let pf = m.backend().map_bar(0).unwrap();
    assert_eq!(pf.read32_at(GPTC).unwrap(), 0);
}

#[test]
fn the_generator_waits_for_a_vf_that_is_not_ready() {
    let m = model(1);
    let mac = default_vf_mac(MAC, 0);
    m.start_generator(Generator::new(20, mac));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        m.stats().generated,
        0,
        "the VF is not ready: the generator waits"
    );
    let (vf, ring) = ready_vf(&m, 0, "vf-gen", 63);
    wait_for("20 frames", || m.stats().generated == 20);
    assert_eq!(vf.rd(VFGPRC), 20);
    assert!((0..20).all(|i| rx_status(ring.get(i)) & DONE == DONE));
    assert_eq!(m.vf_stats(0).unwrap().rx_dropped(), 0);
}
