//! The unmodified ixgbe driver against the model: probe, configure with RSS over four
//! queues, receive a generated stream, transmit, read the hardware counters, and the
//! reset-hang fault as the driver reports it.

mod common;

use common::{rx_conf, tx_conf, wait_for};
use pmd_core::ethdev::{Device, PortConf, RxQueue};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_ixgbe_model::frame::frame_seq;
use pmd_ixgbe_model::{Faults, Generator, Model82599, ModelConf};

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x99, 0x88, 0x77];

fn xstat(dev: &dyn Device, name: &str) -> u64 {
    dev.xstats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

#[test]
fn the_ixgbe_driver_receives_with_rss_and_transmits() {
    let model = Model82599::new(ModelConf {
        mac: MAC,
        capture: 128,
        ..ModelConf::default()
    })
    .unwrap();
    let mut dev = pmd_ixgbe::probe(model.backend(), "model0").unwrap();
    assert_eq!(dev.mac_addr().0, MAC);
    dev.configure(&PortConf {
        rx_queues: 4,
        tx_queues: 1,
        ..Default::default()
    })
    .unwrap();
    let pool = Mempool::create("drv-model", 4096, 0).unwrap();
    let mut rxq: Vec<Box<dyn RxQueue>> = (0..4)
        .map(|q| dev.setup_rx_queue(q, rx_conf(&pool)).unwrap())
        .collect();
    let mut txq = dev.setup_tx_queue(0, tx_conf()).unwrap();
    dev.start().unwrap();
    let link = dev.link();
    assert!(link.up && link.speed_mbps == 10_000, "{link:?}");

    let frames = 2000u64;
    let g = Generator {
        size: 128,
        flows: 16,
        ..Generator::new(frames, MAC)
    };
    model.start_generator(g.clone());
    let mut seen = vec![0u32; frames as usize];
    let mut per_queue = [0u64; 4];
    let mut batch = PktBatch::new();
    let mut total = 0;
    wait_for("the generated stream", || {
        for (q, rx) in rxq.iter_mut().enumerate() {
            let n = rx.rx_burst(&mut batch, 32);
            per_queue[q] += n as u64;
            for m in batch.iter() {
                assert_eq!(m.len(), 128);
                let seq = frame_seq(m.data()).unwrap();
                assert_eq!(m.data(), &g.frame(seq)[..], "frame {seq} intact");
                seen[seq as usize] += 1;
            }
            total += n as u64;
            batch.clear();
        }
        total == frames
    });
    assert!(seen.iter().all(|&n| n == 1), "every frame exactly once");
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "RSS used every queue: {per_queue:?}"
    );
    assert_eq!(model.stats().rx_dropped(), 0);

    let mut out = PktBatch::new();
    for seq in 0..50 {
        let mut m = pool.alloc().unwrap();
        m.append(128).unwrap().copy_from_slice(&g.frame(seq));
        out.push(m).unwrap();
    }
    while !out.is_empty() {
        txq.tx_burst(&mut out);
    }
    wait_for("transmission", || model.stats().tx_frames == 50);
    let sent: Vec<Vec<u8>> = (0..50).map(|s| g.frame(s)).collect();
    assert_eq!(model.captured(), sent);

    assert_eq!(xstat(&dev, "rx_good_packets"), frames);
    assert_eq!(xstat(&dev, "rx_good_bytes"), frames * 132);
    assert_eq!(xstat(&dev, "tx_good_packets"), 50);
    assert_eq!(xstat(&dev, "rx_missed_errors"), 0);
    dev.stop().unwrap();
    drop(rxq);
    drop(txq);
    dev.close();
}

#[test]
fn the_driver_reports_a_reset_that_never_completes() {
    let model = Model82599::new(ModelConf {
        mac: MAC,
        faults: Faults {
            reset_hang: true,
            ..Faults::default()
        },
        ..ModelConf::default()
    })
    .unwrap();
    let Err(err) = pmd_ixgbe::probe(model.backend(), "hung0") else {
        panic!("probe must fail while CTRL.RST hangs");
    };
    let err = err.to_string();
    assert!(err.contains("CTRL.RST"), "{err}");
}

/// The PCI driver as the EAL uses it: it claims the model's vendor and device id (read
/// from the model's configuration space) and probes the function into a 10 GbE port named
/// after its PCI address.
#[test]
fn the_pci_driver_claims_and_probes_the_model() {
    use pmd_core::ethdev::{Driver, PciId};
    let model = Model82599::new(ModelConf {
        mac: MAC,
        ..ModelConf::default()
    })
    .unwrap();
    let backend = model.backend();
    let id = PciId {
        vendor: backend.read_config16(0).unwrap(),
        device: backend.read_config16(2).unwrap(),
    };
    assert!(pmd_ixgbe::DRIVER.pci_ids().contains(&id), "{id:?}");
    let mut dev = pmd_ixgbe::DRIVER.probe_pci(backend).unwrap();
    assert_eq!(dev.info().driver, "net_ixgbe");
    assert_eq!(dev.mac_addr().0, MAC);
    dev.close();
}
