//! SR-IOV virtual functions at the register level: the VF's PCI identity and BAR, the
//! mailbox exchange with the PF the model plays (RESET, API, queues, frame size, modes),
//! VF resets, and the mailbox faults and the PF reset.

mod common;

use common::vf::{Answer, VfPort};
use common::wait_for;
use pmd_core::pci::BackendKind;
use pmd_ixgbe_model::regs::DCTL_ENABLE;
use pmd_ixgbe_model::vfregs::*;
use pmd_ixgbe_model::{default_vf_mac, MbxFault, Model82599, ModelConf};
use std::time::Duration;

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x5f, 0x00, 0x01];

fn model(vfs: u8) -> Model82599 {
    Model82599::new(
        ModelConf {
            mac: MAC,
            ..ModelConf::default()
        }
        .with_vfs(vfs),
    )
    .unwrap()
}

fn mac_words(m: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
        u32::from_le_bytes([m[4], m[5], 0, 0]),
    ]
}

const ACKED: u32 = msg::ACK | msg::CTS;
const NACKED: u32 = msg::NACK | msg::CTS;

#[test]
fn each_vf_is_a_pci_function_with_a_16k_register_bar() {
    let m = model(2);
    assert_eq!(m.vfs(), 2);
    let b0 = m.vf_backend(0).unwrap();
    let b1 = m.vf_backend(1).unwrap();
    assert_eq!(b0.kind(), BackendKind::Model);
    assert_eq!(b0.read_config16(0).unwrap(), 0x8086);
    assert_eq!(b0.read_config16(2).unwrap(), 0x10ED);
    assert_eq!(b0.read_config32(8).unwrap() >> 8, 0x02_0000, "Ethernet");
    let addrs = [m.pci_addr(), b0.addr(), b1.addr()];
    assert!(addrs[0] != addrs[1] && addrs[1] != addrs[2] && addrs[0] != addrs[2]);
    assert_eq!(m.vf_pci_addr(1).unwrap(), addrs[2]);
    let bar = b0.map_bar(0).unwrap();
    assert_eq!(bar.len(), VF_BAR0_LEN);
    assert!(bar.read32_at(VF_BAR0_LEN).is_err());
    assert!(b0.map_bar(3).is_err(), "no MSI-X BAR");
    assert!(b0.enable_irqs(1).is_err(), "the VF polls");
    assert!(m.vf_backend(2).is_err() && m.vf_stats(2).is_err());
    assert!(model(0).vf_backend(0).is_err(), "no VFs by default");
    // Power-on: not clear to send, no PF reset, the default addresses.
    let info = m.vf_info(1).unwrap();
    assert!(!info.clear_to_send && !info.pf_resetting);
    assert_eq!(info.mac, Some(default_vf_mac(MAC, 1)));
    assert_eq!(default_vf_mac(MAC, 1)[5], 0x01 + 0x11);
    // Too many VFs, or a VF address that is not unicast, are refused.
    assert!(Model82599::new(ModelConf::default().with_vfs(9)).is_err());
    let bad = ModelConf {
        vf_macs: vec![Some([0x01, 0, 0, 0, 0, 1])],
        ..ModelConf::default().with_vfs(1)
    };
    assert!(Model82599::new(bad).is_err());
}

#[test]
fn vflinks_follows_the_link_the_model_brings_up_for_its_vfs() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    vf.link_up();
    assert_eq!(vf.rd(VFLINKS), VFLINKS_UP | VFLINKS_SPEED_10G);
    m.set_link(false);
    assert_eq!(vf.rd(VFLINKS), 0);
    m.set_link(true);
    vf.link_up();
    // Unmodelled registers keep what is written; read-only ones ignore writes.
    vf.wr(0x0300, 0x2000_0000);
    assert_eq!(vf.rd(0x0300), 0x2000_0000, "VFPSRTYPE is stored");
    vf.wr(VFLINKS, 0);
    vf.wr(VFGPRC, 5);
    assert_eq!((vf.rd(VFGPRC), vf.rd(VTEICR)), (0, 0));
}

#[test]
fn reset_exchange_answers_with_the_vf_mac_and_makes_it_clear_to_send() {
    let m = model(2);
    let vf = VfPort::new(&m, 1);
    let w = vf.reset();
    let mac = default_vf_mac(MAC, 1);
    assert_eq!(w[0], msg::RESET | msg::ACK, "RESET's answer carries no CTS");
    assert_eq!([w[1], w[2]], mac_words(mac));
    assert_eq!(w[3], 0, "multicast filter type 0");
    assert_eq!(
        vf.rd(VFMAILBOX) & mbx::READ_CLEARS,
        0,
        "read-clear bits went"
    );
    let info = m.vf_info(1).unwrap();
    assert!(info.clear_to_send);
    assert_eq!(info.mac, Some(mac));
    assert!(!m.vf_info(0).unwrap().clear_to_send, "VF 0 did nothing");
    // Asking for another address than the administrator's is refused; the same is fine.
    let other = mac_words([0x02, 9, 9, 9, 9, 9]);
    assert_eq!(
        vf.request(&[msg::SET_MAC_ADDR, other[0], other[1]]).head(),
        msg::SET_MAC_ADDR | NACKED
    );
    let same = mac_words(mac);
    assert_eq!(
        vf.request(&[msg::SET_MAC_ADDR, same[0], same[1]]).head(),
        msg::SET_MAC_ADDR | ACKED
    );
    let s = m.vf_stats(1).unwrap();
    assert_eq!(
        (s.mbx_requests, s.mbx_acked, s.mbx_nacked, s.resets),
        (3, 2, 1, 1)
    );
    assert_eq!(m.stats().vfs[1], s);
}

#[test]
fn a_vf_without_an_admin_mac_is_refused_at_reset_and_sets_its_own() {
    let m = Model82599::new(ModelConf {
        mac: MAC,
        vf_macs: vec![None],
        ..ModelConf::default().with_vfs(1)
    })
    .unwrap();
    let vf = VfPort::new(&m, 0);
    let w = vf.reset();
    assert_eq!(w[..4], [msg::RESET | msg::NACK, 0, 0, 0]);
    assert_eq!(m.vf_mac(0).unwrap(), None);
    assert!(
        m.vf_info(0).unwrap().clear_to_send,
        "clear to send all the same"
    );
    let mcast = mac_words([0x03, 1, 2, 3, 4, 5]);
    assert_eq!(
        vf.request(&[msg::SET_MAC_ADDR, mcast[0], mcast[1]]).head(),
        msg::SET_MAC_ADDR | NACKED
    );
    let own = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let w = mac_words(own);
    assert_eq!(
        vf.request(&[msg::SET_MAC_ADDR, w[0], w[1]]).head(),
        msg::SET_MAC_ADDR | ACKED
    );
    assert_eq!(m.vf_mac(0).unwrap(), Some(own));
    // A VF reset forgets an address the administrator did not set.
    vf.wr(VFCTRL, VFCTRL_RST);
    assert_eq!(m.vf_mac(0).unwrap(), None);
    // The administrator sets one: the next RESET is answered with it; then clears it.
    let admin = [0x02, 0x10, 0x20, 0x30, 0x40, 0x50];
    m.set_vf_mac(0, Some(admin)).unwrap();
    assert!(m.set_vf_mac(0, Some(MAC)).is_err(), "the PF's address");
    assert!(m.set_vf_mac(0, Some([0xff; 6])).is_err());
    let w = vf.reset();
    assert_eq!(w[0], msg::RESET | msg::ACK);
    assert_eq!([w[1], w[2]], mac_words(admin));
    m.set_vf_mac(0, None).unwrap();
    assert_eq!(vf.reset()[0], msg::RESET | msg::NACK);
}

#[test]
fn api_negotiation_queues_frame_size_and_modes() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    // Not clear to send yet: refused without CTS.
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, api::V1_3, 0]).head(),
        msg::API_NEGOTIATE | msg::NACK
    );
    vf.reset();
    // API 1.0 has no GET_QUEUES and no UPDATE_XCAST_MODE.
    assert_eq!(
        vf.request(&[msg::GET_QUEUES, 0, 0, 0, 0]).head(),
        msg::GET_QUEUES | NACKED
    );
    assert_eq!(
        vf.request(&[msg::UPDATE_XCAST_MODE, xcast::ALLMULTI])
            .head(),
        msg::UPDATE_XCAST_MODE | NACKED
    );
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, 9, 0]).head(),
        msg::API_NEGOTIATE | NACKED,
        "API 1.7 is not offered"
    );
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, 1, 0]).head(),
        msg::API_NEGOTIATE | NACKED,
        "nor 2.0"
    );
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, api::V1_3, 0]).head(),
        msg::API_NEGOTIATE | ACKED
    );
    assert_eq!(m.vf_info(0).unwrap().api, api::V1_3);
    let q = vf.request(&[msg::GET_QUEUES, 0, 0, 0, 0]).words();
    assert_eq!(q[..5], [msg::GET_QUEUES | ACKED, 2, 2, 0, 0]);
    // SET_LPE bounds: 68..=9728.
    for (size, ok) in [
        (67, false),
        (68, true),
        (1518, true),
        (9728, true),
        (9729, false),
    ] {
        let want = msg::SET_LPE | if ok { ACKED } else { NACKED };
        assert_eq!(
            vf.request(&[msg::SET_LPE, size]).head(),
            want,
            "size {size}"
        );
    }
    assert_eq!(m.vf_info(0).unwrap().max_frame, Some(9728));
    // Modes up to all-multicast; promiscuous is refused.
    let a = vf
        .request(&[msg::UPDATE_XCAST_MODE, xcast::ALLMULTI])
        .words();
    assert_eq!(
        [a[0], a[1]],
        [msg::UPDATE_XCAST_MODE | ACKED, xcast::ALLMULTI]
    );
    assert_eq!(
        vf.request(&[msg::UPDATE_XCAST_MODE, xcast::PROMISC]).head(),
        msg::UPDATE_XCAST_MODE | NACKED
    );
    assert_eq!(m.vf_info(0).unwrap().xcast_mode, xcast::ALLMULTI);
    // VLANs and multicast hashes are kept.
    assert_eq!(
        vf.request(&[msg::SET_VLAN | 1 << 16, 100]).head(),
        msg::SET_VLAN | 1 << 16 | ACKED
    );
    vf.request(&[msg::SET_VLAN | 1 << 16, 7]);
    vf.request(&[msg::SET_VLAN, 100]);
    assert_eq!(
        vf.request(&[msg::SET_VLAN | 1 << 16, 4096]).head(),
        msg::SET_VLAN | 1 << 16 | NACKED
    );
    vf.request(&[msg::SET_MULTICAST | 3 << 16, 0x0222_0111, 0x0333]);
    let info = m.vf_info(0).unwrap();
    assert_eq!(info.vlans, [7]);
    assert_eq!(info.mc_hashes, [0x111, 0x222, 0x333]);
    // Unknown types are refused; a message already carrying ACK is taken, not answered.
    assert_eq!(vf.request(&[0x77]).head(), 0x77 | NACKED);
    assert_eq!(
        vf.request(&[msg::SET_LPE | msg::ACK, 1518]),
        Answer::Unanswered
    );
    let s = m.vf_stats(0).unwrap();
    assert_eq!(s.mbx_invalid, 1);
    assert_eq!(s.mbx_requests, s.mbx_acked + s.mbx_nacked + s.mbx_invalid);
    // A reset puts the API back to 1.0 and forgets the settings.
    vf.reset();
    let info = m.vf_info(0).unwrap();
    assert_eq!(
        (info.api, info.max_frame, info.xcast_mode),
        (api::V1_0, None, xcast::MULTI)
    );
    assert!(info.vlans.is_empty() && info.mc_hashes.is_empty());
}

#[test]
fn a_vf_reset_stops_its_queues_and_makes_it_not_clear_to_send() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    vf.reset();
    for off in [vfrxdctl(0), vfrxdctl(1), vftxdctl(0), vftxdctl(1)] {
        vf.wr(off, DCTL_ENABLE);
        assert_eq!(vf.rd(off), DCTL_ENABLE, "{off:#x}");
    }
    vf.wr(VFCTRL, VFCTRL_RST);
    for off in [vfrxdctl(0), vfrxdctl(1), vftxdctl(0), vftxdctl(1)] {
        assert_eq!(vf.rd(off) & DCTL_ENABLE, 0, "{off:#x}");
    }
    assert!(!m.vf_info(0).unwrap().clear_to_send);
    assert_eq!(vf.rd(VFCTRL), 0, "RST self-clears");
    assert_eq!(vf.rd(VFMAILBOX) & (mbx::RSTD | mbx::RSTI), mbx::RSTD);
    assert_eq!(vf.rd(VFMAILBOX) & mbx::RSTD, 0, "RSTD clears on read");
    assert_eq!(
        vf.request(&[msg::SET_LPE, 1518]).head(),
        msg::SET_LPE | msg::NACK,
        "not clear to send"
    );
    // A function-level reset does the same and turns bus mastering off.
    vf.reset();
    vf.backend.reset().unwrap();
    assert!(!m.vf_info(0).unwrap().clear_to_send);
    assert_eq!(vf.backend.read_config16(4).unwrap() & 4, 0);
    assert_eq!(m.vf_stats(0).unwrap().resets, 4);
}

#[test]
fn mailbox_faults_silence_refusal_and_garbage() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    m.set_mbx_fault(MbxFault::Silent);
    vf.wr(VFCTRL, VFCTRL_RST);
    let _ = vf.rd(VFMAILBOX);
    assert_eq!(vf.request(&[msg::RESET]), Answer::NoAck);
    assert_eq!(m.vf_stats(0).unwrap().mbx_unanswered, 1);
    assert!(!m.vf_info(0).unwrap().clear_to_send);

    m.set_mbx_fault(MbxFault::NackAll);
    assert_eq!(
        vf.request(&[msg::RESET]).head(),
        msg::RESET | msg::ACK,
        "RESET passes"
    );
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, api::V1_1, 0]).head(),
        msg::API_NEGOTIATE | NACKED
    );
    assert_eq!(
        vf.request(&[msg::SET_LPE, 1518]).head(),
        msg::SET_LPE | NACKED
    );

    m.set_mbx_fault(MbxFault::Garbage);
    let g = vf.request(&[msg::API_NEGOTIATE, api::V1_1, 0]).head();
    assert_ne!(
        g & msg::TYPE_MASK,
        msg::API_NEGOTIATE,
        "another type: {g:#x}"
    );
    assert_ne!(
        vf.request(&[msg::RESET]).head() & msg::TYPE_MASK,
        msg::RESET
    );
    assert_eq!(m.vf_info(0).unwrap().api, api::V1_0, "nothing was done");

    m.set_mbx_fault(MbxFault::None);
    assert_eq!(
        vf.request(&[msg::API_NEGOTIATE, api::V1_1, 0]).head(),
        msg::API_NEGOTIATE | ACKED
    );
    let s = m.vf_stats(0).unwrap();
    assert_eq!(
        (s.mbx_unanswered, s.mbx_nacked, s.mbx_garbage, s.mbx_acked),
        (1, 2, 2, 2)
    );
    // The same fault from the configuration.
    let conf = pmd_ixgbe_model::conf_from_args(&[
        ("vfs".into(), "2".into()),
        ("fault".into(), "mbx_silent".into()),
    ])
    .unwrap();
    assert_eq!((conf.vfs, conf.faults.mbx), (2, MbxFault::Silent));
    let m = Model82599::new(conf).unwrap();
    let vf = VfPort::new(&m, 1);
    vf.wr(VFCTRL, VFCTRL_RST);
    assert_eq!(vf.request(&[msg::RESET]), Answer::NoAck);
}

#[test]
fn a_pf_reset_raises_rsti_then_rstd_and_a_control_message() {
    let m = model(2);
    let vfs = [VfPort::new(&m, 0), VfPort::new(&m, 1)];
    for vf in &vfs {
        vf.reset();
        vf.wr(vfrxdctl(0), DCTL_ENABLE);
        vf.wr(vftxdctl(1), DCTL_ENABLE);
    }
    m.pf_reset(None);
    for (n, vf) in vfs.iter().enumerate() {
        assert_ne!(vf.rd(VFMAILBOX) & mbx::RSTI, 0, "VF {n}");
        assert_ne!(vf.rd(VFMAILBOX) & mbx::RSTI, 0, "RSTI is a level");
        assert_eq!(vf.rd(vfrxdctl(0)) & DCTL_ENABLE, 0);
        assert_eq!(vf.rd(vftxdctl(1)) & DCTL_ENABLE, 0);
        let info = m.vf_info(n as u8).unwrap();
        assert!(info.pf_resetting && !info.clear_to_send);
    }
    // Requests meanwhile go unanswered, RESET included.
    assert_eq!(vfs[0].request(&[msg::RESET]), Answer::NoAck);
    m.pf_reset_done();
    for (n, vf) in vfs.iter().enumerate() {
        let ctl = vf.rd(VFMAILBOX);
        assert_eq!(
            ctl & (mbx::RSTI | mbx::RSTD | mbx::PFSTS),
            mbx::RSTD | mbx::PFSTS,
            "VF {n}"
        );
        let w = vf.read_message();
        assert_eq!(w[0], msg::PF_CONTROL_MSG, "no CTS");
        assert_eq!(m.vf_stats(n as u8).unwrap().pf_messages, 1);
    }
    // The VF recovers with a reset.
    assert_eq!(vfs[0].reset()[0], msg::RESET | msg::ACK);
    assert!(m.vf_info(0).unwrap().clear_to_send);

    // A timed PF reset ends by itself.
    m.pf_reset(Some(Duration::from_millis(200)));
    assert_ne!(vfs[1].rd(VFMAILBOX) & mbx::RSTI, 0);
    let seen = vfs[1].wait_ctl(mbx::RSTD, Duration::from_secs(5));
    assert_eq!(seen & mbx::RSTD, mbx::RSTD);
    wait_for("RSTI to clear", || vfs[1].rd(VFMAILBOX) & mbx::RSTI == 0);
    assert_eq!(vfs[1].read_message()[0], msg::PF_CONTROL_MSG);
    // Ending a reset that is not in progress does nothing.
    m.pf_reset_done();
    assert_eq!(vfs[1].rd(VFMAILBOX) & (mbx::RSTD | mbx::PFSTS), 0);
}

#[test]
fn the_pfs_own_reset_is_a_pf_reset_for_the_vfs() {
    use pmd_ixgbe_model::regs::{CTRL, CTRL_RST};
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    vf.reset();
    let pf = m.backend();
    let bar = pf.map_bar(0).unwrap();
    bar.write32_at(CTRL, CTRL_RST).unwrap();
    let ctl = vf.rd(VFMAILBOX);
    // The reset may complete (1 ms) before the read: RSTI, or already RSTD.
    assert_ne!(ctl & (mbx::RSTI | mbx::RSTD), 0, "{ctl:#x}");
    wait_for("PF reset done", || {
        bar.read32_at(CTRL).unwrap() & CTRL_RST == 0
    });
    let seen = vf.wait_ctl(mbx::PFSTS, Duration::from_secs(5));
    assert_ne!(seen & mbx::PFSTS, 0, "{seen:#x}");
    assert_eq!(vf.rd(VFMAILBOX) & mbx::RSTI, 0);
    assert_eq!(vf.read_message()[0], msg::PF_CONTROL_MSG);
    assert!(!m.vf_info(0).unwrap().clear_to_send);
    assert_eq!(vf.reset()[0], msg::RESET | msg::ACK);
}

#[test]
fn garbage_from_the_vf_never_panics() {
    let m = model(1);
    let vf = VfPort::new(&m, 0);
    let mut x = 0x9e37_79b9u32;
    for round in 0..3 {
        for off in (0..VF_BAR0_LEN).step_by(4) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Every register once with a random value, the mailbox with REQ too.
            let v = if off == VFMAILBOX && round == 1 {
                x | mbx::REQ
            } else {
                x
            };
            vf.wr(off, v);
            let _ = vf.rd(off);
        }
        m.inject(&[0xff; 64]);
    }
    // Sub-word accesses go through the region's read-modify-write.
    vf.bar.write8_at(VFMBMEM + 1, 0xab).unwrap();
    assert_eq!(vf.bar.read8_at(VFMBMEM + 1).unwrap(), 0xab);
    assert!(m.vf_stats(0).unwrap().mbx_requests >= 1);
    // Whatever was written, a reset brings the VF back.
    vf.wr(VFCTRL, u32::MAX);
    vf.wr(VFMAILBOX, 0);
    assert_eq!(vf.reset()[0], msg::RESET | msg::ACK);
    assert_eq!(vf.rd(vfrxdctl(0)) & DCTL_ENABLE, 0);
}

#[test]
fn a_vf_may_not_take_an_address_another_function_uses() {
    let m = Model82599::new(ModelConf {
        mac: MAC,
        vf_macs: vec![Some([0x02, 0, 0, 0, 0x10, 0x01]), None],
        ..ModelConf::default().with_vfs(2)
    })
    .unwrap();
    let vf = VfPort::new(&m, 1);
    vf.reset();
    for (what, mac) in [("the PF's", MAC), ("VF 0's", [0x02, 0, 0, 0, 0x10, 0x01])] {
        let w = mac_words(mac);
        assert_eq!(
            vf.request(&[msg::SET_MAC_ADDR, w[0], w[1]]).head(),
            msg::SET_MAC_ADDR | NACKED,
            "{what} address"
        );
    }
    assert_eq!(m.vf_mac(1).unwrap(), None);
    let w = mac_words([0x02, 0, 0, 0, 0x10, 0x02]);
    assert_eq!(
        vf.request(&[msg::SET_MAC_ADDR, w[0], w[1]]).head(),
        msg::SET_MAC_ADDR | ACKED
    );
}
