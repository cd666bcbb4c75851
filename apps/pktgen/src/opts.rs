//! pktgen's command line (after `--`).

use clap::Parser;
use pmd_core::ethdev::MacAddr;
use pmd_core::numarg;
use std::net::Ipv4Addr;

/// Highest `--rate` accepted, Mpps: far above any port, low enough that the sender's
/// per-tick budget stays an exact float.
pub const MAX_RATE_MPPS: f64 = 100_000.0;

/// Application options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pktgen",
    about = "Generates UDP frames on one port, receives on another (or the same), and measures rate, loss and latency (EAL options go before --)"
)]
pub struct Opts {
    /// Port to send on.
    #[arg(long = "tx-port", default_value_t = 0, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub tx_port: u16,
    /// Port to receive on (default: the tx port's pair, 1 for 0; the same port if only one exists).
    #[arg(long = "rx-port", value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub rx_port: Option<u16>,
    /// Send rate in Mpps (0: as fast as possible; at most 100000).
    #[arg(long, default_value_t = 0.0, value_parser = |s: &str| numarg::rate_mpps(s, MAX_RATE_MPPS))]
    pub rate: f64,
    /// Frame sizes without FCS, cycled per packet (e.g. 60 or 60,124,1514,9014), up to 9216.
    #[arg(long, value_delimiter = ',', default_value = "60", value_parser = |s: &str| numarg::whole::<u16>(s, 60..=9216))]
    pub size: Vec<u16>,
    /// Destination MAC (default: the rx port's MAC).
    #[arg(long = "dst-mac")]
    pub dst_mac: Option<MacAddr>,
    /// Source MAC (default: the tx port's MAC).
    #[arg(long = "src-mac")]
    pub src_mac: Option<MacAddr>,
    /// Source IPv4 address of flow 0 (flows count up from it).
    #[arg(long = "src-ip", default_value = "198.18.0.1")]
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    #[arg(long = "dst-ip", default_value = "198.19.0.1")]
    pub dst_ip: Ipv4Addr,
    /// UDP source port of flow 0 (flows count up from it).
    #[arg(long, default_value_t = 1024, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub sport: u16,
    /// UDP destination port.
    #[arg(long, default_value_t = 4321, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    pub dport: u16,
    /// Number of flows (source address and port vary over them).
    #[arg(long, default_value_t = 1, value_parser = |s: &str| numarg::whole::<u32>(s, 1..=65536))]
    pub flows: u32,
    /// Stop sending after this many frames (0: no limit).
    #[arg(long, default_value_t = 0, value_parser = |s: &str| numarg::whole(s, 0..=u64::MAX))]
    pub count: u64,
    /// Run this many seconds (default: until Ctrl-C, or until --count frames were sent and
    /// received or a second passed).
    #[arg(long, value_parser = numarg::seconds)]
    pub duration: Option<f64>,
    /// Frames per burst.
    #[arg(long, default_value_t = 32, value_parser = |s: &str| numarg::whole::<u16>(s, 1..=64))]
    pub burst: u16,
    /// Live table period in seconds (0: none).
    #[arg(short = 'T', long = "stats-period", default_value_t = 1, value_parser = numarg::period)]
    pub period: u64,
    /// Replay the frames of this pcap file (in order, looping) instead of generating
    /// UDP frames; every frame received then counts (no latency or reordering).
    #[arg(long)]
    pub pcap: Option<std::path::PathBuf>,
    /// Print the final summary as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}
