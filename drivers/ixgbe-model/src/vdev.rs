//! `--vdev net_ixgbe_model0,gen=N,...`: an in-process 82599 model driven by the real
//! ixgbe PMD, so apps can run on "ixgbe" with no hardware (tests, demos, benchmarks).
//! The port's xstats add the model's own counters (`model_*`) to the driver's.

use crate::{conf_from_args, Model82599};
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, RxQueue, RxQueueConf, TxQueue, TxQueueConf,
};
use pmd_core::options::VdevSpec;
use pmd_core::Result;

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
        let conf = conf_from_args(&vdev.args)?;
        let model = Model82599::new(conf)?;
        let dev = pmd_ixgbe::probe(model.backend(), &vdev.name)?;
        Ok(Box::new(ModelPort { dev, model }))
    }
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
