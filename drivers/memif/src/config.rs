//! Vdev argument parsing and validation, with DPDK's `net_memif` names and defaults.

use crate::proto::{MAX_LOG2_RING_SIZE, SECRET_SIZE};
use crate::sock::SockAddr;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use std::path::{Path, PathBuf};

/// Argument keys the driver accepts.
pub(crate) const KNOWN_ARGS: &[&str] = &[
    "role",
    "id",
    "socket",
    "socket-abstract",
    "rsize",
    "bsize",
    "mac",
    "secret",
    "zero-copy",
];

/// DPDK's default socket.
pub const DEFAULT_SOCKET: &str = "/run/memif.sock";
/// Default ring size, log2 (1024 descriptors).
pub const DEFAULT_RSIZE: u8 = 10;
/// Default packet buffer size.
pub const DEFAULT_BSIZE: u16 = 2048;

/// Which end of the connection this interface is (memif 2.0 names; DPDK also accepts the
/// old `master`/`slave`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Listens on the socket; maps the regions the client provides.
    Server,
    /// Connects (and reconnects); creates the regions, rings and buffers.
    Client,
}

impl Role {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Connection role.
    pub role: Role,
    /// Interface id (the server matches the client's INIT against it).
    pub id: u32,
    /// Control socket address.
    pub socket: SockAddr,
    /// Ring size (log2) the client asks for; the server accepts up to 14.
    pub rsize: u8,
    /// Packet buffer size (client role; the server uses what the client's descriptors say).
    pub bsize: u16,
    /// MAC address reported for the port.
    pub mac: MacAddr,
    /// Shared secret (INIT), if any.
    pub secret: Option<String>,
    /// Client: share the pools' packet buffers with the server instead of copying
    /// (`zero-copy=yes`).
    pub zero_copy: bool,
}

/// A locally administered MAC from the process id and the device name's number, like
/// DPDK's random default but stable within a run.
fn default_mac(name: &str) -> MacAddr {
    let n: u16 = name
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    let pid = std::process::id();
    let [_, _, p1, p0] = pid.to_be_bytes();
    let [n1, n0] = n.to_be_bytes();
    MacAddr([0x02, 0xfe, p1 ^ n1, p0, 0, n0])
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let role = vdev
            .get("role")
            .choice(&[
                (&["server", "master"], Role::Server),
                (&["client", "slave"], Role::Client),
            ])?
            .unwrap_or(Role::Client);
        let id: u32 = vdev.get("id").parse()?.unwrap_or(0);
        // The ring size is 2^rsize.
        let rsize = vdev
            .get("rsize")
            .int_in(1..=MAX_LOG2_RING_SIZE)?
            .unwrap_or(DEFAULT_RSIZE);
        let bsize = vdev
            .get("bsize")
            .int_in(64..=u16::MAX)?
            .unwrap_or(DEFAULT_BSIZE);
        let abstract_ns = vdev.get("socket-abstract").yes_no()?.unwrap_or(true);
        let path = vdev.arg("socket").unwrap_or(DEFAULT_SOCKET);
        if path.is_empty() || path.len() > SockAddr::MAX_LEN || path.contains('\0') {
            return Err(bad(format!(
                "socket={path:?}: give a non-empty name of at most {} bytes",
                SockAddr::MAX_LEN
            )));
        }
        let socket = if abstract_ns {
            SockAddr::Abstract(path.to_string())
        } else {
            let p = PathBuf::from(path);
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(bad(format!(
                        "socket={path}: directory {} does not exist; create it or pick another path",
                        dir.display()
                    )));
                }
            }
            SockAddr::Path(if p.is_relative() {
                Path::new(".").join(p)
            } else {
                p
            })
        };
        let mac = match vdev.get("mac").parse::<MacAddr>()? {
            Some(m) => m,
            None => default_mac(&vdev.name),
        };
        let secret = vdev.arg("secret").map(str::to_string);
        if let Some(s) = &secret {
            if s.is_empty() || s.len() >= SECRET_SIZE {
                return Err(bad(format!(
                    "secret is {} bytes: use 1..={} bytes",
                    s.len(),
                    SECRET_SIZE - 1
                )));
            }
        }
        let zero_copy = vdev.get("zero-copy").yes_no()?.unwrap_or(false);
        if zero_copy && role == Role::Server {
            return Err(bad(
                "zero-copy=yes is for role=client (the client's buffers are shared); drop it here"
                    .into(),
            ));
        }
        Ok(Config {
            role,
            id,
            socket,
            rsize,
            bsize,
            mac,
            secret,
            zero_copy,
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
    fn defaults_are_dpdks() {
        let c = parse("net_memif0").unwrap();
        assert_eq!(c.role, Role::Client);
        assert_eq!(c.id, 0);
        assert_eq!(c.socket, SockAddr::Abstract(DEFAULT_SOCKET.into()));
        assert_eq!((c.rsize, c.bsize), (10, 2048));
        assert_eq!(c.secret, None);
        assert_eq!(c.mac.0[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn all_args() {
        let c = parse(
            "net_memif3,role=server,id=7,socket=/tmp/x.sock,socket-abstract=no,rsize=12,bsize=1024,mac=02:00:00:00:00:09,secret=abc,zero-copy=no",
        )
        .unwrap();
        assert_eq!(c.role, Role::Server);
        assert_eq!(c.id, 7);
        assert_eq!(c.socket, SockAddr::Path("/tmp/x.sock".into()));
        assert_eq!((c.rsize, c.bsize), (12, 1024));
        assert_eq!(c.mac, MacAddr::local(9));
        assert_eq!(c.secret.as_deref(), Some("abc"));
        assert!(!c.zero_copy);
        assert!(parse("net_memif0,zero-copy=yes").unwrap().zero_copy);
        assert_eq!(parse("net_memif0,role=master").unwrap().role, Role::Server);
        assert_eq!(parse("net_memif0,role=slave").unwrap().role, Role::Client);
    }

    #[test]
    fn bad_args_are_named() {
        assert!(err("net_memif0,role=boss").contains("role=boss"));
        assert!(err("net_memif0,rsize=0").contains("rsize=0"));
        assert!(err("net_memif0,rsize=15").contains("1..=14"));
        assert!(err("net_memif0,bsize=10").contains("bsize=10"));
        assert!(err("net_memif0,bsize=70000").contains("'bsize'"));
        assert!(err("net_memif0,id=-1").contains("'id'"));
        assert!(err("net_memif0,socket-abstract=maybe").contains("yes or no"));
        assert!(
            err("net_memif0,socket=/nonexistent-dir/x.sock,socket-abstract=no")
                .contains("does not exist")
        );
        assert!(err(&format!("net_memif0,socket=/{}", "a".repeat(120))).contains("at most"));
        assert!(err("net_memif0,secret=0123456789012345678901234").contains("secret"));
        assert!(err("net_memif0,role=server,zero-copy=yes").contains("role=client"));
        let e = err("net_memif0,bogus=1");
        assert!(e.contains("'bogus'") && e.contains("'role'"), "{e}");
    }
}
