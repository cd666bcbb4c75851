//! Vdev argument parsing and validation (no file access).

use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use std::path::PathBuf;

/// Argument keys the driver accepts (DPDK net_pcap's names).
pub(crate) const KNOWN_ARGS: &[&str] = &["rx_pcap", "tx_pcap", "infinite_rx"];

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Files to replay, one rx queue each (the vdev syntax takes one).
    pub rx: Vec<PathBuf>,
    /// Files to record into, one tx queue each (the vdev syntax takes one).
    pub tx: Vec<PathBuf>,
    /// Replay rx files in a loop.
    pub infinite_rx: bool,
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let rx: Vec<PathBuf> = vdev.get("rx_pcap").path()?.into_iter().collect();
        let tx: Vec<PathBuf> = vdev.get("tx_pcap").path()?.into_iter().collect();
        if !rx.is_empty() && rx == tx {
            return Err(bad(format!(
                "rx_pcap and tx_pcap are the same file {}: recording would overwrite what is replayed",
                rx[0].display()
            )));
        }
        let infinite_rx = vdev.get("infinite_rx").flag()?.unwrap_or(false);
        if infinite_rx && rx.is_empty() {
            return Err(bad("infinite_rx=1 needs an rx_pcap file to replay".into()));
        }
        if rx.is_empty() && tx.is_empty() {
            return Err(bad(
                "nothing to do: give rx_pcap=FILE (replay) and/or tx_pcap=FILE (record)".into(),
            ));
        }
        Ok(Config {
            rx,
            tx,
            infinite_rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::from_vdev(&s.parse().unwrap())
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn files_and_queues() {
        let c = parse("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap").unwrap();
        assert_eq!(c.rx, [PathBuf::from("in.pcap")]);
        assert_eq!(c.tx, [PathBuf::from("out.pcap")]);
        assert!(!c.infinite_rx);
        let c = parse("net_pcap0,rx_pcap=a,infinite_rx=1").unwrap();
        assert!(c.tx.is_empty() && c.infinite_rx);
        assert!(parse("net_pcap0,tx_pcap=/tmp/x.pcap").is_ok());
    }

    #[test]
    fn bad_args_are_named() {
        assert!(err("net_pcap0").contains("nothing to do"));
        assert!(err("net_pcap0,rx_pcap=").contains("'rx_pcap' is empty"));
        assert!(err("net_pcap0,rx_pcap=a,tx_pcap=a").contains("same file"));
        assert!(err("net_pcap0,rx_pcap=a,infinite_rx=2").contains("infinite_rx=2"));
        assert!(err("net_pcap0,tx_pcap=a,infinite_rx=1").contains("needs an rx_pcap"));
        let e = err("net_pcap0,rx_pcap=a,iface=eth0");
        assert!(e.contains("'iface'") && e.contains("'rx_pcap'"), "{e}");
    }
}
