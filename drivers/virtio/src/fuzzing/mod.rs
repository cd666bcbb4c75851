//! Bodies of the fuzz targets that play a hostile device or back end against this
//! driver (`fuzz/fuzz_targets/`), each shared with a fixed-seed unit test:
//!
//! - [`vhost_user`]: the replies a vhost-user back end sends the front end;
//! - [`virtqueue`]: the used ring (split) and the descriptor ring (packed) the device
//!   writes between the driver's operations.
//!
//! The virtio-net header path has its body next to the code it checks
//! ([`crate::net::hdr::fuzz_rx_hdr`]).

pub mod vhost_user;
pub mod virtqueue;

/// A deterministic input generator for the fixed-seed tests (xorshift64).
#[cfg(test)]
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
