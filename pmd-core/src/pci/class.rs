//! PCI class codes: which devices are network controllers, and a name for the others, so
//! a wrong address is refused before anything binds or opens it.
//!
//! The 24-bit class code (sysfs `class`, config space offset 0x09) is base class, subclass
//! and programming interface, one byte each; base class 0x02 is "network controller"
//! (PCI Code and ID Assignment Specification, appendix D). A leaf module: the errors
//! carry a [`ClassCode`]; [`super::sysfs::class_code`] reads one.

/// Base class of network controllers.
pub const NETWORK_BASE_CLASS: u8 = 0x02;

/// A 24-bit PCI class code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCode(pub u32);

impl ClassCode {
    /// The base class (the top byte).
    pub fn base(self) -> u8 {
        (self.0 >> 16) as u8
    }

    /// The subclass (the middle byte).
    pub fn subclass(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// True for network controllers (base class 0x02).
    pub fn is_network(self) -> bool {
        self.base() == NETWORK_BASE_CLASS
    }

    /// What kind of device the class code stands for, e.g. `host bridge`,
    /// `mass storage controller`.
    pub fn describe(self) -> &'static str {
        match (self.base(), self.subclass()) {
            (0x06, 0x00) => "host bridge",
            (0x06, 0x04) => "PCI-to-PCI bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x00, _) => "device of no class",
            (0x01, _) => "mass storage controller",
            (0x02, _) => "network controller",
            (0x03, _) => "display controller",
            (0x04, _) => "multimedia controller",
            (0x05, _) => "memory controller",
            (0x06, _) => "bridge",
            (0x07, _) => "communication controller",
            (0x08, _) => "system peripheral",
            (0x09, _) => "input device controller",
            (0x0a, _) => "docking station",
            (0x0b, _) => "processor",
            (0x0c, _) => "serial bus controller",
            (0x0d, _) => "wireless controller",
            (0x0e, _) => "intelligent I/O controller",
            (0x0f, _) => "satellite communication controller",
            (0x10, _) => "encryption controller",
            (0x11, _) => "signal processing controller",
            (0x12, _) => "processing accelerator",
            (0x13, _) => "non-essential instrumentation",
            (0x40, _) => "coprocessor",
            _ => "device of an unassigned class",
        }
    }
}

impl std::fmt::Display for ClassCode {
    /// `060000 (host bridge)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:06x} ({})", self.0 & 0x00ff_ffff, self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_other_classes() {
        assert!(ClassCode(0x020000).is_network());
        assert!(ClassCode(0x028000).is_network());
        assert!(!ClassCode(0x060000).is_network());
        assert_eq!(ClassCode(0x060000).to_string(), "060000 (host bridge)");
        assert_eq!(
            ClassCode(0x010601).to_string(),
            "010601 (mass storage controller)"
        );
        assert_eq!(
            ClassCode(0xffff00).describe(),
            "device of an unassigned class"
        );
    }
}
