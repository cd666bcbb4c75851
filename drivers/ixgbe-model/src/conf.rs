//! What a model is built from: its MAC address, an optional traffic generator, the faults
//! to inject, how many transmitted frames to keep and its SR-IOV virtual functions, plus
//! the vdev-style argument parser.

use crate::hw::MAX_VFS;
use pmd_core::{Error, Result};

/// A MAC address, most significant byte first (as on the wire).
pub type MacAddr = [u8; 6];

/// The MAC address a model gets when none is configured (locally administered, unicast);
/// [`instance_mac`] of instance 0.
pub const DEFAULT_MAC: MacAddr = [0x02, 0x1b, 0x21, 0x00, 0x00, 0x01];

/// The MAC address model instance `instance` gets when none is configured: [`DEFAULT_MAC`]'s
/// locally administered unicast prefix with `instance + 1` in the last three bytes, so every
/// port of a run (up to 2^24 - 1 of them) has its own address.
pub fn instance_mac(instance: u32) -> MacAddr {
    let [_, hi, mid, lo] = (instance.wrapping_add(1) & 0x00ff_ffff).to_be_bytes();
    [DEFAULT_MAC[0], DEFAULT_MAC[1], DEFAULT_MAC[2], hi, mid, lo]
}
/// The source MAC of generated frames when none is configured.
pub const DEFAULT_GEN_SRC_MAC: MacAddr = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// The traffic source on the model's wire: IPv4/UDP frames with a sequence number in the
/// payload, spread over `flows` UDP source ports (see [`Generator::frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    /// Frames to send in total.
    pub frames: u64,
    /// Frame length without the CRC, [`Generator::MIN_SIZE`]..=[`Generator::MAX_SIZE`].
    pub size: usize,
    /// Distinct flows (UDP source ports), 1..=[`Generator::MAX_FLOWS`].
    pub flows: u32,
    /// Destination MAC of every frame (the model's own MAC to pass the unicast filter).
    pub dst_mac: MacAddr,
    /// Source MAC of every frame.
    pub src_mac: MacAddr,
    /// When the target rx queue has no free descriptor: drop the frame (counted as
    /// missed) instead of waiting for the driver to post buffers.
    pub drop_when_full: bool,
}

impl Generator {
    /// Smallest frame (without CRC) the generator builds.
    pub const MIN_SIZE: usize = 60;
    /// Largest frame (without CRC) the generator builds: a 9728-byte jumbo frame.
    pub const MAX_SIZE: usize = 9724;
    /// Most flows: one per UDP source port from 1024 up.
    pub const MAX_FLOWS: u32 = 64512;

    /// `frames` minimum-size frames of one flow to `dst_mac`, waiting when queues are full.
    pub fn new(frames: u64, dst_mac: MacAddr) -> Generator {
        Generator {
            frames,
            size: Self::MIN_SIZE,
            flows: 1,
            dst_mac,
            src_mac: DEFAULT_GEN_SRC_MAC,
            drop_when_full: false,
        }
    }

    /// Checks the size and flow count.
    pub fn validate(&self) -> Result<()> {
        if !(Self::MIN_SIZE..=Self::MAX_SIZE).contains(&self.size) {
            return Err(Error::Config(format!(
                "ixgbe model: generator frame size {} is outside {}..={} (bytes without CRC)",
                self.size,
                Self::MIN_SIZE,
                Self::MAX_SIZE
            )));
        }
        if !(1..=Self::MAX_FLOWS).contains(&self.flows) {
            return Err(Error::Config(format!(
                "ixgbe model: generator flow count {} is outside 1..={}",
                self.flows,
                Self::MAX_FLOWS
            )));
        }
        Ok(())
    }
}

/// How the PF side of every VF mailbox misbehaves (`Faults::mbx`, or at run time
/// `Model82599::set_mbx_fault`). RESET is a request like any other unless said otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MbxFault {
    /// The PF answers as Linux's ixgbe PF driver does.
    #[default]
    None,
    /// The PF never acknowledges a request (no PFACK, no answer): a PF whose driver is
    /// not loaded or is stuck.
    Silent,
    /// The PF refuses (NACK) every request except RESET.
    NackAll,
    /// The PF acknowledges every request and answers with a message of another type
    /// (0xFF, ACK): a confused PF.
    Garbage,
}

/// The MAC address VF `vf` gets by default: `pf`'s with `0x10 + vf` added to the last
/// byte, so it differs from the PF's and from every other VF's.
pub fn default_vf_mac(pf: MacAddr, vf: u8) -> MacAddr {
    let mut m = pf;
    m[5] = m[5].wrapping_add(0x10).wrapping_add(vf);
    m
}

/// Whether `mac` may be a station's address: not multicast (bit 0 of byte 0), not zero.
pub fn is_unicast(mac: &MacAddr) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

/// Faults the model injects; each shows at the register level as the datasheet behaviour
/// of the failure it stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// LINKS never reports the link up (also switchable with `Model82599::set_link`).
    pub link_down: bool,
    /// CTRL.RST never self-clears (and EEPROM auto-read / DMA init never complete).
    pub reset_hang: bool,
    /// Every Nth frame written to a receive queue carries the RXE error bit.
    pub rx_error_every: Option<u32>,
    /// Transmit descriptors are not processed: TDH stops, no DD is written back.
    pub tx_stall: bool,
    /// How the PF side of the VF mailboxes misbehaves (no effect without VFs).
    pub mbx: MbxFault,
}

/// How to build a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConf {
    /// The MAC address in the model's EEPROM (loaded into RAL0/RAH0 at reset).
    pub mac: MacAddr,
    /// Traffic to send from the moment the model exists (it waits for the link and for
    /// receive descriptors).
    pub generator: Option<Generator>,
    /// Faults to inject.
    pub faults: Faults,
    /// Transmitted frames to keep for `Model82599::captured` (the last N; 0 keeps none).
    pub capture: usize,
    /// SR-IOV virtual functions, 0..=[`MAX_VFS`] (0: none). Each is a PCI function of its
    /// own (`Model82599::vf_backend`); with any, the model also plays the PF's driver
    /// (the mailbox peer) and brings the link up as that driver would.
    pub vfs: u8,
    /// The MAC address the PF's administrator set for each VF (as `ip link set PF vf N
    /// mac ADDR` does): entry n is VF n's, `None` for no address (the VF's RESET is then
    /// refused and it must set one itself). VFs past the end get [`default_vf_mac`].
    pub vf_macs: Vec<Option<MacAddr>>,
}

impl Default for ModelConf {
    /// [`DEFAULT_MAC`], no generator, no faults, no capture, no VFs.
    fn default() -> Self {
        ModelConf {
            mac: DEFAULT_MAC,
            generator: None,
            faults: Faults::default(),
            capture: 0,
            vfs: 0,
            vf_macs: Vec::new(),
        }
    }
}

impl ModelConf {
    /// This configuration with `n` VFs (their MAC addresses as [`ModelConf::vf_macs`]
    /// says).
    pub fn with_vfs(self, n: u8) -> ModelConf {
        ModelConf { vfs: n, ..self }
    }

    /// The administrator's MAC address of VF `vf`: its [`ModelConf::vf_macs`] entry, else
    /// [`default_vf_mac`] of the model's MAC.
    pub fn vf_mac(&self, vf: u8) -> Option<MacAddr> {
        match self.vf_macs.get(usize::from(vf)) {
            Some(m) => *m,
            None => Some(default_vf_mac(self.mac, vf)),
        }
    }

    /// Checks the generator, fault and VF settings.
    pub fn validate(&self) -> Result<()> {
        if usize::from(self.vfs) > MAX_VFS {
            return Err(Error::Config(format!(
                "ixgbe model: {} VFs asked for, the model offers at most {MAX_VFS}",
                self.vfs
            )));
        }
        if self.vf_macs.len() > usize::from(self.vfs) {
            return Err(Error::Config(format!(
                "ixgbe model: {} VF MAC addresses for {} VFs",
                self.vf_macs.len(),
                self.vfs
            )));
        }
        let macs: Vec<MacAddr> = (0..self.vfs).filter_map(|vf| self.vf_mac(vf)).collect();
        for (i, m) in macs.iter().enumerate() {
            if !is_unicast(m) {
                return Err(Error::Config(format!(
                    "ixgbe model: VF MAC address {m:02x?} is not a unicast address"
                )));
            }
            if *m == self.mac || macs[..i].contains(m) {
                return Err(Error::Config(format!(
                    "ixgbe model: VF MAC address {m:02x?} is used twice (PF and VFs need their own)"
                )));
            }
        }
        if let Some(g) = &self.generator {
            g.validate()?;
        }
        if self.faults.rx_error_every == Some(0) {
            return Err(Error::Config(
                "ixgbe model: rx_error_every must be at least 1 (every Nth frame)".into(),
            ));
        }
        Ok(())
    }
}

/// Keys [`conf_from_args`] accepts.
pub const ARG_KEYS: &[&str] = &[
    "mac", "gen", "size", "flows", "link", "fault", "capture", "vfs",
];

/// Builds a [`ModelConf`] from vdev-style `key=value` arguments: `mac=aa:bb:cc:dd:ee:ff`,
/// `gen=<frames>` (a generator to the model's MAC), `size=<60..=9724>`, `flows=<N>`,
/// `link=up|down`, `fault=reset_hang|tx_stall|rx_error:<N>|mbx_silent|mbx_nack|mbx_garbage`
/// (may repeat), `capture=<N>` (at most 2^20 frames) and `vfs=<0..=8>` (SR-IOV virtual
/// functions with their default MAC addresses). Unknown keys, repeated keys (other than `fault`) and bad values are
/// errors that say what is expected.
pub fn conf_from_args(args: &[(String, String)]) -> Result<ModelConf> {
    conf_for_instance(0, args)
}

/// [`conf_from_args`] for model instance `instance`: without `mac=`, the model (and its
/// generator's destination) gets [`instance_mac`]`(instance)` instead of [`DEFAULT_MAC`].
pub fn conf_for_instance(instance: u32, args: &[(String, String)]) -> Result<ModelConf> {
    let mut conf = ModelConf {
        mac: instance_mac(instance),
        ..ModelConf::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    let (mut frames, mut size, mut flows) = (None, None, None);
    for (key, value) in args {
        let key = key.as_str();
        if !ARG_KEYS.contains(&key) {
            return Err(Error::Config(format!(
                "ixgbe model: unknown argument '{key}'; known arguments: {}",
                ARG_KEYS.join(", ")
            )));
        }
        if key != "fault" && seen.contains(&key) {
            return Err(Error::Config(format!(
                "ixgbe model: argument '{key}' is given twice"
            )));
        }
        seen.push(key);
        let v = value.as_str();
        match key {
            "mac" => {
                conf.mac = parse_mac(v)
                    .ok_or_else(|| bad(key, v, "expected six hex bytes like 02:1b:21:00:00:01"))?
            }
            "gen" => frames = Some(parse_num::<u64>(key, v, 1, u64::MAX)?),
            "size" => {
                size = Some(parse_num::<usize>(
                    key,
                    v,
                    Generator::MIN_SIZE,
                    Generator::MAX_SIZE,
                )?)
            }
            "flows" => flows = Some(parse_num::<u32>(key, v, 1, Generator::MAX_FLOWS)?),
            "capture" => conf.capture = parse_num::<usize>(key, v, 0, 1 << 20)?,
            "vfs" => conf.vfs = parse_num::<u8>(key, v, 0, MAX_VFS as u8)?,
            "link" => {
                conf.faults.link_down = match v {
                    "up" => false,
                    "down" => true,
                    _ => return Err(bad(key, v, "expected 'up' or 'down'")),
                }
            }
            _ => parse_fault(v, &mut conf.faults)?,
        }
    }
    match frames {
        Some(frames) => {
            let mut g = Generator::new(frames, conf.mac);
            g.size = size.unwrap_or(g.size);
            g.flows = flows.unwrap_or(g.flows);
            conf.generator = Some(g);
        }
        None if size.is_some() || flows.is_some() => {
            return Err(Error::Config(
                "ixgbe model: 'size' and 'flows' configure the generator; add gen=<frames>".into(),
            ))
        }
        None => {}
    }
    conf.validate()?;
    Ok(conf)
}

fn bad(key: &str, value: &str, reason: &str) -> Error {
    Error::Config(format!(
        "ixgbe model: invalid value '{value}' for argument '{key}': {reason}"
    ))
}

fn parse_num<T>(key: &str, v: &str, min: T, max: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(bad(key, v, &format!("expected a number in {min}..={max}"))),
    }
}

fn parse_fault(v: &str, faults: &mut Faults) -> Result<()> {
    const EXPECTED: &str = "expected reset_hang, tx_stall, mbx_silent, mbx_nack, mbx_garbage \
                            or rx_error:<N> (N >= 1)";
    match v {
        "reset_hang" => faults.reset_hang = true,
        "tx_stall" => faults.tx_stall = true,
        "mbx_silent" => faults.mbx = MbxFault::Silent,
        "mbx_nack" => faults.mbx = MbxFault::NackAll,
        "mbx_garbage" => faults.mbx = MbxFault::Garbage,
        _ => {
            let n = v
                .strip_prefix("rx_error:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad("fault", v, EXPECTED))?;
            faults.rx_error_every = Some(n);
        }
    }
    Ok(())
}

/// Parses `aa:bb:cc:dd:ee:ff` (two hex digits per byte).
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_instance_gets_its_own_locally_administered_mac() {
        assert_eq!(instance_mac(0), DEFAULT_MAC);
        assert_eq!(instance_mac(1), [0x02, 0x1b, 0x21, 0x00, 0x00, 0x02]);
        assert_eq!(instance_mac(0x1234), [0x02, 0x1b, 0x21, 0x00, 0x12, 0x35]);
        let macs: Vec<MacAddr> = (0..300).map(instance_mac).collect();
        for (i, m) in macs.iter().enumerate() {
            assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
            assert!(!macs[..i].contains(m), "instance {i} repeats a MAC");
        }
        let c = conf_for_instance(1, &args(&[("gen", "5")])).unwrap();
        assert_eq!(c.mac, instance_mac(1));
        assert_eq!(c.generator.unwrap().dst_mac, instance_mac(1), "gen follows");
        let given = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        let c = conf_for_instance(7, &args(&[("mac", "02:aa:bb:cc:dd:ee")])).unwrap();
        assert_eq!(c.mac, given, "mac= wins over the instance's");
    }

    #[test]
    fn parses_every_key() {
        let c = conf_from_args(&args(&[
            ("mac", "02:aa:bb:cc:dd:ee"),
            ("gen", "1000"),
            ("size", "128"),
            ("flows", "8"),
            ("link", "down"),
            ("fault", "reset_hang"),
            ("fault", "rx_error:10"),
            ("fault", "tx_stall"),
            ("capture", "16"),
        ]))
        .unwrap();
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        assert_eq!(c.mac, mac);
        let g = c.generator.unwrap();
        assert_eq!((g.frames, g.size, g.flows, g.dst_mac), (1000, 128, 8, mac));
        assert!(!g.drop_when_full);
        assert_eq!(
            c.faults,
            Faults {
                link_down: true,
                reset_hang: true,
                rx_error_every: Some(10),
                tx_stall: true,
                mbx: MbxFault::None,
            }
        );
        assert_eq!(c.capture, 16);
        assert_eq!(conf_from_args(&[]).unwrap(), ModelConf::default());
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("speed", "10")], "unknown argument 'speed'"),
            (
                &[("mac", "02:00:00:00:00")],
                "invalid value '02:00:00:00:00' for argument 'mac'",
            ),
            (&[("mac", "02:00:00:00:00:0g")], "six hex bytes"),
            (&[("gen", "0")], "1..="),
            (&[("gen", "-1")], "argument 'gen'"),
            (&[("gen", "1"), ("size", "59")], "60..=9724"),
            (&[("gen", "1"), ("size", "9725")], "60..=9724"),
            (&[("gen", "1"), ("flows", "0")], "argument 'flows'"),
            (&[("size", "64")], "add gen=<frames>"),
            (&[("link", "sideways")], "'up' or 'down'"),
            (&[("fault", "rx_error:0")], "rx_error:<N>"),
            (&[("fault", "explode")], "reset_hang, tx_stall"),
            (&[("capture", "x")], "argument 'capture'"),
            (&[("gen", "1"), ("gen", "2")], "given twice"),
        ];
        for (a, want) in cases {
            let e = conf_from_args(&args(a)).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }

    #[test]
    fn validates_generators_and_faults() {
        let mut g = Generator::new(1, DEFAULT_MAC);
        assert!(g.validate().is_ok());
        g.flows = Generator::MAX_FLOWS + 1;
        assert!(g.validate().is_err());
        let conf = ModelConf {
            faults: Faults {
                rx_error_every: Some(0),
                ..Faults::default()
            },
            ..ModelConf::default()
        };
        assert!(conf.validate().is_err());
        assert_eq!(parse_mac("ff:ff:ff:ff:ff:ff:00"), None);
        assert_eq!(parse_mac("1:2:3:4:5:6"), None);
    }
}
