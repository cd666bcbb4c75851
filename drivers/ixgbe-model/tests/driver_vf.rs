//! The unmodified ixgbe VF driver (`net_ixgbe_vf`) against the model's virtual functions
//! and its PF-side mailbox peer: bring-up (reset, MAC from the PF or chosen and set,
//! mailbox API 1.3, queue count), traffic both ways with the VF's free-running counters,
//! requests the PF grants or refuses, and the PF misbehaving: silent, refusing,
//! answering garbage, resetting in the middle of traffic.

mod common;

use common::{rx_conf, tx_conf, wait_for};
use pmd_core::ethdev::{Device, MacAddr, PortConf, RxQueue, TxQueue};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_ixgbe_model::conf::default_vf_mac;
use pmd_ixgbe_model::frame::frame_seq;
use pmd_ixgbe_model::{Generator, MbxFault, Model82599, ModelConf};
use std::time::{Duration, Instant};

const PF_MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x55, 0x44, 0x00];

fn xstat(dev: &dyn Device, name: &str) -> u64 {
    dev.xstats()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .1
}

/// A model with two VFs: VF 0 with the PF-given default address, VF 1 with none.
fn model() -> Model82599 {
    Model82599::new(ModelConf {
        mac: PF_MAC,
        capture: 256,
        vf_macs: vec![Some(default_vf_mac(PF_MAC, 0)), None],
        ..ModelConf::default().with_vfs(2)
    })
    .unwrap()
}

struct Port {
    dev: Box<dyn Device>,
    rx: Box<dyn RxQueue>,
    tx: Box<dyn TxQueue>,
}

/// Configures one rx and one tx queue and starts.
fn start(mut dev: Box<dyn Device>, pool: &Mempool) -> Port {
    dev.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
        ..Default::default()
    })
    .unwrap();
    let rx = dev.setup_rx_queue(0, rx_conf(pool)).unwrap();
    let tx = dev.setup_tx_queue(0, tx_conf()).unwrap();
    dev.start().unwrap();
    Port { dev, rx, tx }
}

fn probe(model: &Model82599, vf: u8) -> pmd_core::Result<Box<dyn Device>> {
    use pmd_core::ethdev::Driver;
    pmd_ixgbe::VF_DRIVER.probe_pci(model.vf_backend(vf).unwrap())
}

/// Injects `n` frames to `dst` and receives them on `port`; returns how many arrived
/// (each checked intact and seen once).
fn exchange(model: &Model82599, port: &mut Port, dst: [u8; 6], n: u64) -> u64 {
    let g = Generator {
        size: 128,
        ..Generator::new(n, dst)
    };
    for seq in 0..n {
        model.inject(&g.frame(seq));
    }
    let mut seen = vec![0u32; n as usize];
    let mut got = 0;
    let mut batch = PktBatch::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got < n && Instant::now() < end {
        got += port.rx.rx_burst(&mut batch, 32) as u64;
        for m in batch.iter() {
            let seq = frame_seq(m.data()).unwrap();
            assert_eq!(m.data(), &g.frame(seq)[..], "frame {seq} intact");
            seen[seq as usize] += 1;
        }
        batch.clear();
    }
    assert!(seen.iter().all(|&c| c <= 1), "no frame twice");
    got
}

#[test]
fn the_vf_driver_brings_the_vf_up_through_the_pf_and_moves_frames_both_ways() {
    let model = model();
    let pool = Mempool::create("vf-drv", 2048, 0).unwrap();
    let dev = probe(&model, 0).unwrap();
    assert_eq!(dev.info().driver, "net_ixgbe_vf");
    let mac = model
        .vf_mac(0)
        .unwrap()
        .expect("the PF holds VF 0's address");
    assert_eq!(dev.mac_addr().0, mac, "the MAC comes from the PF");
    assert_eq!(xstat(&*dev, "mbx_api"), 4, "API 1.3 agreed");
    assert_eq!(model.vf_info(0).unwrap().api, 4);
    let mut port = start(dev, &pool);
    wait_for("the VF's link", || port.dev.link().up);
    assert_eq!(port.dev.link().speed_mbps, 10_000);

    assert_eq!(exchange(&model, &mut port, mac, 200), 200);
    // Not for this VF: the PF's, and nothing reaches the VF.
    assert_eq!(exchange(&model, &mut port, [0x02, 0, 0, 0, 0, 0x77], 5), 0);

    let g = Generator {
        size: 100,
        ..Generator::new(40, [0x02, 0, 0, 0, 0, 0x99])
    };
    let mut out = PktBatch::new();
    for seq in 0..40 {
        let mut m = pool.alloc().unwrap();
        m.append(100).unwrap().copy_from_slice(&g.frame(seq));
        out.push(m).unwrap();
    }
    while !out.is_empty() {
        port.tx.tx_burst(&mut out);
    }
    wait_for("transmission", || {
        model.vf_stats(0).unwrap().tx_packets == 40
    });
    let sent: Vec<Vec<u8>> = (0..40).map(|s| g.frame(s)).collect();
    assert_eq!(model.captured(), sent, "every byte as sent");

    // The VF's counters run freely; the driver adds their changes.
    assert_eq!(xstat(&*port.dev, "rx_good_packets"), 200);
    assert_eq!(xstat(&*port.dev, "rx_good_bytes"), 200 * 132);
    assert_eq!(xstat(&*port.dev, "tx_good_packets"), 40);
    assert_eq!(
        xstat(&*port.dev, "rx_good_packets"),
        200,
        "read twice, counted once"
    );
    port.dev.stop().unwrap();
    port.dev.close();
    assert!(
        !model.vf_info(0).unwrap().clear_to_send,
        "close resets the VF"
    );
}

#[test]
fn a_vf_the_pf_has_no_address_for_picks_one_and_sets_it_through_the_pf() {
    let model = model();
    let mut dev = probe(&model, 1).unwrap();
    let mac = dev.mac_addr();
    assert_eq!(mac.0[0] & 3, 2, "locally administered unicast: {mac}");
    assert_eq!(model.vf_mac(1).unwrap(), Some(mac.0), "the PF took it");
    dev.close();
}

#[test]
fn requests_the_pf_grants_and_the_one_it_refuses() {
    let model = model();
    let pool = Mempool::create("vf-req", 1024, 0).unwrap();
    let mut port = start(probe(&model, 0).unwrap(), &pool);
    port.dev.set_mtu(9000).unwrap();
    assert_eq!(model.vf_info(0).unwrap().max_frame, Some(9018));
    let groups = [
        MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]),
        MacAddr([0x33, 0x33, 0x00, 0x00, 0xf1, 0xab]),
    ];
    port.dev.set_mc_addr_list(&groups).unwrap();
    assert_eq!(model.vf_info(0).unwrap().mc_hashes, vec![0x010, 0xabf]);
    port.dev.vlan_filter(100, true).unwrap();
    port.dev.vlan_filter(7, true).unwrap();
    port.dev.vlan_filter(100, false).unwrap();
    assert_eq!(model.vf_info(0).unwrap().vlans, vec![7]);
    let e = port.dev.set_promiscuous(true).unwrap_err().to_string();
    assert!(
        e.contains("does not let this VF receive other unicast"),
        "{e}"
    );
    assert_eq!(
        model.vf_info(0).unwrap().xcast_mode,
        2,
        "all-multicast kept"
    );
    assert!(!port.dev.promiscuous());
    assert!(xstat(&*port.dev, "mbx_nacked") >= 1);
    port.dev.close();
}

#[test]
fn a_silent_pf_is_a_clear_error_not_a_hang() {
    let model = model();
    model.set_mbx_fault(MbxFault::Silent);
    let t = Instant::now();
    let e = probe(&model, 0)
        .err()
        .expect("no answer, no VF")
        .to_string();
    assert!(e.contains("did not acknowledge"), "{e}");
    assert!(e.contains("interface up"), "says what to check: {e}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_refusing_pf_and_garbage_answers_fail_the_request_and_are_counted() {
    let model = model();
    let pool = Mempool::create("vf-nack", 1024, 0).unwrap();
    let mut port = start(probe(&model, 0).unwrap(), &pool);
    model.set_mbx_fault(MbxFault::NackAll);
    let before = model.vf_info(0).unwrap().max_frame;
    let e = port.dev.set_mtu(4000).unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
    assert_eq!(model.vf_info(0).unwrap().max_frame, before, "unchanged");
    model.set_mbx_fault(MbxFault::Garbage);
    let e = port.dev.vlan_filter(5, true).unwrap_err().to_string();
    assert!(e.contains("not an answer"), "{e}");
    assert_eq!(xstat(&*port.dev, "mbx_nacked"), 1);
    assert_eq!(xstat(&*port.dev, "mbx_garbage"), 1);
    model.set_mbx_fault(MbxFault::None);
    port.dev.vlan_filter(5, true).unwrap();
    port.dev.close();
}

#[test]
fn a_pf_reset_during_traffic_takes_the_link_down_and_a_port_restart_recovers() {
    let model = model();
    let pool = Mempool::create("vf-pfrst", 2048, 0).unwrap();
    let mut port = start(probe(&model, 0).unwrap(), &pool);
    let mac = port.dev.mac_addr().0;
    wait_for("the VF's link", || port.dev.link().up);
    assert_eq!(exchange(&model, &mut port, mac, 100), 100);

    model.pf_reset(None);
    wait_for("the link to go down", || !port.dev.link().up);
    assert_eq!(exchange(&model, &mut port, mac, 20), 0, "the PF drops them");
    assert_eq!(
        model.vf_stats(0).unwrap().rx_dropped(),
        20,
        "counted where the PF is"
    );
    // A request while the PF is away: a clear error, bounded.
    assert!(port.dev.set_mtu(2000).is_err());
    model.pf_reset_done();
    assert!(!port.dev.link().up, "down until the port is set up again");
    assert!(xstat(&*port.dev, "mbx_pf_resets") >= 1);

    // The restart DPDK's apps do on a reset event: stop, configure, queues, start.
    port.dev.stop().unwrap();
    let Port { dev, rx, tx } = port;
    drop((rx, tx));
    let mut port = start(dev, &pool);
    assert_eq!(port.dev.mac_addr().0, mac, "the same address");
    wait_for("the link after the restart", || port.dev.link().up);
    assert_eq!(exchange(&model, &mut port, mac, 100), 100, "traffic again");
    port.dev.close();
}

#[test]
fn a_restart_right_after_a_pf_reset_recovers_and_asks_for_the_filters_again() {
    let model = model();
    let pool = Mempool::create("vf-refilter", 2048, 0).unwrap();
    let mut port = start(probe(&model, 0).unwrap(), &pool);
    let mac = port.dev.mac_addr().0;
    let group = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x07]);
    port.dev.set_mc_addr_list(&[group]).unwrap();
    port.dev.vlan_filter(42, true).unwrap();
    model.pf_reset(None);
    model.pf_reset_done();
    // No link check in between: the restart itself finds the reset.
    port.dev.stop().unwrap();
    let Port { dev, rx, tx } = port;
    drop((rx, tx));
    let mut port = start(dev, &pool);
    let info = model.vf_info(0).unwrap();
    assert!(info.clear_to_send);
    assert_eq!(
        info.mc_hashes,
        vec![0x070],
        "multicast list asked for again"
    );
    assert_eq!(info.vlans, vec![42], "VLAN filter asked for again");
    assert_eq!(
        xstat(&*port.dev, "mbx_pf_resets"),
        1,
        "one reset, counted once"
    );
    wait_for("the link after the restart", || port.dev.link().up);
    assert_eq!(exchange(&model, &mut port, mac, 50), 50);
    port.dev.close();
}
