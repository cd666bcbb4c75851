//! The virtio-net control commands (`VIRTIO_NET_F_CTRL_VQ`, virtio 1.x section 5.1.6.5)
//! and who runs them.
//!
//! A device that serves a control virtqueue itself (virtio-pci) gets each [`CtrlCommand`]
//! through [`queue::CtrlQueue`]. Transports whose back end does not serve the control
//! queue (vhost-user: back ends leave it to the VMM) execute the same commands themselves,
//! see `transport::CtrlMode::Emulated`.

pub mod queue;

/// Control class: receive filtering (needs `VIRTIO_NET_F_CTRL_RX`).
pub const VIRTIO_NET_CTRL_RX: u8 = 0;
/// `VIRTIO_NET_CTRL_RX` command: promiscuous mode on/off (data: one byte, 0 or 1).
pub const VIRTIO_NET_CTRL_RX_PROMISC: u8 = 0;
/// `VIRTIO_NET_CTRL_RX` command: all-multicast on/off (data: one byte, 0 or 1).
pub const VIRTIO_NET_CTRL_RX_ALLMULTI: u8 = 1;
/// Control class: multiqueue (needs `VIRTIO_NET_F_MQ`).
pub const VIRTIO_NET_CTRL_MQ: u8 = 4;
/// `VIRTIO_NET_CTRL_MQ` command: number of queue pairs in use (data: le16).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
/// Ack: the command succeeded.
pub const VIRTIO_NET_OK: u8 = 0;
/// Ack: the command failed.
pub const VIRTIO_NET_ERR: u8 = 1;
/// Smallest queue pair count `VQ_PAIRS_SET` accepts.
pub const VQ_PAIRS_MIN: u16 = 1;
/// Largest queue pair count `VQ_PAIRS_SET` accepts.
pub const VQ_PAIRS_MAX: u16 = 0x8000;

/// Entries of the control queue (QEMU's control queue has 64).
pub const CTRL_QUEUE_SIZE: u16 = 64;

/// A control command this driver issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlCommand {
    /// `VIRTIO_NET_CTRL_RX` / `PROMISC`: promiscuous mode on or off.
    Promisc(bool),
    /// `VIRTIO_NET_CTRL_RX` / `ALLMULTI`: receive all multicast on or off.
    AllMulti(bool),
    /// `VIRTIO_NET_CTRL_MQ` / `VQ_PAIRS_SET`: the number of queue pairs the device uses.
    VqPairsSet(u16),
}

impl CtrlCommand {
    /// The command class byte.
    pub fn class(&self) -> u8 {
        match self {
            CtrlCommand::Promisc(_) | CtrlCommand::AllMulti(_) => VIRTIO_NET_CTRL_RX,
            CtrlCommand::VqPairsSet(_) => VIRTIO_NET_CTRL_MQ,
        }
    }

    /// The command byte (within its class).
    pub fn command(&self) -> u8 {
        match self {
            CtrlCommand::Promisc(_) => VIRTIO_NET_CTRL_RX_PROMISC,
            CtrlCommand::AllMulti(_) => VIRTIO_NET_CTRL_RX_ALLMULTI,
            CtrlCommand::VqPairsSet(_) => VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
        }
    }

    /// The device-readable bytes: class, command, data.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.class(), self.command()];
        match *self {
            CtrlCommand::Promisc(on) | CtrlCommand::AllMulti(on) => v.push(u8::from(on)),
            CtrlCommand::VqPairsSet(n) => v.extend_from_slice(&n.to_le_bytes()),
        }
        v
    }
}

impl std::fmt::Display for CtrlCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtrlCommand::Promisc(on) => write!(f, "RX PROMISC {}", u8::from(*on)),
            CtrlCommand::AllMulti(on) => write!(f, "RX ALLMULTI {}", u8::from(*on)),
            CtrlCommand::VqPairsSet(n) => write!(f, "MQ VQ_PAIRS_SET {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bytes() {
        assert_eq!(CtrlCommand::Promisc(true).encode(), vec![0, 0, 1]);
        assert_eq!(CtrlCommand::Promisc(false).encode(), vec![0, 0, 0]);
        assert_eq!(CtrlCommand::AllMulti(true).encode(), vec![0, 1, 1]);
        assert_eq!(CtrlCommand::VqPairsSet(2).encode(), vec![4, 0, 2, 0]);
        assert_eq!(CtrlCommand::VqPairsSet(0x0102).encode(), vec![4, 0, 2, 1]);
    }
}
