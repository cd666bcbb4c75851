//! The parts of the example apps that are worth testing without ports, kept out of their
//! `main`s:
//!
//! - [`nat`]: the NAT44's state (flow tables, public ports) and its per-frame
//!   translation, on `pmd-flow` and `pmd-net`; the `nat44` binary wraps it in a port loop.
//!
//! The apps themselves are the binaries in `src/bin/`: `skeleton` (forwarding, the
//! smallest complete app) and `nat44`.

pub mod nat;
