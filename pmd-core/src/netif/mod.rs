//! Linux network interfaces, as the drivers that sit on one (`af_packet`, `af_xdp`,
//! `tap`) see them: index, flags (up, running, promiscuous), MTU, MAC address and, through
//! ethtool, link speed, channel counts and driver; and the addresses every interface
//! holds ([`addresses`]), as the admin tool asks before it unbinds a device.
//!
//! [`Interface`] is the safe API; the `sys` submodule holds the system calls (`struct
//! ifreq` ioctls, `SIOCETHTOOL`, the `AF_PACKET` promiscuous membership, `getifaddrs`) and `ethtool`
//! the command blocks `libc` lacks. Requests go through the socket an [`Interface`] was opened
//! with, so they reach the network namespace that socket was created in, wherever the
//! calling thread is later.

mod error;
mod ethtool;
mod sys;

pub use error::NetifError;
pub use ethtool::{Channels, DriverInfo, LinkSettings};
pub use sys::{packet_socket, IfReq, IFNAME_MAX};

use crate::ethdev::Link;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use sys::Sockios;

/// One address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The name of the interface that holds it.
    pub iface: String,
    /// The address (IPv4 or IPv6).
    pub addr: IpAddr,
}

/// Every IPv4 and IPv6 address of every interface in the calling thread's network
/// namespace (`getifaddrs(3)`); needs no privilege.
pub fn addresses() -> Result<Vec<Address>, NetifError> {
    let list = sys::addresses().map_err(|source| NetifError::Addresses { source })?;
    Ok(list
        .into_iter()
        .map(|(iface, addr)| Address { iface, addr })
        .collect())
}

/// Interface flags as `SIOCGIFFLAGS` reports them (`IFF_*`, the low 16 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// The raw bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Administratively up (`IFF_UP`).
    pub fn is_up(self) -> bool {
        self.has(libc::IFF_UP)
    }

    /// Up with carrier (`IFF_RUNNING`).
    pub fn is_running(self) -> bool {
        self.has(libc::IFF_RUNNING)
    }

    /// Receives every frame (`IFF_PROMISC`).
    pub fn is_promisc(self) -> bool {
        self.has(libc::IFF_PROMISC)
    }

    fn has(self, flag: libc::c_int) -> bool {
        i32::from(self.0) & flag != 0
    }
}

/// A network interface, named and found in the network namespace of the socket its
/// requests go through. Changes (MTU, flags, MAC) need `CAP_NET_ADMIN`; reading does not.
#[derive(Debug)]
pub struct Interface {
    name: String,
    index: u32,
    sock: OwnedFd,
}

impl Interface {
    /// Finds interface `name` in the calling thread's network namespace, with a datagram
    /// socket of its own for the requests (needs no privilege).
    pub fn by_name(name: &str) -> Result<Interface, NetifError> {
        sys::IfReq::new(name)?;
        let sock = sys::control_socket().map_err(|source| NetifError::Socket { source })?;
        Interface::by_name_on(sock, name)
    }

    /// Finds interface `name` in the network namespace of `sock`, which then carries the
    /// requests: e.g. an `AF_PACKET` socket from [`packet_socket`], whose opening checks
    /// `CAP_NET_RAW` first and which can hold the promiscuous membership
    /// ([`Interface::set_packet_promisc`]).
    pub fn by_name_on(sock: OwnedFd, name: &str) -> Result<Interface, NetifError> {
        let mut iface = Interface {
            name: name.to_owned(),
            index: 0,
            sock,
        };
        iface.index = iface.lookup_index()?;
        Ok(iface)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index (`if_nametoindex`), as found when opened.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The socket requests go through.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Whether an interface of this name is still in the socket's network namespace
    /// (false once it is deleted or moved to another namespace).
    pub fn exists(&self) -> bool {
        self.lookup_index().is_ok()
    }

    /// The flags now.
    pub fn flags(&self) -> Result<Flags, NetifError> {
        let r = self.request(Sockios::GetFlags, |_| {})?;
        Ok(Flags(r.flags() as u16))
    }

    /// Brings the interface up, or takes it down.
    pub fn set_up(&self, up: bool) -> Result<(), NetifError> {
        self.update_flags(libc::IFF_UP, up)
    }

    /// Turns the interface's promiscuous flag on or off (`ip link set ... promisc`). It
    /// stays as set when the process ends; see [`Interface::set_packet_promisc`] for a
    /// setting that does not.
    pub fn set_promisc(&self, on: bool) -> Result<(), NetifError> {
        self.update_flags(libc::IFF_PROMISC, on)
    }

    /// Adds (`on`) or drops a promiscuous membership of the `AF_PACKET` socket `sock` on
    /// this interface (`PACKET_MR_PROMISC`): the interface is promiscuous while any
    /// socket holds one, and the kernel drops it when the socket closes, also on a crash.
    pub fn set_packet_promisc(&self, sock: BorrowedFd<'_>, on: bool) -> Result<(), NetifError> {
        sys::packet_promisc(sock, self.index, on).map_err(|e| {
            let request = if on {
                "PACKET_ADD_MEMBERSHIP"
            } else {
                "PACKET_DROP_MEMBERSHIP"
            };
            NetifError::from_os(&self.name, request, e)
        })
    }

    /// The MTU (bytes of payload after the Ethernet header).
    pub fn mtu(&self) -> Result<u32, NetifError> {
        let r = self.request(Sockios::GetMtu, |_| {})?;
        Ok(u32::try_from(r.mtu()).unwrap_or(0))
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), NetifError> {
        let mtu = libc::c_int::try_from(mtu).map_err(|_| NetifError::OutOfRange {
            name: self.name.clone(),
            what: "MTU",
            value: u64::from(mtu),
        })?;
        self.request(Sockios::SetMtu, |r| r.set_mtu(mtu)).map(drop)
    }

    /// The hardware (MAC) address.
    pub fn mac(&self) -> Result<[u8; 6], NetifError> {
        Ok(self.request(Sockios::GetHwaddr, |_| {})?.hwaddr())
    }

    /// Sets the hardware (MAC) address of an Ethernet interface.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), NetifError> {
        self.request(Sockios::SetHwaddr, |r| r.set_hwaddr(mac))
            .map(drop)
    }

    /// Speed and duplex (`ETHTOOL_GSET`); fails on devices whose driver does not say.
    pub fn link_settings(&self) -> Result<LinkSettings, NetifError> {
        self.ethtool::<ethtool::EthtoolCmd>("ETHTOOL_GSET")
            .map(LinkSettings::from)
    }

    /// The link as a port reports it: up when the interface is up and running (has
    /// carrier), with the speed and duplex the driver gives (0 and half when it gives
    /// none); down (the default [`Link`]) otherwise, or if the flags cannot be read.
    pub fn link(&self) -> Link {
        match self.flags() {
            Ok(f) if f.is_up() && f.is_running() => {
                let s = self.link_settings().unwrap_or_default();
                Link {
                    up: true,
                    speed_mbps: s.speed_mbps,
                    full_duplex: s.full_duplex,
                }
            }
            _ => Link::default(),
        }
    }

    /// Queue (channel) counts (`ETHTOOL_GCHANNELS`); fails on devices whose driver does
    /// not report them (`EOPNOTSUPP`).
    pub fn channels(&self) -> Result<Channels, NetifError> {
        self.ethtool::<ethtool::EthtoolChannels>("ETHTOOL_GCHANNELS")
            .map(Channels::from)
    }

    /// The kernel driver and bus of the interface (`ETHTOOL_GDRVINFO`).
    pub fn driver_info(&self) -> Result<DriverInfo, NetifError> {
        self.ethtool::<ethtool::EthtoolDrvinfo>("ETHTOOL_GDRVINFO")
            .map(DriverInfo::from)
    }

    fn lookup_index(&self) -> Result<u32, NetifError> {
        let r = self.request(Sockios::GetIndex, |_| {})?;
        u32::try_from(r.index()).map_err(|_| NetifError::NotFound {
            name: self.name.clone(),
            request: Sockios::GetIndex.name(),
        })
    }

    /// Sets (`on`) or clears flag bits `mask`, if they are not so already.
    fn update_flags(&self, mask: libc::c_int, on: bool) -> Result<(), NetifError> {
        let old = self.flags()?.bits();
        let mask = mask as u16;
        let new = if on { old | mask } else { old & !mask };
        if new == old {
            return Ok(());
        }
        self.request(Sockios::SetFlags, |r| r.set_flags(new as libc::c_short))
            .map(drop)
    }

    /// Makes `request` with an `ifreq` for this interface that `fill` prepared; returns
    /// the `ifreq` as the kernel left it.
    fn request(
        &self,
        request: Sockios,
        fill: impl FnOnce(&mut IfReq),
    ) -> Result<IfReq, NetifError> {
        let mut r = IfReq::new(&self.name)?;
        fill(&mut r);
        sys::sockios(self.socket(), request, &mut r)
            .map_err(|e| NetifError::from_os(&self.name, request.name(), e))?;
        Ok(r)
    }

    fn ethtool<T: ethtool::Command>(&self, what: &'static str) -> Result<T, NetifError> {
        let mut r = IfReq::new(&self.name)?;
        let mut block = T::request();
        sys::ethtool(self.socket(), &mut r, &mut block)
            .map_err(|e| NetifError::from_os(&self.name, what, e))?;
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_reads() {
        // Every network namespace has `lo`, and reading it needs no privilege.
        let lo = Interface::by_name("lo").unwrap();
        assert_eq!(lo.name(), "lo");
        assert!(lo.index() > 0);
        assert!(lo.exists());
        assert!(lo.mtu().unwrap() >= 1280);
        assert_eq!(lo.mac().unwrap(), [0; 6]);
        // No ethtool link settings on a loopback device: an error, not a panic.
        let _ = lo.link_settings();
        let up = lo.flags().unwrap().is_up();
        assert_eq!(lo.link().up, up && lo.flags().unwrap().is_running());
    }

    #[test]
    fn missing_and_invalid_names_are_typed() {
        match Interface::by_name("pmdnetifnosuch0") {
            Err(NetifError::NotFound { name, request }) => {
                assert_eq!(
                    (name.as_str(), request),
                    ("pmdnetifnosuch0", "SIOCGIFINDEX")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Interface::by_name("far-too-long-a-name"),
            Err(NetifError::InvalidName { .. })
        ));
        assert!(matches!(
            Interface::by_name(""),
            Err(NetifError::InvalidName { .. })
        ));
    }

    /// The changes, on the loopback device of a private network namespace.
    #[test]
    fn loopback_changes_in_a_private_namespace() {
        const TEST: &str = "loopback_changes_in_a_private_namespace";
        if !pmd_testkit::require(
            TEST,
            pmd_testkit::root_missing("a private network namespace"),
        ) {
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: moves only this thread into a new, empty network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let lo = Interface::by_name_on(packet_socket().unwrap(), "lo").unwrap();
            assert!(!lo.flags().unwrap().is_up(), "lo starts down");
            assert!(!lo.link().up);
            lo.set_up(true).unwrap();
            assert!(lo.flags().unwrap().is_up());
            lo.set_mtu(9000).unwrap();
            assert_eq!(lo.mtu().unwrap(), 9000);
            assert!(matches!(
                lo.set_mtu(u32::MAX),
                Err(NetifError::OutOfRange { .. })
            ));
            lo.set_promisc(true).unwrap();
            assert!(lo.flags().unwrap().is_promisc());
            lo.set_promisc(false).unwrap();
            assert!(!lo.flags().unwrap().is_promisc());
            lo.set_packet_promisc(lo.socket(), true).unwrap();
            lo.set_packet_promisc(lo.socket(), false).unwrap();
            lo.set_up(false).unwrap();
            assert!(!lo.flags().unwrap().is_up());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn loopback_addresses_are_listed() {
        // Nothing but `lo` and its addresses is certain on a host; both are in the list
        // whenever `lo` is up.
        let all = addresses().unwrap();
        if Interface::by_name("lo").unwrap().flags().unwrap().is_up() {
            assert!(
                all.iter()
                    .any(|a| a.iface == "lo" && a.addr == IpAddr::from([127, 0, 0, 1])),
                "{all:?}"
            );
        }
        assert!(all.iter().all(|a| !a.iface.is_empty()));
    }

    #[test]
    fn flag_bits() {
        let f = Flags((libc::IFF_UP | libc::IFF_PROMISC) as u16);
        assert!(f.is_up() && f.is_promisc() && !f.is_running());
        assert_eq!(Flags::default().bits(), 0);
    }
}
