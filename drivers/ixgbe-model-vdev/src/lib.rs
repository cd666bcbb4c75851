//! `--vdev net_ixgbe_model0,gen=N,...`: an in-process 82599 model driven by the real
//! ixgbe PMD, so apps can run on "ixgbe" with no hardware (tests, demos, benchmarks).
//! The port's xstats add the model's own counters (`model_*`) to the driver's. With
//! `vf=N` the port is the model's SR-IOV virtual function N driven by the ixgbe VF PMD
//! (`net_ixgbe_vf`), the model's own PF-side mailbox peer answering it; the generator then
//! addresses that VF.
//!
//! This glue is a crate of its own so that the dependencies point one way: the model
//! (`pmd-ixgbe-model`) knows nothing of the driver it checks, the driver (`pmd-ixgbe`)
//! nothing of the model, and only this crate joins the two.

use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, RxQueue, RxQueueConf, TxQueue, TxQueueConf,
};
use pmd_core::{Error, Result};
use pmd_ixgbe::IxgbeVf;
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
        "an in-process Intel 82599 model run by the ixgbe PMD: [mac=MAC] [gen=FRAMES [size=60..9724] [flows=N]] [link=up|down] [fault=reset_hang|tx_stall|rx_error:N|mbx_silent|mbx_nack|mbx_garbage] [capture=N] [vfs=N] [vf=N: the port is VF N, run by the ixgbe VF PMD]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        // vf=N is this crate's: which function the port is; the rest is the model's.
        let mut vf = None;
        let mut args = Vec::with_capacity(vdev.args.len());
        for (k, v) in &vdev.args {
            if k == "vf" {
                let max = pmd_ixgbe_model::hw::MAX_VFS - 1;
                let n = v
                    .parse::<u8>()
                    .ok()
                    .filter(|&n| usize::from(n) <= max)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "ixgbe model: invalid value '{v}' for argument 'vf': expected a VF number in 0..={max}"
                        ))
                    })?;
                if vf.replace(n).is_some() {
                    return Err(Error::Config(
                        "ixgbe model: argument 'vf' is given twice".into(),
                    ));
                }
            } else {
                args.push((k.clone(), v.clone()));
            }
        }
        let mut conf = conf_for_instance(instance(&vdev.name), &args)?;
        let Some(vf) = vf else {
            let model = Model82599::new(conf)?;
            let dev = Box::new(pmd_ixgbe::probe(model.backend(), &vdev.name)?);
            return Ok(Box::new(ModelPort {
                dev,
                model,
                vf: None,
            }));
        };
        conf.vfs = conf.vfs.max(vf + 1);
        let vf_mac = conf.vf_mac(vf);
        if let (Some(g), Some(mac)) = (conf.generator.as_mut(), vf_mac) {
            g.dst_mac = mac;
        }
        let model = Model82599::new(conf)?;
        let dev = Box::new(IxgbeVf::init(model.vf_backend(vf)?, &vdev.name)?);
        Ok(Box::new(ModelPort {
            dev,
            model,
            vf: Some(vf),
        }))
    }
}

/// The instance number ending a device name (`net_ixgbe_model1` -> 1; none or too large: 0),
/// which gives each model port its own MAC address.
fn instance(name: &str) -> u32 {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    name[name.len() - digits..].parse().unwrap_or(0)
}

/// The ixgbe device (PF or VF) plus a handle on its model (for the model's counters).
struct ModelPort {
    dev: Box<dyn Device>,
    model: Model82599,
    /// The VF the port is, if it is one.
    vf: Option<u8>,
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
    fn set_mc_addr_list(&mut self, list: &[MacAddr]) -> Result<()> {
        self.dev.set_mc_addr_list(list)
    }
    fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        self.dev.vlan_filter(vlan, on)
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.dev.xstats();
        if let Some(vs) = self.vf.and_then(|vf| self.model.vf_stats(vf).ok()) {
            v.push(("model_vf_rx_dropped".into(), vs.rx_dropped()));
        }
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

    /// `vf=0`: the port is the model's VF, run by the VF PMD; its MAC comes from the
    /// model's PF over the mailbox and the generator addresses it.
    #[test]
    fn a_vf_port_runs_the_vf_pmd_and_receives_the_generated_stream() {
        let frames = 64u64;
        let dev = DRIVER
            .probe(&spec(
                "net_ixgbe_model3",
                &[("gen", &frames.to_string()), ("vf", "0")],
            ))
            .unwrap();
        assert_eq!(dev.info().driver, "net_ixgbe_vf");
        let pf = pmd_ixgbe_model::instance_mac(3);
        assert_eq!(dev.mac_addr().0, pmd_ixgbe_model::default_vf_mac(pf, 0));
        let pool = Mempool::create("model-vf", 1024, 0).unwrap();
        let mut port = Port::new(0, "net_ixgbe_model3", dev);
        port.configure(&PortConf::default()).unwrap();
        let mut rxq = port.setup_rx_queue(0, 256, &pool).unwrap();
        let _txq = port.setup_tx_queue(0, 256).unwrap();
        port.start().unwrap();
        let mut got = 0;
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < frames && Instant::now() < deadline {
            got += rxq.rx_burst(&mut batch) as u64;
            batch.clear();
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(got, frames, "{:?}", port.xstats());
        assert_eq!(xstat(&port, "rx_good_packets"), frames);
        assert_eq!(xstat(&port, "model_vf_rx_dropped"), 0);
        assert!(xstat(&port, "mbx_acked") >= 3, "reset, API, queues");
        port.stop().unwrap();
        for bad in ["8", "x"] {
            let Err(e) = DRIVER.probe(&spec("net_ixgbe_model0", &[("vf", bad)])) else {
                panic!("vf={bad} accepted");
            };
            assert!(e.to_string().contains("0..=7"), "{e}");
        }
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
