//! The system calls behind [`super::Interface`]: the sockets that carry interface
//! requests, the `struct ifreq` ioctls (`linux/sockios.h`), `SIOCETHTOOL`, the
//! `AF_PACKET` promiscuous membership, and the address list (`getifaddrs(3)`). Every
//! `unsafe` block of the module is here.

use super::ethtool;
use super::NetifError;
use crate::unix::{check, owned_fd};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Longest interface name, in bytes (`IFNAMSIZ` less the terminating NUL).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

const _: () = assert!(size_of::<libc::ifreq>() == 40);

/// Opens a datagram socket that receives nothing and serves for interface requests in
/// the caller's network namespace (needs no privilege).
pub(super) fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers and returns a new descriptor.
    unsafe {
        owned_fd(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))
    }
}

/// Opens an `AF_PACKET` raw socket with protocol 0: it receives nothing until bound with
/// one, and serves for interface requests and promiscuous memberships. Needs
/// `CAP_NET_RAW` (`EPERM` without).
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers and returns a new descriptor.
    unsafe {
        owned_fd(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0,
        ))
    }
}

/// A `struct ifreq`: an interface name and the value of one request.
///
/// For the interface requests [`super::Interface`] makes, and for drivers' own ioctls that
/// take one (`TUNSETIFF`, `TUNGETIFF`) through [`IfReq::as_mut_ptr`].
#[derive(Clone, Copy)]
pub struct IfReq(libc::ifreq);

impl std::fmt::Debug for IfReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfReq").field("name", &self.name()).finish()
    }
}

impl IfReq {
    /// A request about interface `name`, its value zero. A `%d` in the name is left for
    /// the kernel to fill in where a request creates an interface.
    pub fn new(name: &str) -> Result<IfReq, NetifError> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > IFNAME_MAX || b.contains(&0) {
            return Err(NetifError::InvalidName { name: name.into() });
        }
        // SAFETY: `struct ifreq` is a name array and a union of integers, arrays,
        // `sockaddr`s and a pointer, for all of which all-zero bytes are a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in r.ifr_name.iter_mut().zip(b) {
            *d = *s as libc::c_char;
        }
        Ok(IfReq(r))
    }

    /// The interface name (as the kernel wrote it back, for requests that do).
    pub fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .0
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The flags member (`IFF_*`).
    pub fn flags(&self) -> libc::c_short {
        // SAFETY: every byte of the union is initialised (zeroed in `new`, then written
        // by us or the kernel), and any bits are a valid `c_short`.
        unsafe { self.0.ifr_ifru.ifru_flags }
    }

    /// Sets the flags member.
    pub fn set_flags(&mut self, flags: libc::c_short) {
        self.0.ifr_ifru.ifru_flags = flags;
    }

    /// The index member.
    pub(super) fn index(&self) -> libc::c_int {
        // SAFETY: as in `flags`, for a `c_int`.
        unsafe { self.0.ifr_ifru.ifru_ifindex }
    }

    /// The MTU member.
    pub(super) fn mtu(&self) -> libc::c_int {
        // SAFETY: as in `flags`, for a `c_int`.
        unsafe { self.0.ifr_ifru.ifru_mtu }
    }

    /// Sets the MTU member.
    pub(super) fn set_mtu(&mut self, mtu: libc::c_int) {
        self.0.ifr_ifru.ifru_mtu = mtu;
    }

    /// The first six bytes of the hardware address member.
    pub(super) fn hwaddr(&self) -> [u8; 6] {
        // SAFETY: as in `flags`, for a `sockaddr` (integers only).
        let sa = unsafe { self.0.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        mac
    }

    /// Sets the hardware address member to the Ethernet address `mac`.
    pub(super) fn set_hwaddr(&mut self, mac: [u8; 6]) {
        // SAFETY: as in `flags`, for a `sockaddr`.
        let mut sa = unsafe { self.0.ifr_ifru.ifru_hwaddr };
        sa.sa_family = libc::ARPHRD_ETHER;
        sa.sa_data = [0; 14];
        for (d, s) in sa.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
        self.0.ifr_ifru.ifru_hwaddr = sa;
    }

    /// The `struct ifreq`, for an ioctl on another kind of descriptor.
    pub fn as_mut_ptr(&mut self) -> *mut libc::ifreq {
        &mut self.0
    }
}

/// The `linux/sockios.h` requests that read or write one `struct ifreq` and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sockios {
    GetIndex,
    GetFlags,
    SetFlags,
    GetMtu,
    SetMtu,
    GetHwaddr,
    SetHwaddr,
}

impl Sockios {
    fn number(self) -> libc::c_ulong {
        match self {
            Sockios::GetIndex => libc::SIOCGIFINDEX,
            Sockios::GetFlags => libc::SIOCGIFFLAGS,
            Sockios::SetFlags => libc::SIOCSIFFLAGS,
            Sockios::GetMtu => libc::SIOCGIFMTU,
            Sockios::SetMtu => libc::SIOCSIFMTU,
            Sockios::GetHwaddr => libc::SIOCGIFHWADDR,
            Sockios::SetHwaddr => libc::SIOCSIFHWADDR,
        }
    }

    /// The request's name, for errors.
    pub(super) fn name(self) -> &'static str {
        match self {
            Sockios::GetIndex => "SIOCGIFINDEX",
            Sockios::GetFlags => "SIOCGIFFLAGS",
            Sockios::SetFlags => "SIOCSIFFLAGS",
            Sockios::GetMtu => "SIOCGIFMTU",
            Sockios::SetMtu => "SIOCSIFMTU",
            Sockios::GetHwaddr => "SIOCGIFHWADDR",
            Sockios::SetHwaddr => "SIOCSIFHWADDR",
        }
    }
}

/// `ioctl(sock, request, req)`.
pub(super) fn sockios(sock: BorrowedFd<'_>, request: Sockios, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: each `Sockios` request reads and/or writes one `struct ifreq` and nothing
    // it points to; `req` is one, alive and writable for the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request.number() as _, req.as_mut_ptr()) })
        .map(drop)
}

/// `SIOCETHTOOL` on `req`'s interface with the command block `block`.
pub(super) fn ethtool<T: ethtool::Command>(
    sock: BorrowedFd<'_>,
    req: &mut IfReq,
    block: &mut T,
) -> io::Result<()> {
    req.0.ifr_ifru.ifru_data = (block as *mut T).cast();
    // SAFETY: SIOCETHTOOL reads the command from the block `ifr_data` points to and writes
    // at most that command's block back; `T: Command` is such a block (checked sizes,
    // integers only), alive and writable for the call, and `req` is a live `ifreq`.
    let rc =
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, req.as_mut_ptr()) });
    req.0.ifr_ifru.ifru_data = std::ptr::null_mut();
    rc.map(drop)
}

/// Adds (`on`) or drops a `PACKET_MR_PROMISC` membership of the `AF_PACKET` socket `sock`
/// on interface `ifindex`.
pub(super) fn packet_promisc(sock: BorrowedFd<'_>, ifindex: u32, on: bool) -> io::Result<()> {
    let mreq = libc::packet_mreq {
        mr_ifindex: libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let opt = if on {
        libc::PACKET_ADD_MEMBERSHIP
    } else {
        libc::PACKET_DROP_MEMBERSHIP
    };
    // SAFETY: passes a live `packet_mreq` of the size given; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (&mreq as *const libc::packet_mreq).cast(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Every IPv4 and IPv6 address of every interface (`getifaddrs(3)`), with the name of
/// the interface that holds it, in the calling thread's network namespace.
pub(super) fn addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocated into `head`; the list is
    // freed below with freeifaddrs, once.
    check(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a `sockaddr` at least as large as its
        // family's, so `sa_family` can be read and, for AF_INET and AF_INET6, the whole
        // `sockaddr_in`/`sockaddr_in6`.
        let addr = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        out.push((name.to_string_lossy().into_owned(), addr));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; nothing
    // borrowed from the list outlives this call.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_names() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("abcdefghijklmnop").is_err());
        assert!(IfReq::new("a\0b").is_err());
        assert_eq!(IfReq::new("dtap0").unwrap().name(), "dtap0");
        assert_eq!(
            IfReq::new("abcdefghijklmno").unwrap().name(),
            "abcdefghijklmno"
        );
    }

    #[test]
    fn ifreq_members() {
        let mut r = IfReq::new("eth0").unwrap();
        assert_eq!((r.flags(), r.index(), r.mtu()), (0, 0, 0));
        r.set_flags(libc::IFF_UP as libc::c_short);
        assert_eq!(r.flags(), libc::IFF_UP as libc::c_short);
        r.set_mtu(9000);
        assert_eq!(r.mtu(), 9000);
        r.set_hwaddr([2, 0, 0, 0, 0x77, 1]);
        assert_eq!(r.hwaddr(), [2, 0, 0, 0, 0x77, 1]);
        assert_eq!(r.name(), "eth0");
    }
}
