//! Register-level behaviour: identity, reset, link, interrupt registers, thread lifetime.

mod common;

use common::{wait_for, Nic};
use pmd_core::memory::IovaMode;
use pmd_core::pci::BackendKind;
use pmd_ixgbe_model::regs::*;
use pmd_ixgbe_model::{Model82599, ModelConf};
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

/// RDRXCTL bit 1, CRC strip: a software bit the model keeps as written.
const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
/// Every interrupt cause (EIMC bits 30:0).
const EIMC_ALL: u32 = 0x7fff_ffff;

fn conf() -> ModelConf {
    ModelConf {
        mac: MAC,
        ..ModelConf::default()
    }
}

#[test]
fn power_on_state_and_pci_identity() {
    let nic = Nic::new(conf());
    let b = &nic.backend;
    assert_eq!(b.kind(), BackendKind::Model);
    assert_eq!(b.iova_mode(), IovaMode::Va);
    assert_eq!(b.read_config16(0).unwrap(), 0x8086);
    assert_eq!(b.read_config16(2).unwrap(), 0x10FB);
    assert_eq!(b.read_config32(8).unwrap() >> 8, 0x02_0000, "class code");
    // Interrupts at power-on: no cause, everything masked, legacy mode, no allocation.
    for off in [
        EICR,
        EIMS,
        GPIE,
        EIAM,
        EIAC,
        IVAR_MISC,
        ivar(0),
        ivar(63),
        eitr(0),
    ] {
        assert_eq!(nic.rd(off), 0, "register {off:#x}");
    }
    assert!(b.map_bar(2).is_err());
    assert_eq!(nic.bar.len(), BAR0_LEN);
    // The EEPROM was read at power-on: MAC in ral(0)/rah(0) with AV, ARD and DMAIDONE set.
    assert_eq!(nic.rd(ral(0)), u32::from_le_bytes([0x02, 0x11, 0x22, 0x33]));
    assert_eq!(nic.rd(rah(0)), 0x5544 | RAH_AV);
    assert_ne!(nic.rd(EEC) & EEC_ARD, 0);
    assert_ne!(nic.rd(RDRXCTL) & RDRXCTL_DMAIDONE, 0);
    assert_eq!(nic.rd(CTRL), 0);
    assert_eq!(nic.rd(LINKS), 0, "no link before auto-negotiation");
    assert_eq!(nic.model.mac(), MAC);
    // Out-of-range and unaligned accesses are refused by the region, never reach the model.
    assert!(nic.bar.read32_at(BAR0_LEN).is_err());
}

#[test]
fn reset_restores_defaults_and_completes_after_a_millisecond() {
    let nic = Nic::new(conf());
    nic.wr(FCTRL, FCTRL_UPE);
    nic.wr(rdlen(3), 4096);
    nic.wr(EIMS, 0xff);
    // Master disable: GIO master enable drops, and comes back when cleared.
    assert_ne!(nic.rd(STATUS) & STATUS_GIO_MASTER_ENABLE, 0);
    nic.wr(CTRL, CTRL_MASTER_DISABLE);
    assert_eq!(nic.rd(STATUS) & STATUS_GIO_MASTER_ENABLE, 0);
    nic.wr(CTRL, nic.rd(CTRL) | CTRL_RST | CTRL_LRST);
    let t0 = Instant::now();
    let ctrl = nic.rd(CTRL);
    let ard = nic.rd(EEC) & EEC_ARD;
    if t0.elapsed() < Duration::from_micros(900) {
        assert_ne!(ctrl & CTRL_RST, 0, "RST reads set while the reset runs");
        assert_eq!(ard, 0, "EEPROM auto-read not done yet");
    }
    assert_eq!(nic.rd(FCTRL), 0);
    assert_eq!(nic.rd(rdlen(3)), 0);
    assert_eq!(nic.rd(EIMS), 0);
    wait_for("CTRL.RST to clear", || nic.rd(CTRL) & CTRL_RST == 0);
    assert!(t0.elapsed() >= Duration::from_millis(1) - Duration::from_micros(100));
    assert_eq!(nic.rd(CTRL), 0, "master disable and LRST are gone too");
    assert_ne!(nic.rd(EEC) & EEC_ARD, 0);
    assert_ne!(nic.rd(RDRXCTL) & RDRXCTL_DMAIDONE, 0);
    assert_eq!(nic.rd(rah(0)), 0x5544 | RAH_AV);
    assert_ne!(nic.rd(STATUS) & STATUS_GIO_MASTER_ENABLE, 0);
    // Software cannot clear hardware status bits.
    nic.wr(EEC, 0);
    nic.wr(RDRXCTL, RDRXCTL_CRCSTRIP);
    assert_ne!(nic.rd(EEC) & EEC_ARD, 0);
    assert_eq!(nic.rd(RDRXCTL), RDRXCTL_CRCSTRIP | RDRXCTL_DMAIDONE);
}

#[test]
fn link_comes_up_after_auto_negotiation_and_follows_set_link() {
    let nic = Nic::new(conf());
    let _ = nic.rd(EICR);
    nic.wr(AUTOC, AUTOC_RESTART_AN | 0x3 << 13);
    let t0 = Instant::now();
    let links = nic.rd(LINKS);
    if t0.elapsed() < Duration::from_millis(9) {
        assert_eq!(links, 0, "still negotiating");
    }
    assert_eq!(nic.rd(AUTOC), 0x3 << 13, "Restart_AN self-clears");
    wait_for("link up", || nic.rd(LINKS) & LINKS_UP != 0);
    assert!(t0.elapsed() >= Duration::from_millis(9));
    assert_eq!(nic.rd(LINKS), LINKS_UP | LINKS_SPEED_10G, "10 Gb/s");
    assert_eq!((nic.rd(LINKS) >> LINKS_SPEED_SHIFT) & 3, 3);
    assert_ne!(nic.rd(EICR) & EICR_LSC, 0, "link change raises LSC");
    assert_eq!(nic.rd(EICR), 0, "EICR clears on read");
    nic.model.set_link(false);
    assert_eq!(nic.rd(LINKS), 0);
    assert_ne!(nic.rd(EICR) & EICR_LSC, 0);
    nic.model.set_link(true);
    wait_for("link back up", || nic.rd(LINKS) & LINKS_UP != 0);
    // A reset takes the link down until auto-negotiation is restarted.
    nic.wr(CTRL, CTRL_RST);
    wait_for("reset", || nic.rd(CTRL) & CTRL_RST == 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(nic.rd(LINKS), 0);
    nic.link_up();
}

#[test]
fn interrupt_cause_and_mask_registers() {
    let nic = Nic::new(conf());
    nic.wr(EIMS, 0x0000_00f0);
    nic.wr(EIMS, 0x0010_0000);
    assert_eq!(nic.rd(EIMS), 0x0010_00f0);
    nic.wr(EIMC, 0x30);
    assert_eq!(nic.rd(EIMS), 0x0010_00c0);
    assert_eq!(nic.rd(EIMC), 0, "EIMC is write-only");
    nic.wr(EIMC, EIMC_ALL);
    assert_eq!(nic.rd(EIMS), 0);
    // EICR: write 1 to clear.
    nic.link_up();
    nic.wr(EICR, EICR_LSC);
    assert_eq!(nic.rd(EICR), 0);
}

#[test]
fn a_function_reset_restores_power_on_state() {
    let nic = Nic::new(conf());
    nic.wr(FCTRL, FCTRL_MPE);
    nic.backend.reset().unwrap();
    assert_eq!(nic.rd(FCTRL), 0);
    assert_eq!(nic.rd(CTRL), 0);
    assert_ne!(nic.rd(EEC) & EEC_ARD, 0);
    assert_eq!(
        nic.backend.read_config16(4).unwrap(),
        0,
        "bus mastering off again"
    );
}

fn model_threads(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|c| c.trim() == name)
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn dropping_every_handle_stops_and_joins_the_thread() {
    let model = Model82599::new(conf()).unwrap();
    let name = model.thread_name();
    // The thread names itself once it runs.
    wait_for("the model thread", || model_threads(&name) == 1);
    let backend = model.backend();
    let bar = backend.map_bar(0).unwrap();
    let reg = bar.reg32(CTRL).unwrap();
    let clone = model.clone();
    drop(model);
    drop(backend);
    drop(bar);
    drop(clone);
    assert_eq!(
        model_threads(&name),
        1,
        "a register handle keeps the device alive"
    );
    assert_eq!(reg.read(), 0);
    drop(reg);
    assert_eq!(model_threads(&name), 0, "joined when the last handle went");
}

/// User plus system CPU time of the thread named `name`, in clock ticks.
fn thread_cpu_ticks(name: &str) -> u64 {
    let task = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .expect("model thread");
    let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of /proc/<pid>/task/<tid>/stat (utime, stime), counted after the
    // command name, which ends field 2.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_model_thread_sleeps() {
    let model = Model82599::new(conf()).unwrap();
    let name = model.thread_name();
    wait_for("the model thread", || model_threads(&name) == 1);
    let before = thread_cpu_ticks(&name);
    std::thread::sleep(Duration::from_millis(500));
    let used = thread_cpu_ticks(&name) - before;
    // A spinning thread would use ~50 ticks (at 100 Hz); parked, it uses next to none.
    assert!(used <= 10, "idle model used {used} clock ticks in 500 ms");
}
