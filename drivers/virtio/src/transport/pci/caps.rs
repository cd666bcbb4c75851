//! The virtio vendor capabilities of a PCI function's config space (virtio 1.x section
//! 4.1.4 "Virtio Structure PCI Capabilities"): where the common configuration, the
//! notification area, the ISR byte and the device configuration live (BAR, offset, length).
//! Config space comes from the device, so the list walk is bounded and checked.

/// Vendor-specific capability id in the PCI capability list.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` of the common configuration.
pub const CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification area.
pub const CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type` of the ISR status byte.
pub const CAP_ISR_CFG: u8 = 3;
/// `cfg_type` of the device-specific configuration.
pub const CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type` of the PCI configuration access window.
pub const CAP_PCI_CFG: u8 = 5;

/// At most this many capabilities are walked (a loop is an error, not a hang).
const MAX_CAPS: usize = 48;

/// One virtio vendor capability (`struct virtio_pci_cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// Where in config space the capability is.
    pub at: u8,
    /// Structure type (`CAP_*_CFG`).
    pub cfg_type: u8,
    /// BAR holding the structure.
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
}

/// The virtio structures found in a config space (the first usable of each type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: Option<VirtioCap>,
    /// Notification area and its `notify_off_multiplier`.
    pub notify: Option<(VirtioCap, u32)>,
    /// ISR status.
    pub isr: Option<VirtioCap>,
    /// Device-specific configuration.
    pub device: Option<VirtioCap>,
}

impl VirtioCaps {
    /// Whether the modern interface can be used (common configuration and notifications).
    pub fn is_modern(&self) -> bool {
        self.common.is_some() && self.notify.is_some()
    }
}

pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks the capability list of a config space (at least 64 bytes, at most 256 are
/// looked at) for the virtio vendor capabilities. A list that loops, runs outside the
/// 256 bytes, points into the header, or has a truncated virtio capability is an error;
/// capabilities naming a reserved BAR are skipped.
pub fn parse_caps(cfg: &[u8]) -> std::result::Result<VirtioCaps, String> {
    if cfg.len() < 64 {
        return Err(format!("config space of {} bytes is too short", cfg.len()));
    }
    let cfg = &cfg[..cfg.len().min(256)];
    let mut caps = VirtioCaps::default();
    // Status register bit 4: the capability list exists.
    if le16(cfg, 0x06) & 0x10 == 0 {
        return Ok(caps);
    }
    let mut seen = [false; 256];
    let mut ptr = cfg[0x34] & 0xfc;
    let mut walked = 0;
    while ptr != 0 {
        walked += 1;
        if walked > MAX_CAPS {
            return Err(format!("more than {MAX_CAPS} capabilities"));
        }
        let p = ptr as usize;
        if p < 0x40 {
            return Err(format!(
                "capability pointer {ptr:#x} points into the standard header"
            ));
        }
        if seen[p] {
            return Err(format!("the capability list loops (back to {ptr:#x})"));
        }
        seen[p] = true;
        if p + 2 > cfg.len() {
            return Err(format!("capability at {ptr:#x} runs past config space"));
        }
        let (id, next) = (cfg[p], cfg[p + 1]);
        if id == PCI_CAP_ID_VNDR {
            if p + 16 > cfg.len() {
                return Err(format!(
                    "virtio capability at {ptr:#x} runs past config space"
                ));
            }
            let cap_len = cfg[p + 2] as usize;
            if cap_len < 16 || p + cap_len > cfg.len() {
                return Err(format!(
                    "virtio capability at {ptr:#x} has a bad length {cap_len}"
                ));
            }
            let cap = VirtioCap {
                at: ptr,
                cfg_type: cfg[p + 3],
                bar: cfg[p + 4],
                offset: le32(cfg, p + 8),
                length: le32(cfg, p + 12),
            };
            if cap.bar <= 5 {
                match cap.cfg_type {
                    CAP_COMMON_CFG if caps.common.is_none() => caps.common = Some(cap),
                    CAP_NOTIFY_CFG if caps.notify.is_none() => {
                        if cap_len < 20 {
                            return Err(format!(
                                "notify capability at {ptr:#x} is {cap_len} bytes, needs 20"
                            ));
                        }
                        caps.notify = Some((cap, le32(cfg, p + 16)));
                    }
                    CAP_ISR_CFG if caps.isr.is_none() => caps.isr = Some(cap),
                    CAP_DEVICE_CFG if caps.device.is_none() => caps.device = Some(cap),
                    _ => {}
                }
            }
        }
        ptr = next & 0xfc;
    }
    Ok(caps)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::transport::pci::VIRTIO_PCI_VENDOR;

    /// A config space with device id `device` and the capabilities `caps` (offset, then
    /// the capability's bytes without the `next` byte), linked in order.
    pub(crate) fn config(device: u16, caps: &[(u8, Vec<u8>)]) -> [u8; 256] {
        let mut c = [0u8; 256];
        c[0..2].copy_from_slice(&VIRTIO_PCI_VENDOR.to_le_bytes());
        c[2..4].copy_from_slice(&device.to_le_bytes());
        if !caps.is_empty() {
            c[6] = 0x10;
            c[0x34] = caps[0].0;
        }
        for (i, (off, body)) in caps.iter().enumerate() {
            let o = *off as usize;
            c[o] = body[0];
            c[o + 1] = caps.get(i + 1).map_or(0, |n| n.0);
            c[o + 2..o + 1 + body.len()].copy_from_slice(&body[1..]);
        }
        c
    }

    /// A virtio vendor capability without its `next` byte: id, cap_len, cfg_type, bar, id,
    /// padding, offset, length (and notify_off_multiplier).
    pub(crate) fn vcap(
        cfg_type: u8,
        bar: u8,
        offset: u32,
        length: u32,
        mult: Option<u32>,
    ) -> Vec<u8> {
        let len = if mult.is_some() { 20 } else { 16 };
        let mut v = vec![PCI_CAP_ID_VNDR, len, cfg_type, bar, 0, 0, 0];
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(&length.to_le_bytes());
        if let Some(m) = mult {
            v.extend_from_slice(&m.to_le_bytes());
        }
        v
    }

    pub(crate) fn modern_caps(bar: u8, common_off: u32) -> Vec<(u8, Vec<u8>)> {
        vec![
            (0x98, vec![0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // MSI-X, not ours
            (0x84, vcap(CAP_NOTIFY_CFG, bar, 0x3000, 0x1000, Some(4))),
            (0x70, vcap(CAP_DEVICE_CFG, bar, 0x2000, 0x1000, None)),
            (0x60, vcap(CAP_ISR_CFG, bar, 0x1000, 0x1000, None)),
            (0x50, vcap(CAP_COMMON_CFG, bar, common_off, 0x1000, None)),
            (0x40, vcap(CAP_PCI_CFG, 0, 0, 0, None)),
        ]
    }

    #[test]
    fn parses_the_capabilities() {
        let c = config(0x1041, &modern_caps(4, 0));
        let caps = parse_caps(&c).unwrap();
        assert!(caps.is_modern());
        assert_eq!(
            caps.common,
            Some(VirtioCap {
                at: 0x50,
                cfg_type: 1,
                bar: 4,
                offset: 0,
                length: 0x1000
            })
        );
        let (n, mult) = caps.notify.unwrap();
        assert_eq!((n.offset, n.length, mult), (0x3000, 0x1000, 4));
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
        // No capability list at all (status bit clear): nothing, no error.
        let legacy = config(0x1000, &[]);
        assert_eq!(parse_caps(&legacy).unwrap(), VirtioCaps::default());
    }

    #[test]
    fn hostile_capability_lists_are_errors() {
        // A loop: the last capability points back at the first.
        let mut c = config(0x1041, &modern_caps(4, 0));
        c[0x41] = 0x98;
        assert!(parse_caps(&c).unwrap_err().contains("loops"));
        // Self loop.
        let mut c = config(0x1041, &[(0x40, vec![0x11, 0])]);
        c[0x41] = 0x40;
        assert!(parse_caps(&c).is_err());
        // Into the header.
        let mut c = config(0x1041, &[(0x40, vec![0x11, 0])]);
        c[0x41] = 0x10;
        assert!(parse_caps(&c).unwrap_err().contains("header"));
        // A virtio capability running past config space.
        let c = config(0x1041, &[(0xf8, vec![PCI_CAP_ID_VNDR, 16, 1])]);
        assert!(parse_caps(&c).unwrap_err().contains("past"));
        // A too-short virtio capability, a too-short notify capability.
        let mut short = vcap(CAP_COMMON_CFG, 4, 0, 0x1000, None);
        short[1] = 8;
        assert!(parse_caps(&config(0x1041, &[(0x40, short)])).is_err());
        let mut n = vcap(CAP_NOTIFY_CFG, 4, 0, 0x1000, Some(4));
        n[1] = 16;
        assert!(parse_caps(&config(0x1041, &[(0x40, n)]))
            .unwrap_err()
            .contains("notify"));
        // A reserved BAR: skipped, so the device is not usable as modern.
        let caps = parse_caps(&config(0x1041, &modern_caps(7, 0))).unwrap();
        assert!(!caps.is_modern() && caps.common.is_none());
        // Whatever config space a fuzzer makes: never a panic.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut c = [0u8; 256];
            for b in c.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            c[6] |= 0x10;
            let _ = parse_caps(&c);
        }
        assert!(parse_caps(&[0u8; 10]).is_err());
    }
}
