//! Fault injection, each seen through the registers and descriptors as the driver would,
//! and DMA outside every segment (refused, counted, queue stopped, no crash).

mod common;

use common::{rx_status, wait_for, Nic, Ring, OUTSIDE};
use pmd_core::memory::Segment;
use pmd_intel::desc::*;
use pmd_ixgbe_model::desc::RXD_ERR_RXE;
use pmd_ixgbe_model::regs::*;
use pmd_ixgbe_model::{conf_from_args, Faults, Generator, ModelConf, RxOutcome};
use std::time::Duration;

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x0f, 0x0f, 0x0f];

fn conf(faults: Faults) -> ModelConf {
    ModelConf {
        mac: MAC,
        faults,
        capture: 16,
        ..ModelConf::default()
    }
}

fn frame(seq: u64) -> Vec<u8> {
    Generator::new(1, MAC).frame(seq)
}

fn rx_nic(faults: Faults, name: &str) -> (Nic, Ring) {
    let nic = Nic::new(conf(faults));
    let ring = Ring::new(name, 64);
    ring.post_rx_buffers();
    nic.wr(FCTRL, FCTRL_BAM);
    nic.wr(RXCTRL, RXCTRL_RXEN);
    nic.rx_queue(0, &ring, 63);
    (nic, ring)
}

#[test]
fn link_down_keeps_links_down_until_released() {
    let nic = Nic::new(conf(Faults {
        link_down: true,
        ..Faults::default()
    }));
    nic.wr(AUTOC, AUTOC_RESTART_AN);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(nic.rd(LINKS), 0, "auto-negotiation never completes");
    nic.wr(RXCTRL, RXCTRL_RXEN);
    assert_eq!(nic.model.try_inject(&frame(0)), RxOutcome::LinkDown);
    assert_eq!(nic.model.stats().dropped_link_down, 1);
    nic.model.set_link(true);
    wait_for("link up", || nic.rd(LINKS) & LINKS_UP != 0);
    nic.model.set_link(false);
    assert_eq!(nic.rd(LINKS), 0);
    // The same fault from vdev arguments.
    let c = conf_from_args(&[("link".into(), "down".into())]).unwrap();
    assert!(c.faults.link_down);
}

#[test]
fn reset_hang_never_clears_ctrl_rst_and_a_function_reset_recovers() {
    let nic = Nic::new(conf(Faults {
        reset_hang: true,
        ..Faults::default()
    }));
    nic.wr(CTRL, CTRL_RST);
    std::thread::sleep(Duration::from_millis(20));
    assert_ne!(nic.rd(CTRL) & CTRL_RST, 0, "RST still set after 20 ms");
    nic.wr(CTRL, 0);
    assert_ne!(nic.rd(CTRL) & CTRL_RST, 0, "writes cannot end a reset");
    assert_eq!(nic.rd(EEC) & EEC_ARD, 0);
    assert_eq!(nic.rd(RDRXCTL) & RDRXCTL_DMAIDONE, 0);
    assert_eq!(nic.rd(ral(0)), 0, "no MAC address loaded");
    nic.backend.reset().unwrap();
    assert_eq!(nic.rd(CTRL) & CTRL_RST, 0);
    assert_ne!(nic.rd(EEC) & EEC_ARD, 0);
    assert_ne!(nic.rd(rah(0)) & RAH_AV, 0);
}

#[test]
fn rx_error_every_nth_frame_sets_rxe() {
    let (nic, ring) = rx_nic(
        Faults {
            rx_error_every: Some(3),
            ..Faults::default()
        },
        "ft-rxe",
    );
    nic.link_up();
    for seq in 0..9 {
        assert!(matches!(
            nic.model.try_inject(&frame(seq)),
            RxOutcome::Delivered { .. }
        ));
    }
    let bad: Vec<u32> = (0..9)
        .filter(|&i| rx_status(ring.get(i)) & RXD_ERR_RXE != 0)
        .collect();
    assert_eq!(bad, [2, 5, 8]);
    assert!((0..9).all(|i| rx_status(ring.get(i)) & (RXD_STAT_DD | RXD_STAT_EOP) == 3));
    assert_eq!((nic.rd(CRCERRS), nic.rd(GPRC)), (3, 6));
    assert_eq!(nic.model.stats().rx_errors_injected, 3);
}

#[test]
fn tx_stall_freezes_tdh_and_dd_until_released() {
    let nic = Nic::new(conf(Faults {
        tx_stall: true,
        ..Faults::default()
    }));
    nic.link_up();
    let ring = Ring::new("ft-stall", 64);
    nic.tx_queue(0, &ring);
    let f = frame(0);
    for i in 0..4 {
        ring.fill(i, &f);
        let cmd = TxDesc::data(ring.buf_iova(i), f.len() as u16, true);
        ring.set(i, [cmd.w0, cmd.w1]);
    }
    nic.wr(tdt(0), 4);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(nic.rd(tdh(0)), 0, "TDH does not move");
    assert!((0..4).all(|i| (ring.get(i)[1] >> 32) as u32 & TXD_STAT_DD == 0));
    assert_eq!(nic.model.stats().tx_frames, 0);
    nic.model.set_tx_stall(false);
    wait_for("transmit to resume", || nic.rd(tdh(0)) == 4);
    assert_eq!(nic.model.captured(), vec![f; 4]);
}

#[test]
fn rx_dma_outside_every_segment_is_refused_and_stops_the_queue() {
    let (nic, ring) = rx_nic(Faults::default(), "ft-dma-rx");
    nic.link_up();
    ring.set(0, [OUTSIDE, 0]);
    assert_eq!(
        nic.model.try_inject(&frame(0)),
        RxOutcome::DmaFault { queue: 0 }
    );
    assert_eq!(nic.model.stats().dma_faults, 1);
    assert_eq!(ring.get(0), [OUTSIDE, 0], "no write-back");
    assert_eq!(nic.rd(rdh(0)), 0);
    assert_eq!(
        nic.model.try_inject(&frame(1)),
        RxOutcome::QueueOff { queue: 0 },
        "the queue stays stopped"
    );
    // A buffer straddling the end of its segment is refused as well.
    ring.set(0, [ring.buf_iova(63) + 2048 - 30, 0]);
    nic.wr(rxdctl(0), 0);
    nic.wr(rxdctl(0), DCTL_ENABLE);
    assert_eq!(
        nic.model.try_inject(&frame(2)),
        RxOutcome::DmaFault { queue: 0 }
    );
    // Re-enabling the queue with a good buffer recovers.
    ring.set(0, [ring.buf_iova(0), 0]);
    nic.wr(rxdctl(0), 0);
    nic.wr(rxdctl(0), DCTL_ENABLE);
    assert!(matches!(
        nic.model.try_inject(&frame(3)),
        RxOutcome::Delivered { .. }
    ));
    // A descriptor ring outside every segment.
    nic.wr(rdbal(0), OUTSIDE as u32);
    nic.wr(rdbah(0), (OUTSIDE >> 32) as u32);
    assert_eq!(
        nic.model.try_inject(&frame(4)),
        RxOutcome::DmaFault { queue: 0 }
    );
    assert_eq!(nic.model.stats().dma_faults, 3);
}

#[test]
fn memory_freed_under_the_device_is_no_longer_reachable() {
    let (nic, ring) = rx_nic(Faults::default(), "ft-freed");
    nic.link_up();
    let seg = Segment::alloc("ft-freed-extra", 4096).unwrap();
    let addr = seg.iova_at(0);
    ring.set(0, [addr, 0]);
    assert!(matches!(
        nic.model.try_inject(&frame(0)),
        RxOutcome::Delivered { .. }
    ));
    drop(seg);
    ring.set(1, [addr, 0]);
    assert_eq!(
        nic.model.try_inject(&frame(1)),
        RxOutcome::DmaFault { queue: 0 }
    );
    // dma_unmap takes a live segment out of reach; dma_map brings it back; a made-up
    // segment cannot be mapped.
    let seg = Segment::alloc("ft-freed-again", 4096).unwrap();
    let info = pmd_core::memory::segments()
        .into_iter()
        .find(|s| s.name == "ft-freed-again")
        .unwrap();
    nic.backend.dma_unmap(&info).unwrap();
    nic.wr(rxdctl(0), 0);
    nic.wr(rxdctl(0), DCTL_ENABLE);
    ring.set(1, [seg.iova_at(0), 0]);
    assert_eq!(
        nic.model.try_inject(&frame(2)),
        RxOutcome::DmaFault { queue: 0 }
    );
    nic.backend.dma_map(&info).unwrap();
    nic.wr(rxdctl(0), 0);
    nic.wr(rxdctl(0), DCTL_ENABLE);
    assert!(matches!(
        nic.model.try_inject(&frame(3)),
        RxOutcome::Delivered { .. }
    ));
    let mut fake = info.clone();
    fake.id = u64::MAX;
    fake.va = OUTSIDE as usize;
    assert!(nic.backend.dma_map(&fake).is_err());
}

#[test]
fn tx_dma_outside_every_segment_is_refused_and_stops_the_queue() {
    let nic = Nic::new(conf(Faults::default()));
    nic.link_up();
    let ring = Ring::new("ft-dma-tx", 64);
    nic.tx_queue(0, &ring);
    let f = frame(0);
    ring.fill(0, &f);
    let good = TxDesc::data(ring.buf_iova(0), f.len() as u16, true);
    let bad = TxDesc::data(OUTSIDE, f.len() as u16, true);
    ring.set(0, [good.w0, good.w1]);
    ring.set(1, [bad.w0, bad.w1]);
    ring.set(2, [good.w0, good.w1]);
    nic.wr(tdt(0), 3);
    wait_for("the fault", || nic.model.stats().dma_faults == 1);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(nic.rd(tdh(0)), 1, "TDH stops at the faulting descriptor");
    assert_eq!((ring.get(1)[1] >> 32) as u32 & TXD_STAT_DD, 0);
    assert_eq!(nic.model.stats().tx_frames, 1);
    // Fixed and re-enabled, the queue goes on.
    ring.set(1, [good.w0, good.w1]);
    nic.wr(txdctl(0), 0);
    nic.wr(txdctl(0), DCTL_ENABLE);
    wait_for("recovery", || nic.rd(tdh(0)) == 3);
    assert_eq!(nic.model.stats().tx_frames, 3);
}

#[test]
fn bad_ring_registers_and_disabled_dma_stop_receive() {
    let (nic, _ring) = rx_nic(Faults::default(), "ft-badring");
    nic.link_up();
    // Bus mastering off, or master disable: nothing is written.
    nic.backend.set_bus_master(false).unwrap();
    assert_eq!(
        nic.model.try_inject(&frame(0)),
        RxOutcome::QueueOff { queue: 0 }
    );
    nic.backend.set_bus_master(true).unwrap();
    nic.wr(CTRL, CTRL_MASTER_DISABLE);
    assert_eq!(
        nic.model.try_inject(&frame(0)),
        RxOutcome::QueueOff { queue: 0 }
    );
    nic.wr(CTRL, 0);
    assert!(matches!(
        nic.model.try_inject(&frame(0)),
        RxOutcome::Delivered { .. }
    ));
    nic.wr(rdlen(0), 0);
    assert_eq!(
        nic.model.try_inject(&frame(1)),
        RxOutcome::BadRing { queue: 0 }
    );
    assert_eq!(nic.model.stats().errors, 1);
    assert_eq!(nic.rd(mpc(0)), 3);
    nic.wr(RXCTRL, 0);
    assert_eq!(nic.model.try_inject(&frame(2)), RxOutcome::RxDisabled);
}
