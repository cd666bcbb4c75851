//! `--vdev net_ixgbe_model0,gen=N,...`: an in-process 82599 model driven by the real
//! ixgbe PMD, so apps can run on "ixgbe" with no hardware (tests, demos, benchmarks).
//! The port's xstats add the model's own counters (`model_*`) to the driver's.
//!
//! This glue is a crate of its own so that the dependencies point one way: the model
//! (`pmd-ixgbe-model`) knows nothing of the driver it checks, the driver (`pmd-ixgbe`)
//! nothing of the model, and only this crate joins the two.

use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, RxQueue, RxQueueConf, TxQueue, TxQueueConf,
};
use pmd_core::Result;
use pmd_ixgbe_model::{conf_for_instance, Model82599};

/// The vdev driver name.
pub const DRIVER_NAME: &str = "net_ixgbe_model";

/// Creates model devices for `--vdev net_ixgbe_modelN,...`.
pub struct ModelDriver;

/// The driver instance to list in an application's driver table.
pub static DRIVER: ModelDriver = ModelDriver;

impl Driver for ModelDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "an in-process Intel 82599 model run by the ixgbe PMD: [mac=MAC] [gen=FRAMES [size=60..9724] [flows=N]] [link=up|down] [fault=reset_hang|tx_stall|rx_error:N] [capture=N]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        let conf = conf_for_instance(instance(&vdev.name), &vdev.args)?;
        let model = Model82599::new(conf)?;
        let dev = pmd_ixgbe::probe(model.backend(), &vdev.name)?;
        Ok(Box::new(ModelPort { dev, model }))
    }
}

/// The instance number ending a device name (`net_ixgbe_model1` -> 1; none or too large: 0),
/// which gives each model port its own MAC address.
fn instance(name: &str) -> u32 {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    name[name.len() - digits..].parse().unwrap_or(0)
}

/// The ixgbe device plus a handle on its model (for the model's counters).
struct ModelPort {
    dev: pmd_ixgbe::Ixgbe,
    model: Model82599,
}

impl Device for ModelPort {
    fn info(&self) -> DevInfo {
        self.dev.info()
    }
    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        self.dev.configure(conf)
    }
    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        self.dev.setup_rx_queue(qid, conf)
    }
    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        self.dev.setup_tx_queue(qid, conf)
    }
    fn start(&mut self) -> Result<()> {
        self.dev.start()
    }
    fn stop(&mut self) -> Result<()> {
        self.dev.stop()
    }
    fn close(&mut self) {
        self.dev.close()
    }
    fn link(&self) -> Link {
        self.dev.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.dev.mac_addr()
    }
    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.dev.set_promiscuous(on)
    }
    fn promiscuous(&self) -> bool {
        self.dev.promiscuous()
    }
    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        self.dev.set_mtu(mtu)
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.dev.xstats();
        let s = self.model.stats();
        for (k, n) in [
            ("model_generated", s.generated),
            ("model_rx_delivered", s.rx_delivered),
            ("model_rx_dropped", s.rx_dropped()),
            ("model_tx_frames", s.tx_frames),
            ("model_dma_faults", s.dma_faults),
            ("model_errors", s.errors),
        ] {
            v.push((k.to_string(), n));
        }
        for (q, n) in s
            .rx_delivered_per_queue
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
        {
            v.push((format!("model_rx_q{q}_delivered"), *n));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::ethdev::{Port, RxOffloads};
    use pmd_core::mbuf::PktBatch;
    use pmd_core::Mempool;
    use std::time::{Duration, Instant};

    fn spec(name: &str, args: &[(&str, &str)]) -> VdevSpec {
        VdevSpec {
            name: name.to_string(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn xstat(port: &Port, name: &str) -> u64 {
        let all = port.xstats();
        all.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no xstat {name} in {all:?}"))
    }

    #[test]
    fn bad_model_arguments_are_refused() {
        let Err(e) = DRIVER.probe(&spec("net_ixgbe_model0", &[("size", "128")])) else {
            panic!("size without gen was accepted");
        };
        assert!(e.to_string().contains("add gen=<frames>"), "{e}");
    }

    /// The generated jumbo frames only pass the MAC if the port's MTU reached the driver,
    /// which programs the model's MAXFRS and HLREG0.JUMBOEN from it.
    #[test]
    fn the_ixgbe_driver_runs_the_model_with_the_ports_mtu_and_its_counters() {
        let frames = 8u64;
        let dev = DRIVER
            .probe(&spec(
                "net_ixgbe_model0",
                &[("gen", &frames.to_string()), ("size", "9000")],
            ))
            .unwrap();
        assert_eq!(dev.info().driver, "net_ixgbe");
        let pool = Mempool::create("model-vdev", 1024, 0).unwrap();
        let mut port = Port::new(0, "net_ixgbe_model0", dev);
        port.configure(&PortConf {
            mtu: Some(9000),
            rx_offloads: RxOffloads::SCATTER,
            ..Default::default()
        })
        .unwrap();
        let mut rxq = port.setup_rx_queue(0, 256, &pool).unwrap();
        let _txq = port.setup_tx_queue(0, 256).unwrap();
        port.start().unwrap();
        let mut batch = PktBatch::new();
        let mut lens = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while (lens.len() as u64) < frames {
            assert!(
                Instant::now() < deadline,
                "{} of {frames} frames; {:?}",
                lens.len(),
                port.xstats()
            );
            rxq.rx_burst(&mut batch);
            lens.extend(batch.iter().map(|p| p.len()));
            batch.clear();
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(lens.iter().all(|&l| l == 9000), "{lens:?}");
        assert_eq!(xstat(&port, "model_generated"), frames);
        assert_eq!(xstat(&port, "model_rx_delivered"), frames);
        assert_eq!(xstat(&port, "model_rx_dropped"), 0);
        assert_eq!(xstat(&port, "rx_good_packets"), frames);
        port.stop().unwrap();
    }

    /// Two model ports of one run must not share a MAC (frames between them would be
    /// taken for the port's own); the MAC the driver reads from the model's EEPROM is
    /// the instance's, unless `mac=` says otherwise.
    #[test]
    fn two_model_ports_get_distinct_macs() {
        let mac = |name: &str, args: &[(&str, &str)]| {
            DRIVER.probe(&spec(name, args)).unwrap().mac_addr().0
        };
        let m0 = mac("net_ixgbe_model0", &[]);
        let m1 = mac("net_ixgbe_model1", &[]);
        assert_ne!(m0, m1);
        assert_eq!(m0, pmd_ixgbe_model::instance_mac(0));
        assert_eq!(m1, pmd_ixgbe_model::instance_mac(1));
        assert_eq!(m1[0] & 0x03, 0x02, "locally administered unicast");
        let given = mac("net_ixgbe_model1", &[("mac", "02:00:00:00:00:99")]);
        assert_eq!(given, [0x02, 0, 0, 0, 0, 0x99]);
        assert_eq!(instance("net_ixgbe_model12"), 12);
        assert_eq!(instance("net_ixgbe_model"), 0);
    }
}
