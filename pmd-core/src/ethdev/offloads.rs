//! Port and queue offloads: what a device can do ([`super::DevInfo`]) and what an
//! application asks for ([`super::PortConf`]). Bit values are DPDK's
//! (`RTE_ETH_RX_OFFLOAD_*`, `RTE_ETH_TX_OFFLOAD_*`), so `--rx-offloads=0x...` means the same
//! thing to both.

use std::fmt;

macro_rules! offload_set {
    ($(#[$doc:meta])* $name:ident, $what:literal, [$($(#[$cdoc:meta])* ($c:ident, $bit:expr)),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u64);

        impl $name {
            $( $(#[$cdoc])* pub const $c: $name = $name(1 << $bit); )*
            /// No offload.
            pub const NONE: $name = $name(0);
            const NAMES: &'static [(&'static str, u64)] = &[$((stringify!($c), 1 << $bit)),*];

            /// Whether every offload in `other` is in `self`.
            #[inline]
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Offloads in `self` and not in `other`.
            pub const fn minus(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }

            /// Whether no offload is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// Parses DPDK's forms: a hex or decimal bit mask (`0x2001`), or names joined
            /// with `,` (`VLAN_STRIP,SCATTER`, any case, with or without DPDK's prefix).
            pub fn parse(s: &str) -> Result<$name, String> {
                let t = s.trim();
                if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    return u64::from_str_radix(h, 16)
                        .map($name)
                        .map_err(|_| format!("invalid {} offload mask {s:?}: expected hex digits after 0x", $what));
                }
                if let Ok(v) = t.parse::<u64>() {
                    return Ok($name(v));
                }
                let mut v = 0;
                for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let up = part.to_ascii_uppercase();
                    let up = up
                        .strip_prefix(concat!("RTE_ETH_", $what, "_OFFLOAD_"))
                        .unwrap_or(&up);
                    let bit = Self::NAMES.iter().find(|(n, _)| *n == up).map(|&(_, b)| b).ok_or_else(|| {
                        format!(
                            "unknown {} offload {part:?}; known: {}",
                            $what,
                            Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        )
                    })?;
                    v |= bit;
                }
                Ok($name(v))
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, o: $name) -> $name {
                $name(self.0 | o.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, o: $name) {
                self.0 |= o.0;
            }
        }

        impl std::ops::BitAnd for $name {
            type Output = $name;
            fn bitand(self, o: $name) -> $name {
                $name(self.0 & o.0)
            }
        }

        /// Names joined with `, ` (`none` when empty; unknown bits as hex).
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0 == 0 {
                    return f.write_str("none");
                }
                let mut rest = self.0;
                let mut first = true;
                for &(n, b) in Self::NAMES {
                    if self.0 & b != 0 {
                        if !first {
                            f.write_str(", ")?;
                        }
                        f.write_str(n)?;
                        first = false;
                        rest &= !b;
                    }
                }
                if rest != 0 {
                    if !first {
                        f.write_str(", ")?;
                    }
                    write!(f, "{rest:#x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x}: {})", stringify!($name), self.0, self)
            }
        }
    };
}

offload_set!(
    /// Receive offloads of a port or queue.
    RxOffloads, "RX", [
    /// Strip the outermost VLAN tag into the mbuf's `vlan_tci` (`RX_VLAN_STRIPPED`).
    (VLAN_STRIP, 0),
    /// Check IPv4 header checksums (`RX_IP_CKSUM_*`).
    (IPV4_CKSUM, 1),
    /// Check UDP checksums (`RX_L4_CKSUM_*`).
    (UDP_CKSUM, 2),
    /// Check TCP checksums (`RX_L4_CKSUM_*`).
    (TCP_CKSUM, 3),
    /// Coalesce TCP segments into large packets (`RX_LRO`).
    (TCP_LRO, 4),
    /// Strip both tags of QinQ frames (`RX_QINQ_STRIPPED`).
    (QINQ_STRIP, 5),
    /// Check outer IPv4 checksums of tunnelled packets.
    (OUTER_IPV4_CKSUM, 6),
    /// Drop frames whose VLAN is not in the filter table.
    (VLAN_FILTER, 9),
    /// Receive frames larger than one buffer as mbuf chains.
    (SCATTER, 13),
    /// Keep the Ethernet CRC in the data.
    (KEEP_CRC, 16),
    /// Deliver the RSS hash (`RX_RSS_HASH`).
    (RSS_HASH, 19),
]);

offload_set!(
    /// Transmit offloads of a port or queue.
    TxOffloads, "TX", [
    /// Insert the VLAN tag of packets flagged `TX_VLAN`.
    (VLAN_INSERT, 0),
    /// Compute IPv4 header checksums of packets flagged `TX_IP_CKSUM`.
    (IPV4_CKSUM, 1),
    /// Compute UDP checksums (`TX_UDP_CKSUM`).
    (UDP_CKSUM, 2),
    /// Compute TCP checksums (`TX_TCP_CKSUM`).
    (TCP_CKSUM, 3),
    /// Segment TCP packets flagged `TX_TCP_SEG` into `tso_segsz` payloads.
    (TCP_TSO, 5),
    /// Segment UDP packets flagged `TX_UDP_SEG`.
    (UDP_TSO, 6),
    /// Compute outer IPv4 checksums (`TX_OUTER_IP_CKSUM`).
    (OUTER_IPV4_CKSUM, 7),
    /// Insert both tags of packets flagged `TX_QINQ`.
    (QINQ_INSERT, 8),
    /// Send packets made of several segments (mbuf chains).
    (MULTI_SEGS, 15),
    /// All packets of a burst come from one pool with refcount 1 (a hint).
    (MBUF_FAST_FREE, 16),
]);

impl RxOffloads {
    /// The checksum checks (`IPV4_CKSUM | UDP_CKSUM | TCP_CKSUM`).
    pub const CHECKSUM: RxOffloads = RxOffloads(0b1110);
}

impl TxOffloads {
    /// The checksum offloads (`IPV4_CKSUM | UDP_CKSUM | TCP_CKSUM`).
    pub const CHECKSUM: TxOffloads = TxOffloads(0b1110);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        assert_eq!(
            RxOffloads::parse("0x2001").unwrap(),
            RxOffloads::VLAN_STRIP | RxOffloads::SCATTER
        );
        assert_eq!(
            RxOffloads::parse("vlan_strip, RTE_ETH_RX_OFFLOAD_SCATTER").unwrap(),
            RxOffloads(0x2001)
        );
        assert_eq!(TxOffloads::parse("32768").unwrap(), TxOffloads::MULTI_SEGS);
        assert_eq!(
            (TxOffloads::TCP_TSO | TxOffloads::MULTI_SEGS).to_string(),
            "TCP_TSO, MULTI_SEGS"
        );
        assert_eq!(
            RxOffloads(1 << 40 | 1).to_string(),
            "VLAN_STRIP, 0x10000000000"
        );
        assert_eq!(RxOffloads::NONE.to_string(), "none");
        let e = TxOffloads::parse("TSO").unwrap_err();
        assert!(
            e.contains("unknown TX offload") && e.contains("TCP_TSO"),
            "{e}"
        );
        assert!(RxOffloads::parse("0xzz").is_err());
        assert!(RxOffloads::CHECKSUM.contains(RxOffloads::UDP_CKSUM));
        assert_eq!(
            (RxOffloads::CHECKSUM | RxOffloads::SCATTER).minus(RxOffloads::CHECKSUM),
            RxOffloads::SCATTER
        );
    }
}
