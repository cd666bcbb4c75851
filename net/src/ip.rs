//! IPv4 and IPv6 headers.

use crate::{need, NetError};
use pmd_core::csum;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 header at the start of `buf`, its lengths checked against the buffer.
#[derive(Debug)]
pub struct Ipv4<T>(T);

impl<T: AsRef<[u8]>> Ipv4<T> {
    /// A view of `buf`: version 4, a header length of 20 to 60 bytes within the total
    /// length, and a total length within the buffer (the buffer may be longer: padding).
    pub fn new(buf: T) -> Result<Ipv4<T>, NetError> {
        let len = buf.as_ref().len();
        Self::new_chained(buf, len)
    }

    /// A view of the header at the start of `buf`, the first segment of a chained packet
    /// whose bytes from this header on number `l3_len` in all segments: the header must
    /// be in `buf`, the total length within `l3_len` ([`Ipv4::payload`] gives the part
    /// of the payload in `buf`).
    pub fn new_chained(buf: T, l3_len: usize) -> Result<Ipv4<T>, NetError> {
        let b = buf.as_ref();
        need(b, 20)?;
        if b[0] >> 4 != 4 {
            return Err(NetError::Malformed("not IPv4"));
        }
        let hl = usize::from(b[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if hl < 20 {
            return Err(NetError::Malformed("IPv4 header length below 20"));
        }
        if total < hl {
            return Err(NetError::Malformed(
                "IPv4 total length below its header length",
            ));
        }
        need(b, hl)?;
        if total > l3_len {
            return Err(NetError::Truncated {
                need: total,
                have: l3_len,
            });
        }
        Ok(Ipv4(buf))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0xf) * 4
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[2], self.b()[3]]))
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[10], self.b()[11]])
    }

    /// Whether the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        csum::ones_complement_sum(&self.b()[..self.header_len()]) == 0xffff
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.b()[12], self.b()[13], self.b()[14], self.b()[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.b()[16], self.b()[17], self.b()[18], self.b()[19])
    }

    /// Whether this is a fragment: more fragments follow, or it is not the first.
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.b()[6], self.b()[7]]) & 0x3fff != 0
    }

    /// Whether this is a fragment other than the first (its payload has no L4 header).
    pub fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes([self.b()[6], self.b()[7]]) & 0x1fff != 0
    }

    /// The payload (up to the total length, or the end of the buffer for a chained
    /// packet's first segment).
    pub fn payload(&self) -> &[u8] {
        let b = self.b();
        &b[self.header_len()..self.total_len().min(b.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4<T> {
    fn set_field(&mut self, at: usize, new: &[u8]) {
        let b = self.0.as_mut();
        let c = u16::from_be_bytes([b[10], b[11]]);
        let c = csum::update(c, &b[at..at + new.len()], new);
        b[at..at + new.len()].copy_from_slice(new);
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Decrements the TTL, updating the header checksum; false (and nothing changed) if
    /// the TTL is already 0 or 1 (the packet must not be forwarded).
    #[inline]
    pub fn decrement_ttl(&mut self) -> bool {
        let b = self.0.as_mut();
        if b[8] <= 1 {
            return false;
        }
        b[8] -= 1;
        // The TTL is the high byte of a 16-bit word of the sum: the word fell by 0x100,
        // so (RFC 1624, eqn. 3) the checksum rises by 0x100, with end-around carry.
        let c = u32::from(u16::from_be_bytes([b[10], b[11]])) + 0x100;
        let c = (c + (c >> 16)) as u16;
        b[10..12].copy_from_slice(&c.to_be_bytes());
        true
    }

    /// Sets the source address, updating the header checksum; returns the old one (an
    /// L4 checksum covering it needs the same change: [`crate::Udp::replace_addr`]).
    pub fn set_src(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.src();
        self.set_field(12, &a.octets());
        old
    }

    /// Sets the destination address, as [`Ipv4::set_src`].
    pub fn set_dst(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst();
        self.set_field(16, &a.octets());
        old
    }

    /// The payload, writable (to edit the L4 header in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        let b = self.0.as_mut();
        let end = tl.min(b.len());
        &mut b[hl..end]
    }
}

/// An IPv6 header at the start of `buf`.
#[derive(Debug)]
pub struct Ipv6<T>(T);

impl<T: AsRef<[u8]>> Ipv6<T> {
    /// A view of `buf`: version 6, the 40-byte header and its payload length within the
    /// buffer.
    pub fn new(buf: T) -> Result<Ipv6<T>, NetError> {
        let len = buf.as_ref().len();
        Self::new_chained(buf, len)
    }

    /// A view of the header at the start of `buf`, the first segment of a chained packet
    /// whose bytes from this header on number `l3_len` in all segments (as
    /// [`Ipv4::new_chained`]).
    pub fn new_chained(buf: T, l3_len: usize) -> Result<Ipv6<T>, NetError> {
        let b = buf.as_ref();
        need(b, 40)?;
        if b[0] >> 4 != 6 {
            return Err(NetError::Malformed("not IPv6"));
        }
        let total = 40 + usize::from(u16::from_be_bytes([b[4], b[5]]));
        if total > l3_len {
            return Err(NetError::Truncated {
                need: total,
                have: l3_len,
            });
        }
        Ok(Ipv6(buf))
    }

    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// Payload length.
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[4], self.b()[5]]))
    }

    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.b()[6]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.b()[8..24]).unwrap_or_default())
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.b()[24..40]).unwrap_or_default())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6<T> {
    /// Decrements the hop limit (IPv6 has no header checksum); false if it is 0 or 1.
    pub fn decrement_hop_limit(&mut self) -> bool {
        let b = self.0.as_mut();
        if b[7] <= 1 {
            return false;
        }
        b[7] -= 1;
        true
    }
}
