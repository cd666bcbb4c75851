//! The parts of the example apps that are worth testing without ports, kept out of their
//! `main`s:
//!
//! - [`nat`]: the NAT44's state (flow tables, public ports) and its per-frame
//!   translation, on `pmd-flow` and `pmd-net`; the `nat44` binary wraps it in a port loop.
//! - [`lb`]: the layer-4 load balancer's state (a flow table of connections, the
//!   backends) and its per-frame rewrite; the `lb` binary wraps it in the same loop.
//! - [`packet`]: what both do alike: find a frame's UDP/TCP 5-tuple, rewrite an address
//!   and port with the checksums updated incrementally, say what became of the frame,
//!   keep a flow table on one thread.
//! - [`app`]: what their binaries share: option parsers, the start, the port loop.
//!
//! The apps themselves are the binaries in `src/bin/`: `skeleton` (forwarding, the
//! smallest complete app), `nat44` and `lb`.

pub mod app;
pub mod lb;
pub mod nat;
pub mod packet;

#[cfg(test)]
mod test_frames;
