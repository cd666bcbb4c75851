//! The Ethernet header: MAC addresses and the outer ethertype.

use crate::{need, NetError};
pub use pmd_core::ethdev::MacAddr;

/// An Ethernet header at the start of `buf`.
#[derive(Debug)]
pub struct Ether<T>(T);

impl<T: AsRef<[u8]>> Ether<T> {
    /// A view of `buf`, which must hold the 14-byte header.
    pub fn new(buf: T) -> Result<Ether<T>, NetError> {
        need(buf.as_ref(), 14)?;
        Ok(Ether(buf))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.b()[0..6].try_into().unwrap_or_default())
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        MacAddr(self.b()[6..12].try_into().unwrap_or_default())
    }

    /// The ethertype after the addresses (a VLAN TPID for a tagged frame).
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.b()[12], self.b()[13]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ether<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, m: MacAddr) {
        self.0.as_mut()[0..6].copy_from_slice(&m.0);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, m: MacAddr) {
        self.0.as_mut()[6..12].copy_from_slice(&m.0);
    }

    /// Swaps source and destination (testpmd's macswap).
    pub fn swap_macs(&mut self) {
        let b = self.0.as_mut();
        let (d, s) = b[..12].split_at_mut(6);
        d.swap_with_slice(s);
    }
}
