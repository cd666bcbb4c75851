//! The `SIOCETHTOOL` command blocks this module uses, as laid out by `linux/ethtool.h`
//! (`libc` has none of them: sizes are checked at compile time), and what they decode to.
//! Nothing here calls the kernel: [`super::sys`] does.

use std::mem::size_of;

/// `ETHTOOL_GSET`: the legacy link settings (`struct ethtool_cmd`).
const ETHTOOL_GSET: u32 = 0x01;
/// `ETHTOOL_GDRVINFO`: driver information (`struct ethtool_drvinfo`).
const ETHTOOL_GDRVINFO: u32 = 0x03;
/// `ETHTOOL_GCHANNELS`: channel (queue) counts (`struct ethtool_channels`).
const ETHTOOL_GCHANNELS: u32 = 0x3c;
/// `DUPLEX_FULL` in `ethtool_cmd.duplex`.
const DUPLEX_FULL: u8 = 0x01;
/// `SPEED_UNKNOWN`: the speed of a link without carrier or of a virtual device.
const SPEED_UNKNOWN: u32 = u32::MAX;

/// A command block `SIOCETHTOOL` reads and writes through `ifr_data`: a `repr(C)`
/// structure of integers (valid for any bytes) whose first `u32` is the command, as long
/// as what the kernel writes back for that command. Implemented only here.
pub(crate) trait Command: Copy {
    /// A block for this command, all other fields zero.
    fn request() -> Self;
}

/// `struct ethtool_cmd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Length of the strings of `struct ethtool_drvinfo` (`ETHTOOL_*_LEN`).
const DRVINFO_STR: usize = 32;

/// `struct ethtool_drvinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; DRVINFO_STR],
    version: [u8; DRVINFO_STR],
    fw_version: [u8; DRVINFO_STR],
    bus_info: [u8; DRVINFO_STR],
    erom_version: [u8; DRVINFO_STR],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const _: () = assert!(size_of::<EthtoolCmd>() == 44);
const _: () = assert!(size_of::<EthtoolChannels>() == 36);
const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196);

impl Command for EthtoolCmd {
    fn request() -> Self {
        EthtoolCmd {
            cmd: ETHTOOL_GSET,
            ..EthtoolCmd::default()
        }
    }
}

impl Command for EthtoolChannels {
    fn request() -> Self {
        EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..EthtoolChannels::default()
        }
    }
}

impl Command for EthtoolDrvinfo {
    fn request() -> Self {
        EthtoolDrvinfo {
            cmd: ETHTOOL_GDRVINFO,
            driver: [0; DRVINFO_STR],
            version: [0; DRVINFO_STR],
            fw_version: [0; DRVINFO_STR],
            bus_info: [0; DRVINFO_STR],
            erom_version: [0; DRVINFO_STR],
            reserved2: [0; 12],
            n_priv_flags: 0,
            n_stats: 0,
            testinfo_len: 0,
            eedump_len: 0,
            regdump_len: 0,
        }
    }
}

/// Speed and duplex of a link (`ethtool` without arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkSettings {
    /// Mbit/s; 0 when the device does not know (no carrier, a virtual device).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl From<EthtoolCmd> for LinkSettings {
    fn from(c: EthtoolCmd) -> LinkSettings {
        let speed = u32::from(c.speed) | (u32::from(c.speed_hi) << 16);
        LinkSettings {
            speed_mbps: if speed == SPEED_UNKNOWN { 0 } else { speed },
            full_duplex: c.duplex == DUPLEX_FULL,
        }
    }
}

/// Queue (channel) counts of a device (`ethtool -l`): a channel is an interrupt with the
/// queues it serves, rx-only, tx-only or combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Rx-only channels.
    pub rx: u32,
    /// Tx-only channels.
    pub tx: u32,
    /// Combined (rx and tx) channels.
    pub combined: u32,
}

impl Channels {
    /// Queues that can receive.
    pub fn rx_queues(&self) -> u32 {
        self.rx + self.combined
    }

    /// Queues that can transmit.
    pub fn tx_queues(&self) -> u32 {
        self.tx + self.combined
    }
}

impl From<EthtoolChannels> for Channels {
    fn from(c: EthtoolChannels) -> Channels {
        Channels {
            rx: c.rx_count,
            tx: c.tx_count,
            combined: c.combined_count,
        }
    }
}

/// The kernel driver behind an interface (`ethtool -i`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name (`tun` for tun and tap devices, `veth`, `e1000e`, ...).
    pub driver: String,
    /// Bus address (a PCI address; `tap` or `tun` for those devices).
    pub bus_info: String,
}

/// The text of a NUL-padded string field.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl From<EthtoolDrvinfo> for DriverInfo {
    fn from(d: EthtoolDrvinfo) -> DriverInfo {
        DriverInfo {
            driver: c_string(&d.driver),
            bus_info: c_string(&d.bus_info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_command() {
        assert_eq!(EthtoolCmd::request().cmd, 0x01);
        assert_eq!(EthtoolChannels::request().cmd, 0x3c);
        assert_eq!(EthtoolDrvinfo::request().cmd, 0x03);
    }

    #[test]
    fn link_settings_decode_speed_and_duplex() {
        let mut c = EthtoolCmd::request();
        c.speed = 0x86a0; // 100000 = 0x1_86a0: the high half is in speed_hi
        c.speed_hi = 1;
        c.duplex = DUPLEX_FULL;
        let s = LinkSettings::from(c);
        assert_eq!((s.speed_mbps, s.full_duplex), (100_000, true));
        c.speed = u16::MAX;
        c.speed_hi = u16::MAX;
        c.duplex = 0xff; // DUPLEX_UNKNOWN
        assert_eq!(LinkSettings::from(c), LinkSettings::default());
    }

    #[test]
    fn channels_and_driver_info_decode() {
        let mut c = EthtoolChannels::request();
        c.rx_count = 1;
        c.tx_count = 2;
        c.combined_count = 4;
        let ch = Channels::from(c);
        assert_eq!((ch.rx_queues(), ch.tx_queues()), (5, 6));

        let mut d = EthtoolDrvinfo::request();
        d.driver[..3].copy_from_slice(b"tun");
        d.bus_info.copy_from_slice(&[b'x'; DRVINFO_STR]);
        let i = DriverInfo::from(d);
        assert_eq!(i.driver, "tun");
        assert_eq!(
            i.bus_info,
            "x".repeat(DRVINFO_STR),
            "no NUL: the whole field"
        );
    }
}
