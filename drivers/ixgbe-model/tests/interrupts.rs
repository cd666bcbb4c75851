//! MSI-X interrupts, driven through the registers as a driver would: `enable_irqs` and
//! its eventfds, IVAR routing of receive write-backs, IVAR_MISC routing of link changes,
//! the mask (EIMS/EIMC), auto-mask (EIAM + GPIE.EIAME) and auto-clear (EIAC) registers,
//! EICS, GPIE.OCD, resets, and the race between arming and a write-back.

mod common;

use common::{rx_status, wait_for, Nic, Ring};
use pmd_core::pci::IrqWait;
use pmd_ixgbe_model::desc::RXD_STAT_DD;
use pmd_ixgbe_model::regs::*;
use pmd_ixgbe_model::{Generator, ModelConf, RxOutcome};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x17, 0x00, 0x01];
/// Every mask bit (EIMC bits 30:0).
const EIMC_ALL: u32 = 0x7fff_ffff;
/// The receive queue under test.
const Q: usize = 3;
/// Its MSI-X vector.
const V: u32 = 2;
/// The vector's bit in EICR, EIMS, EIAM and EIAC.
const BIT: u32 = 1 << V;

fn conf() -> ModelConf {
    ModelConf {
        mac: MAC,
        ..ModelConf::default()
    }
}

/// A model with the link up and rx queue 3 over `ring` (255 buffers posted), where RSS
/// sends every generator frame (every redirection table entry is 3); EICR cleared.
fn rx_nic(ring: &Ring) -> Nic {
    let nic = Nic::new(conf());
    ring.post_rx_buffers();
    nic.rx_ready();
    for n in 0..32 {
        nic.wr(reta(n), 0x0303_0303);
    }
    nic.wr(MRQC, MRQC_MRQE_RSS | MRQC_RSS_IPV4 | MRQC_RSS_UDPIPV4);
    nic.rx_queue(Q, ring, ring.count - 1);
    let _ = nic.rd(EICR);
    nic
}

/// MSI-X mode, rx queue 3 on vector 2: IVAR 1, bits 23:16 (rx queue 2n+1).
fn route_q3_to_v2(nic: &Nic) {
    nic.wr(ivar(1), (IVAR_ALLOC_VAL | V) << 16);
    nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_PBA_SUPPORT);
}

/// Generator frame `seq` arrives and is written back on queue 3.
fn deliver(nic: &Nic, seq: u64) {
    let frame = Generator::new(u64::MAX, MAC).frame(seq);
    assert_eq!(
        nic.model.try_inject(&frame),
        RxOutcome::Delivered {
            queue: Q,
            descriptors: 1
        }
    );
}

/// The signals pending on each vector (consumed).
fn fired(irqs: &[Box<dyn IrqWait>]) -> Vec<u64> {
    irqs.iter().map(|i| i.wait(0).unwrap()).collect()
}

/// The `flags:` line of /proc/self/fdinfo for `fd`, and whether the file is an eventfd.
fn fd_flags(fd: i32) -> (u32, bool) {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    (flags, info.contains("eventfd-count"))
}

#[test]
fn enable_irqs_gives_one_eventfd_per_vector_once_at_a_time() {
    let nic = Nic::new(conf());
    let b = &nic.backend;
    for bad in [0, 65] {
        let Err(e) = b.enable_irqs(bad) else {
            panic!("{bad} vectors accepted");
        };
        let e = e.to_string();
        assert!(e.contains("1..=64"), "{e}");
    }
    let irqs = b.enable_irqs(4).unwrap();
    assert_eq!(irqs.len(), 4);
    let mut raw: Vec<i32> = irqs.iter().map(|i| i.fd().as_raw_fd()).collect();
    for &fd in &raw {
        let (flags, eventfd) = fd_flags(fd);
        assert!(eventfd, "fd {fd} is an eventfd");
        assert_ne!(flags & 0o4000, 0, "O_NONBLOCK");
        assert_ne!(flags & 0o2000000, 0, "O_CLOEXEC");
    }
    raw.sort_unstable();
    raw.dedup();
    assert_eq!(raw.len(), 4, "one eventfd per vector");
    // Quiet, and a wait with a timeout times out with 0.
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    let t0 = Instant::now();
    assert_eq!(irqs[0].wait(30).unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(29));
    // Enabled once at a time, whichever backend of the model asks.
    for backend in [b.clone(), nic.model.backend()] {
        let Err(e) = backend.enable_irqs(1) else {
            panic!("enabled twice");
        };
        let e = e.to_string();
        assert!(e.contains("already enabled"), "{e}");
    }
    let mut irqs = irqs;
    irqs.truncate(1);
    assert!(b.enable_irqs(1).is_err(), "one handle still alive");
    drop(irqs);
    assert_eq!(b.enable_irqs(64).unwrap().len(), 64, "the MSI-X table size");
    assert_eq!(
        b.enable_irqs(2).unwrap().len(),
        2,
        "the 64 were dropped at once"
    );
}

#[test]
fn a_write_back_fires_the_queues_ivar_vector_when_unmasked() {
    let ring = Ring::new("irq-wb", 64);
    let nic = rx_nic(&ring);
    let irqs = nic.backend.enable_irqs(4).unwrap();
    route_q3_to_v2(&nic);
    // Masked: the cause is recorded in EICR bit 2, nothing is signalled.
    deliver(&nic, 0);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    assert_eq!(nic.rd(EICR), BIT);
    assert_eq!(nic.rd(EICR), 0, "clear on read");
    // Unmasked: vector 2 fires on each write-back; without auto-mask or auto-clear both
    // bits stay.
    nic.wr(EIMS, BIT);
    deliver(&nic, 1);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    assert_ne!(
        rx_status(ring.get(1)) & RXD_STAT_DD,
        0,
        "written back first"
    );
    assert_eq!((nic.rd(EICR), nic.rd(EIMS)), (BIT, BIT));
    // EIAM without GPIE.EIAME does not mask.
    nic.wr(EIAM, BIT);
    deliver(&nic, 2);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    assert_eq!(nic.rd(EIMS), BIT, "EIAM needs GPIE.EIAME");
    // With it, the vector masks itself when it fires: the next write-back is quiet.
    nic.wr(GPIE, nic.rd(GPIE) | GPIE_EIAME);
    deliver(&nic, 3);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    assert_eq!(nic.rd(EIMS), 0, "auto-masked");
    deliver(&nic, 4);
    assert_eq!(fired(&irqs), [0, 0, 0, 0], "masked until armed again");
    // EIAC: the cause clears itself when its message goes (here at the re-arm, with the
    // cause of frame 4 pending).
    nic.wr(EIAC, BIT);
    assert_eq!(
        nic.rd(EICS),
        BIT,
        "pending (an EICS read does not clear it)"
    );
    nic.wr(EIMS, BIT);
    assert_eq!(
        fired(&irqs),
        [0, 0, 1, 0],
        "the pending cause fired at the unmask"
    );
    assert_eq!(
        (nic.rd(EICR), nic.rd(EIMS)),
        (0, 0),
        "auto-cleared, auto-masked"
    );
    nic.wr(EIMS, BIT);
    deliver(&nic, 5);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    assert_eq!((nic.rd(EICR), nic.rd(EIMS)), (0, 0));
    let s = nic.model.stats();
    assert_eq!((s.interrupts, s.interrupts_unrouted), (5, 0));
}

#[test]
fn unmasking_a_pending_cause_fires_it_at_once() {
    let ring = Ring::new("irq-unmask", 64);
    let nic = rx_nic(&ring);
    let irqs = nic.backend.enable_irqs(4).unwrap();
    route_q3_to_v2(&nic);
    deliver(&nic, 0);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    nic.wr(EIMS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 1, 0], "fired by the EIMS write");
    nic.wr(EIMS, BIT);
    assert_eq!(
        fired(&irqs),
        [0, 0, 0, 0],
        "already unmasked: no new message"
    );
    // Still pending (no EIAC): masking and unmasking again fires again.
    nic.wr(EIMC, BIT);
    nic.wr(EIMS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    // Unmasking a vector with no cause pending fires nothing.
    nic.wr(EIMS, 1 << 1 | 1 << 3);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    // Cleared by a write of 1: nothing left to fire at the next unmask.
    nic.wr(EICR, BIT);
    nic.wr(EIMC, EIMC_ALL);
    nic.wr(EIMS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
}

#[test]
fn eics_sets_causes_that_fire_as_real_ones_do() {
    let nic = Nic::new(conf());
    let irqs = nic.backend.enable_irqs(8).unwrap();
    nic.wr(GPIE, GPIE_MSIX_MODE);
    nic.wr(EICS, 1 << 5);
    assert_eq!(fired(&irqs), [0; 8], "masked");
    assert_eq!(nic.rd(EICS), 1 << 5, "EICS reads EICR without clearing it");
    nic.wr(EIMS, 1 << 5);
    assert_eq!(
        fired(&irqs),
        [0, 0, 0, 0, 0, 1, 0, 0],
        "pending at the unmask"
    );
    nic.wr(EICS, 1 << 5);
    assert_eq!(
        fired(&irqs),
        [0, 0, 0, 0, 0, 1, 0, 0],
        "unmasked: fires at once"
    );
    assert_eq!(nic.rd(EICR), 1 << 5);
    assert_eq!(nic.rd(EICR), 0);
    // Several vectors in one write; a thread blocked in wait() wakes up.
    nic.wr(EIMS, 1 << 0 | 1 << 7);
    nic.wr(EICS, 1 << 0 | 1 << 7);
    assert_eq!(fired(&irqs), [1, 0, 0, 0, 0, 0, 0, 1]);
    let bar = nic.backend.map_bar(0).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        bar.write32_at(EICS, 1 << 7).unwrap();
    });
    assert_eq!(irqs[7].wait(5000).unwrap(), 1, "woken by the EICS write");
    t.join().unwrap();
    assert_eq!(nic.model.stats().interrupts, 5);
}

#[test]
fn a_link_change_fires_the_other_causes_vector() {
    let nic = Nic::new(conf());
    nic.link_up();
    let _ = nic.rd(EICR);
    let irqs = nic.backend.enable_irqs(4).unwrap();
    nic.wr(GPIE, GPIE_MSIX_MODE);
    nic.wr(IVAR_MISC, (IVAR_ALLOC_VAL | 3) << IVAR_MISC_OTHER_SHIFT);
    // The other causes are masked by their own EIMS bits (LSC, bit 20), not by the
    // vector's RTxQ bit, and set no RTxQ bit.
    nic.wr(EIMS, 1 << 3);
    nic.model.set_link(false);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    assert_eq!(nic.rd(EICR), EICR_LSC);
    nic.wr(EIMC, EIMC_ALL);
    nic.wr(EIMS, EICR_LSC);
    // The link renegotiates and comes up on the model thread, which fires the vector.
    nic.model.set_link(true);
    assert_eq!(irqs[3].wait(5000).unwrap(), 1, "link up fired vector 3");
    assert_ne!(nic.rd(LINKS) & LINKS_UP, 0);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    assert_eq!(nic.rd(EICR), EICR_LSC);
    // Auto-mask and auto-clear apply to the cause bit.
    nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_EIAME);
    nic.wr(EIAM, EICR_LSC);
    nic.wr(EIAC, EICR_LSC);
    nic.model.set_link(false);
    assert_eq!(fired(&irqs), [0, 0, 0, 1]);
    assert_eq!((nic.rd(EICR), nic.rd(EIMS)), (0, 0));
    // Without a valid other-causes entry the change is only recorded.
    nic.wr(IVAR_MISC, 3 << IVAR_MISC_OTHER_SHIFT);
    nic.wr(EIMS, EICR_LSC);
    nic.model.set_link(true);
    wait_for("link up", || nic.rd(LINKS) & LINKS_UP != 0);
    assert_eq!(nic.rd(EICR), EICR_LSC);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    assert_eq!(nic.rd(EIMS), EICR_LSC, "no message, no auto-mask");
}

#[test]
fn invalid_and_unmodelled_ivar_entries_fire_nothing() {
    let ring = Ring::new("irq-ivar", 64);
    let nic = rx_nic(&ring);
    let irqs = nic.backend.enable_irqs(64).unwrap();
    let none = vec![0u64; 64];
    nic.wr(GPIE, GPIE_MSIX_MODE);
    nic.wr(EIMS, EIMC_ALL);
    // The entry's valid bit is clear.
    nic.wr(ivar(1), V << 16);
    deliver(&nic, 0);
    assert_eq!(fired(&irqs), none);
    assert_eq!(nic.rd(EICR), 0);
    // Vector 20: its cause bit would be in EICR_EX, which is not modelled.
    nic.wr(ivar(1), (IVAR_ALLOC_VAL | 20) << 16);
    deliver(&nic, 1);
    assert_eq!(fired(&irqs), none);
    assert_eq!(nic.rd(EICR), 0);
    assert_eq!(nic.model.stats().interrupts_unrouted, 1);
    // The other entries of the register (rx queue 2, tx queues 2 and 3) are not queue 3's.
    nic.wr(
        ivar(1),
        (IVAR_ALLOC_VAL | V) | (IVAR_ALLOC_VAL | V) << 8 | (IVAR_ALLOC_VAL | V) << 24,
    );
    deliver(&nic, 2);
    assert_eq!(fired(&irqs), none);
    assert_eq!(nic.rd(EICR), 0);
    nic.wr(ivar(1), (IVAR_ALLOC_VAL | V) << 16);
    deliver(&nic, 3);
    assert_eq!(fired(&irqs)[V as usize], 1);
    assert_eq!(nic.model.stats().interrupts, 1);
}

#[test]
fn without_msix_mode_or_vectors_causes_only_accumulate() {
    let ring = Ring::new("irq-legacy", 64);
    let nic = rx_nic(&ring);
    let irqs = nic.backend.enable_irqs(4).unwrap();
    nic.wr(ivar(1), (IVAR_ALLOC_VAL | V) << 16);
    nic.wr(EIMS, BIT);
    nic.wr(EIAC, BIT);
    // Legacy mode (GPIE.Multiple_MSIX clear): the IVAR entry names the EICR bit.
    deliver(&nic, 0);
    assert_eq!(fired(&irqs), [0, 0, 0, 0]);
    assert_eq!(nic.rd(EICR), BIT);
    // MSI-X mode but no vectors enabled: no message, so no auto-mask or auto-clear.
    drop(irqs);
    nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_EIAME);
    nic.wr(EIAM, BIT);
    deliver(&nic, 1);
    assert_eq!((nic.rd(EIMS), nic.rd(EICR)), (BIT, BIT));
    let s = nic.model.stats();
    assert_eq!((s.interrupts, s.interrupts_unrouted), (0, 0));
    // Enabled again, the pending cause fires at the next unmask.
    let irqs = nic.backend.enable_irqs(4).unwrap();
    nic.wr(EICS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 1, 0]);
    assert_eq!((nic.rd(EIMS), nic.rd(EICR)), (0, 0));
}

#[test]
fn dropping_every_handle_stops_the_signals() {
    let nic = Nic::new(conf());
    let irqs = nic.backend.enable_irqs(2).unwrap();
    nic.wr(GPIE, GPIE_MSIX_MODE);
    nic.wr(EIMS, 1);
    nic.wr(EICS, 1);
    assert_eq!(fired(&irqs), [1, 0]);
    drop(irqs);
    nic.wr(EICS, 1);
    let s = nic.model.stats();
    assert_eq!(
        (s.interrupts, s.interrupts_unrouted),
        (1, 0),
        "nothing sent"
    );
    let irqs = nic.backend.enable_irqs(1).unwrap();
    nic.wr(EICS, 1);
    assert_eq!(fired(&irqs), [1]);
}

#[test]
fn a_message_on_a_vector_not_enabled_is_counted_and_still_auto_masks() {
    let nic = Nic::new(conf());
    let irqs = nic.backend.enable_irqs(2).unwrap();
    nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_EIAME);
    nic.wr(EIAM, 1 << 5);
    nic.wr(EIMS, 1 << 5);
    nic.wr(EICS, 1 << 5);
    assert_eq!(fired(&irqs), [0, 0]);
    assert_eq!(
        nic.rd(EIMS),
        0,
        "the message went out (to a vector the host lacks)"
    );
    let s = nic.model.stats();
    assert_eq!((s.interrupts, s.interrupts_unrouted), (0, 1));
}

#[test]
fn with_gpie_ocd_an_eicr_read_clears_only_the_other_causes() {
    let nic = Nic::new(conf());
    nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_OCD);
    nic.wr(EICS, BIT | EICR_LSC);
    assert_eq!(nic.rd(EICR), BIT | EICR_LSC);
    assert_eq!(nic.rd(EICR), BIT, "RTxQ bits survive the read");
    nic.wr(EICR, BIT);
    assert_eq!(nic.rd(EICR), 0);
    nic.wr(GPIE, GPIE_MSIX_MODE);
    nic.wr(EICS, BIT);
    assert_eq!(nic.rd(EICR), BIT);
    assert_eq!(nic.rd(EICR), 0, "without OCD a read clears everything");
}

#[test]
fn resets_clear_the_interrupt_registers_but_keep_the_vectors() {
    let nic = Nic::new(conf());
    let irqs = nic.backend.enable_irqs(4).unwrap();
    let program = || {
        nic.wr(GPIE, GPIE_MSIX_MODE | GPIE_EIAME);
        nic.wr(IVAR_MISC, (IVAR_ALLOC_VAL | 1) << IVAR_MISC_OTHER_SHIFT);
        nic.wr(ivar(1), (IVAR_ALLOC_VAL | V) << 16);
        nic.wr(EIAM, BIT);
        nic.wr(EIAC, BIT);
        nic.wr(eitr(2), 0x1f0);
        nic.wr(EICS, 1);
    };
    let cleared = || {
        for off in [GPIE, IVAR_MISC, ivar(1), EIAM, EIAC, eitr(2), EIMS, EICR] {
            assert_eq!(nic.rd(off), 0, "register {off:#x} after the reset");
        }
    };
    program();
    assert_eq!(nic.rd(eitr(2)), 0x1f0, "stored");
    nic.backend.reset().unwrap();
    cleared();
    assert!(nic.backend.enable_irqs(1).is_err(), "still enabled");
    program();
    nic.wr(EIMS, BIT);
    nic.wr(EICS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 1, 0], "the vectors survived the reset");
    nic.wr(CTRL, CTRL_RST);
    wait_for("reset", || nic.rd(CTRL) & CTRL_RST == 0);
    cleared();
    program();
    nic.wr(EIMS, BIT);
    nic.wr(EICS, BIT);
    assert_eq!(fired(&irqs), [0, 0, 1, 0], "and CTRL.RST");
}

/// The receiver arms (EIMS), then looks at the next descriptor: if it is not written back
/// yet it sleeps, and the write-back must wake it, whenever it lands relative to the
/// arming. Auto-mask and auto-clear on, as a driver sets them.
#[test]
fn arming_racing_a_write_back_never_loses_the_wake_up() {
    const ROUNDS: u32 = 500;
    let ring = Ring::new("irq-race", 512);
    let nic = rx_nic(&ring);
    let irqs = nic.backend.enable_irqs(4).unwrap();
    route_q3_to_v2(&nic);
    nic.wr(GPIE, nic.rd(GPIE) | GPIE_EIAME);
    nic.wr(EIAM, BIT);
    nic.wr(EIAC, BIT);
    let irq = &irqs[V as usize];
    let go = Arc::new(Barrier::new(2));
    let (go2, model) = (go.clone(), nic.model.clone());
    let sender = std::thread::spawn(move || {
        let g = Generator::new(u64::MAX, MAC);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for seq in 0..ROUNDS {
            go2.wait();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let spin = Instant::now() + Duration::from_nanos(x % 30_000);
            while Instant::now() < spin {
                std::hint::spin_loop();
            }
            model.inject(&g.frame(u64::from(seq)));
            go2.wait();
        }
    });
    let (mut slept, mut spurious) = (0, 0);
    for i in 0..ROUNDS {
        go.wait();
        // Arm, look, sleep; woken without a frame (the cause of the previous round's
        // frame, raised after that round disarmed, stays pending and fires at this
        // round's unmask), disarm and go round again, as a driver does.
        loop {
            nic.wr(EIMS, BIT);
            if rx_status(ring.get(i)) & RXD_STAT_DD != 0 {
                break;
            }
            slept += 1;
            assert!(
                irq.wait(2000).unwrap() > 0,
                "round {i}: armed and asleep, the write-back never woke us"
            );
            nic.wr(EIMC, BIT);
            let _ = irq.wait(0);
            if rx_status(ring.get(i)) & RXD_STAT_DD != 0 {
                break;
            }
            spurious += 1;
            assert!(spurious <= 2 * ROUNDS, "round {i}: woken again and again");
        }
        nic.wr(EIMC, BIT);
        let _ = irq.wait(0);
        go.wait();
    }
    sender.join().unwrap();
    assert!(slept > spurious, "the receiver never slept for a frame");
    assert_eq!(
        nic.model.stats().rx_delivered_per_queue[Q],
        u64::from(ROUNDS)
    );
}
