//! testpmd's command line (after `--`), with DPDK testpmd's option names.

use clap::{Parser, ValueEnum};
use pmd_core::ethdev::{MacAddr, RxOffloads, TxOffloads};
use pmd_core::mempool::MAX_CACHE_SIZE;
use pmd_core::numarg;

/// How packets are forwarded (DPDK's `--forward-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Forward packets unchanged.
    Io,
    /// Rewrite the source MAC (the tx port's) and destination MAC (the peer's).
    Mac,
    /// Swap source and destination MACs.
    Macswap,
    /// Receive and drop.
    Rxonly,
    /// Send generated UDP packets; receive nothing.
    Txonly,
    /// Verify (and report) IPv4, UDP and TCP checksums, then forward like `io`.
    Csum,
    /// Send generated UDP packets over many flows (varied addresses); receive and drop.
    Flowgen,
}

/// Application options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "testpmd",
    about = "Packet forwarding test app (non-interactive; EAL options go before --)"
)]
pub struct Opts {
    /// Forwarding mode.
    #[arg(long = "forward-mode", value_enum, default_value = "io")]
    pub mode: Mode,
    /// Forwarding lcores (taken from the -l list, after the main lcore).
    #[arg(long = "nb-cores", default_value_t = 1, value_parser = |s: &str| numarg::whole::<u16>(s, 1..=64))]
    pub nb_cores: u16,
    /// Rx queues per port.
    #[arg(long, default_value_t = 1, value_parser = |s: &str| numarg::whole::<u16>(s, 1..=64))]
    pub rxq: u16,
    /// Tx queues per port.
    #[arg(long, default_value_t = 1, value_parser = |s: &str| numarg::whole::<u16>(s, 1..=64))]
    pub txq: u16,
    /// Rx descriptors per queue (0 = driver default).
    #[arg(long, default_value_t = 0, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub rxd: u16,
    /// Tx descriptors per queue (0 = driver default).
    #[arg(long, default_value_t = 0, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub txd: u16,
    /// Adaptive mode: once its rx queues received nothing for this many microseconds, a
    /// forwarding lcore arms their interrupts and sleeps until one fires (every queue of
    /// the lcore needs them; txonly and flowgen never sleep).
    #[arg(long = "idle-sleep", value_name = "USECS",
          value_parser = |s: &str| numarg::whole::<u32>(s, 1..=100_000_000))]
    pub idle_sleep: Option<u32>,
    /// Longest sleep in adaptive mode, milliseconds.
    #[arg(long = "max-sleep-ms", value_name = "MS", default_value_t = 100,
          value_parser = |s: &str| numarg::whole::<u64>(s, 1..=10_000))]
    pub max_sleep_ms: u64,
    /// Packets per burst.
    #[arg(long, default_value_t = 32, value_parser = |s: &str| numarg::whole::<u16>(s, 1..=64))]
    pub burst: u16,
    /// Segment lengths of generated packets (txonly, flowgen), comma-separated, as DPDK's
    /// `--txpkts=A,B,...`: the frame is their sum (60..=9216 bytes, no FCS: the same
    /// frames DPDK's testpmd sends for the same option), one mbuf per segment.
    #[arg(long, default_value = "64", value_parser = parse_txpkts)]
    pub txpkts: TxPkts,
    /// Data room of each mbuf, headroom included (DPDK's `--mbuf-size`).
    #[arg(long = "mbuf-size", default_value_t = pmd_core::mbuf::DEFAULT_BUF_SIZE,
          value_parser = |s: &str| numarg::whole::<u16>(s, 256..=u16::MAX))]
    pub mbuf_size: u16,
    /// Largest frame to receive, bytes with the FCS: sets the MTU to this minus 18.
    #[arg(long = "max-pkt-len", value_parser = |s: &str| numarg::whole::<u16>(s, 64..=u16::MAX))]
    pub max_pkt_len: Option<u16>,
    /// Receive frames larger than one mbuf as chains (the SCATTER rx offload).
    #[arg(long = "enable-scatter")]
    pub enable_scatter: bool,
    /// Rx offloads for every port: a DPDK bit mask (0x...) or names (VLAN_STRIP,SCATTER).
    #[arg(long = "rx-offloads", value_parser = RxOffloads::parse)]
    pub rx_offloads: Option<RxOffloads>,
    /// Tx offloads for every port: a DPDK bit mask (0x...) or names (MULTI_SEGS,TCP_TSO).
    #[arg(long = "tx-offloads", value_parser = TxOffloads::parse)]
    pub tx_offloads: Option<TxOffloads>,
    /// Print port statistics every N seconds (0: only at the end).
    #[arg(long = "stats-period", default_value_t = 0, value_parser = numarg::period)]
    pub stats_period: u64,
    /// Send a burst of generated packets out of every forwarding stream before forwarding.
    #[arg(long = "tx-first")]
    pub tx_first: bool,
    /// Mbufs in the pool (0: sized from ports, queues and descriptors).
    #[arg(long = "total-num-mbufs", default_value_t = 0,
          value_parser = |s: &str| numarg::whole(s, 0..=u32::MAX))]
    pub total_num_mbufs: u32,
    /// Per-lcore mempool cache size (at most 512, DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
    #[arg(long, default_value_t = 250,
          value_parser = |s: &str| numarg::whole(s, 0..=MAX_CACHE_SIZE))]
    pub mbcache: u32,
    /// Destination MAC for `mac` mode: `PORT,MAC` (repeatable; default 02:00:00:00:00:PORT).
    #[arg(long = "eth-peer", value_parser = parse_peer)]
    pub eth_peer: Vec<(u16, MacAddr)>,
    /// Flows for flowgen mode.
    #[arg(long = "flowgen-flows", default_value_t = 64, value_parser = |s: &str| numarg::whole::<u32>(s, 1..=65536))]
    pub flowgen_flows: u32,
    /// Start forwarding at once (always the case; accepted for compatibility).
    #[arg(short = 'a', long = "auto-start")]
    pub auto_start: bool,
    /// Stop by itself after this many seconds (testpmd runs until Ctrl-C otherwise).
    #[arg(long, value_parser = numarg::seconds)]
    pub duration: Option<f64>,
    /// Interactive prompt: not supported.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
}

/// Segment lengths of generated packets (`--txpkts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPkts(pub Vec<u16>);

impl TxPkts {
    /// Segment lengths of the frame.
    pub fn segments(&self) -> Vec<usize> {
        self.0.iter().map(|&s| usize::from(s)).collect()
    }
}

fn parse_txpkts(s: &str) -> Result<TxPkts, String> {
    let segs = s
        .split(',')
        .map(|p| {
            numarg::whole(p, 1..=u16::MAX)
                .ok()
                .ok_or_else(|| format!("--txpkts {s:?}: {p:?} is not a segment length (1..=65535)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total: u32 = segs.iter().map(|&n| u32::from(n)).sum();
    if !(60..=9216).contains(&total) || segs.len() > 64 {
        return Err(format!(
            "--txpkts {s:?}: the segments must add up to 60..=9216 bytes, at most 64 of them"
        ));
    }
    Ok(TxPkts(segs))
}

fn parse_peer(s: &str) -> Result<(u16, MacAddr), String> {
    let (p, m) = s
        .split_once(',')
        .ok_or_else(|| format!("--eth-peer {s:?}: expected PORT,MAC"))?;
    let port = numarg::whole(p, 0..=u16::MAX)
        .map_err(|_| format!("--eth-peer {s:?}: bad port number {p:?}"))?;
    let mac = m
        .parse()
        .map_err(|_| format!("--eth-peer {s:?}: bad MAC {m:?}"))?;
    Ok((port, mac))
}

impl Opts {
    /// The destination MAC `mac` mode writes for packets leaving `port`.
    pub fn peer_mac(&self, port: u16) -> MacAddr {
        self.eth_peer
            .iter()
            .rev()
            .find(|(p, _)| *p == port)
            .map_or(MacAddr([0x02, 0, 0, 0, 0, port as u8]), |(_, m)| *m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dpdk_style_options() {
        let o = Opts::try_parse_from([
            "testpmd",
            "--forward-mode=macswap",
            "--nb-cores=1",
            "--rxq=2",
            "--txq=2",
            "--txpkts=128",
            "--stats-period",
            "1",
            "--tx-first",
            "--eth-peer=1,02:00:00:00:00:09",
        ])
        .unwrap();
        assert_eq!(o.mode, Mode::Macswap);
        assert_eq!((o.rxq, o.txq, o.stats_period), (2, 2, 1));
        assert_eq!(o.txpkts, TxPkts(vec![128]));
        assert!(o.tx_first);
        assert_eq!(o.peer_mac(1).to_string(), "02:00:00:00:00:09");
        assert_eq!(o.peer_mac(3).to_string(), "02:00:00:00:00:03");
        assert!(Opts::try_parse_from(["testpmd", "--forward-mode=bogus"]).is_err());
        assert!(Opts::try_parse_from(["testpmd", "--txpkts=10"]).is_err());
        assert!(Opts::try_parse_from(["testpmd", "--txpkts=9000,300"]).is_err());
        assert!(Opts::try_parse_from(["testpmd", "--txpkts=100,0"]).is_err());
        assert!(Opts::try_parse_from(["testpmd", "--rx-offloads=bogus"]).is_err());
        let j = Opts::try_parse_from([
            "testpmd",
            "--txpkts=2048,2048,4904",
            "--mbuf-size=2176",
            "--max-pkt-len=9018",
            "--enable-scatter",
            "--rx-offloads=0x1",
            "--tx-offloads=MULTI_SEGS",
        ])
        .unwrap();
        assert_eq!(j.txpkts.segments().iter().sum::<usize>(), 9000);
        assert_eq!(j.txpkts.segments(), [2048, 2048, 4904]);
        assert_eq!(j.max_pkt_len, Some(9018));
        assert_eq!(j.rx_offloads, Some(RxOffloads::VLAN_STRIP));
        assert_eq!(j.tx_offloads, Some(TxOffloads::MULTI_SEGS));
        assert!(Opts::try_parse_from(["testpmd", "--eth-peer=1"]).is_err());
    }
}
