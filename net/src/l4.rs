//! UDP and TCP headers: ports, and their checksums kept right when ports or the
//! addresses of the pseudo-header change (NAT).

use crate::{need, NetError};
use pmd_core::csum;

/// A UDP header at the start of `buf` (the IP payload).
#[derive(Debug)]
pub struct Udp<T>(T);

/// A TCP header at the start of `buf` (the IP payload).
#[derive(Debug)]
pub struct Tcp<T>(T);

/// Where the checksum field is in each header.
const UDP_CSUM: usize = 6;
const TCP_CSUM: usize = 16;

macro_rules! ports {
    ($t:ident, $min:expr, $csum:expr, $zero_means_none:expr) => {
        impl<T: AsRef<[u8]>> $t<T> {
            /// A view of `buf`, which must hold the fixed header.
            pub fn new(buf: T) -> Result<$t<T>, NetError> {
                need(buf.as_ref(), $min)?;
                Ok($t(buf))
            }

            /// Source port.
            pub fn src_port(&self) -> u16 {
                let b = self.0.as_ref();
                u16::from_be_bytes([b[0], b[1]])
            }

            /// Destination port.
            pub fn dst_port(&self) -> u16 {
                let b = self.0.as_ref();
                u16::from_be_bytes([b[2], b[3]])
            }

            /// The checksum field.
            pub fn checksum(&self) -> u16 {
                let b = self.0.as_ref();
                u16::from_be_bytes([b[$csum], b[$csum + 1]])
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $t<T> {
            fn update(&mut self, at: usize, old: &[u8], new: &[u8]) {
                let b = self.0.as_mut();
                let c = u16::from_be_bytes([b[$csum], b[$csum + 1]]);
                // A zero UDP checksum means "none" and stays so.
                if !($zero_means_none && c == 0) {
                    let mut n = csum::update(c, old, new);
                    if $zero_means_none && n == 0 {
                        n = 0xffff;
                    }
                    b[$csum..$csum + 2].copy_from_slice(&n.to_be_bytes());
                }
                if at != usize::MAX {
                    b[at..at + new.len()].copy_from_slice(new);
                }
            }

            /// Sets the source port, updating the checksum.
            pub fn set_src_port(&mut self, p: u16) {
                let old = self.src_port().to_be_bytes();
                self.update(0, &old, &p.to_be_bytes());
            }

            /// Sets the destination port, updating the checksum.
            pub fn set_dst_port(&mut self, p: u16) {
                let old = self.dst_port().to_be_bytes();
                self.update(2, &old, &p.to_be_bytes());
            }

            /// Updates the checksum for an address of the pseudo-header that changed
            /// from `old` to `new` (after `Ipv4::set_src`/`set_dst`).
            pub fn replace_addr(&mut self, old: &[u8], new: &[u8]) {
                self.update(usize::MAX, old, new);
            }
        }
    };
}

ports!(Udp, 8, UDP_CSUM, true);
ports!(Tcp, 20, TCP_CSUM, false);
