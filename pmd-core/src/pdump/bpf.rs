//! Classic BPF (cBPF) packet filters: [`Filter::new`] checks a program the way the
//! Linux kernel checks a socket filter before it accepts one, and [`Filter::matches`]
//! runs it on a packet.
//!
//! Written here rather than taken from a crate: the filter runs on the capturing app's
//! data path, on programs another process sent, and the Rust cBPF crates either JIT
//! (executable memory from untrusted input) or call into libpcap's C interpreter. This
//! one is a bounded loop over a program whose every jump was checked to go forward and
//! land inside it, so a run takes at most as many steps as the program has instructions.
//!
//! Semantics are the kernel's: a load outside the packet ends the run with 0 (no match),
//! division by a zero register likewise, `ld len` is the whole packet's length (every
//! segment of a chain), and any non-zero return value is a match.

use crate::mbuf::Mbuf;
use libc::sock_filter;

/// The longest program accepted (the kernel's `BPF_MAXINSNS`).
pub const MAX_INSNS: usize = libc::BPF_MAXINSNS as usize;
/// Scratch memory words (`BPF_MEMWORDS`).
const MEMWORDS: usize = libc::BPF_MEMWORDS as usize;

// Instruction fields (linux/bpf_common.h, linux/filter.h), as the 16-bit opcode holds them.
const fn c(v: u32) -> u16 {
    v as u16
}
const CLASS_LD: u16 = c(libc::BPF_LD);
const CLASS_LDX: u16 = c(libc::BPF_LDX);
const CLASS_ST: u16 = c(libc::BPF_ST);
const CLASS_STX: u16 = c(libc::BPF_STX);
const CLASS_ALU: u16 = c(libc::BPF_ALU);
const CLASS_JMP: u16 = c(libc::BPF_JMP);
const CLASS_RET: u16 = c(libc::BPF_RET);
const CLASS_MISC: u16 = c(libc::BPF_MISC);
const SIZE_W: u16 = c(libc::BPF_W);
const SIZE_H: u16 = c(libc::BPF_H);
const SIZE_B: u16 = c(libc::BPF_B);
const MODE_IMM: u16 = c(libc::BPF_IMM);
const MODE_ABS: u16 = c(libc::BPF_ABS);
const MODE_IND: u16 = c(libc::BPF_IND);
const MODE_MEM: u16 = c(libc::BPF_MEM);
const MODE_LEN: u16 = c(libc::BPF_LEN);
const MODE_MSH: u16 = c(libc::BPF_MSH);
const SRC_X: u16 = c(libc::BPF_X);
const RVAL_A: u16 = c(libc::BPF_A);

/// Why a program was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// No instructions, or more than [`MAX_INSNS`].
    #[error("a filter has 1 to {MAX_INSNS} instructions, not {0}")]
    Length(usize),
    /// An opcode this interpreter (and the kernel) does not know.
    #[error("instruction {pc}: unknown opcode {code:#06x}")]
    Opcode {
        /// Index of the instruction.
        pc: usize,
        /// Its opcode.
        code: u16,
    },
    /// A jump past the end of the program.
    #[error("instruction {pc}: jump past the end of the program")]
    Jump {
        /// Index of the instruction.
        pc: usize,
    },
    /// A scratch memory index of 16 or more.
    #[error("instruction {pc}: scratch memory index {k} (there are {MEMWORDS} words)")]
    Memory {
        /// Index of the instruction.
        pc: usize,
        /// The index.
        k: u32,
    },
    /// Division or modulo by the constant 0.
    #[error("instruction {pc}: division by the constant 0")]
    DivideByZero {
        /// Index of the instruction.
        pc: usize,
    },
    /// The last instruction is not a return.
    #[error("the last instruction is not a return")]
    NoReturn,
}

/// What an instruction does, decoded once by [`Filter::new`] so a run never meets an
/// opcode it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// A = packet[k or X+k], `size` bytes, big-endian.
    LdPkt {
        size: u8,
        ind: bool,
    },
    LdImm,
    LdLen,
    LdMem,
    LdxImm,
    LdxLen,
    LdxMem,
    /// X = 4 * (packet[k] & 0xf).
    LdxMsh,
    St,
    Stx,
    /// A = A op (K or X); `op` is the BPF_OP field.
    Alu {
        op: u16,
        x: bool,
    },
    Neg,
    Ja,
    /// if A cmp (K or X) then jt else jf; `op` is the BPF_OP field.
    Jcond {
        op: u16,
        x: bool,
    },
    RetK,
    RetA,
    Tax,
    Txa,
}

#[derive(Clone, Copy, Debug)]
struct Insn {
    op: Op,
    jt: u8,
    jf: u8,
    k: u32,
}

/// A checked cBPF program, ready to run on packets.
#[derive(Clone, Debug)]
pub struct Filter {
    insns: Box<[Insn]>,
    raw: Box<[sock_filter]>,
}

impl Filter {
    /// Checks `prog` as the kernel does (`bpf_check_classic`): known opcodes, forward
    /// jumps inside the program, scratch indices below 16, no division by the constant
    /// 0, a return at the end.
    pub fn new(prog: &[sock_filter]) -> Result<Filter, FilterError> {
        if prog.is_empty() || prog.len() > MAX_INSNS {
            return Err(FilterError::Length(prog.len()));
        }
        let mut insns = Vec::with_capacity(prog.len());
        for (pc, i) in prog.iter().enumerate() {
            let unknown = FilterError::Opcode { pc, code: i.code };
            let code = i.code;
            if code > 0xff {
                return Err(unknown);
            }
            let (class, size, mode) = (code & 0x07, code & 0x18, code & 0xe0);
            let op = match class {
                CLASS_LD => match mode {
                    MODE_ABS | MODE_IND => Op::LdPkt {
                        size: match size {
                            SIZE_W => 4,
                            SIZE_H => 2,
                            SIZE_B => 1,
                            _ => return Err(unknown),
                        },
                        ind: mode == MODE_IND,
                    },
                    MODE_IMM if size == SIZE_W => Op::LdImm,
                    MODE_LEN if size == SIZE_W => Op::LdLen,
                    MODE_MEM if size == SIZE_W => Op::LdMem,
                    _ => return Err(unknown),
                },
                CLASS_LDX => match (mode, size) {
                    (MODE_IMM, SIZE_W) => Op::LdxImm,
                    (MODE_LEN, SIZE_W) => Op::LdxLen,
                    (MODE_MEM, SIZE_W) => Op::LdxMem,
                    (MODE_MSH, SIZE_B) => Op::LdxMsh,
                    _ => return Err(unknown),
                },
                CLASS_ST if code == CLASS_ST => Op::St,
                CLASS_STX if code == CLASS_STX => Op::Stx,
                CLASS_ALU => {
                    let (op, x) = (code & 0xf0, code & SRC_X != 0);
                    match op {
                        0x80 if !x => Op::Neg,
                        // add sub mul div or and lsh rsh mod xor
                        0x00..=0x70 | 0x90 | 0xa0 => {
                            if !x && i.k == 0 && (op == 0x30 || op == 0x90) {
                                return Err(FilterError::DivideByZero { pc });
                            }
                            Op::Alu { op, x }
                        }
                        _ => return Err(unknown),
                    }
                }
                CLASS_JMP => {
                    let (op, x) = (code & 0xf0, code & SRC_X != 0);
                    let last = prog.len() - pc - 1;
                    match op {
                        0x00 if !x => {
                            if i.k as usize >= last {
                                return Err(FilterError::Jump { pc });
                            }
                            Op::Ja
                        }
                        // jeq jgt jge jset
                        0x10..=0x40 => {
                            if usize::from(i.jt) >= last || usize::from(i.jf) >= last {
                                return Err(FilterError::Jump { pc });
                            }
                            Op::Jcond { op, x }
                        }
                        _ => return Err(unknown),
                    }
                }
                CLASS_RET => match code & !0x07 {
                    0x00 => Op::RetK,
                    RVAL_A => Op::RetA,
                    _ => return Err(unknown),
                },
                CLASS_MISC => match code {
                    0x07 => Op::Tax,
                    0x87 => Op::Txa,
                    _ => return Err(unknown),
                },
                _ => return Err(unknown),
            };
            if matches!(op, Op::LdMem | Op::LdxMem | Op::St | Op::Stx) && i.k as usize >= MEMWORDS {
                return Err(FilterError::Memory { pc, k: i.k });
            }
            insns.push(Insn {
                op,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            });
        }
        if !matches!(insns.last().map(|i| i.op), Some(Op::RetK | Op::RetA)) {
            return Err(FilterError::NoReturn);
        }
        Ok(Filter {
            insns: insns.into_boxed_slice(),
            raw: prog.into(),
        })
    }

    /// The program as it was given.
    pub fn program(&self) -> &[sock_filter] {
        &self.raw
    }

    /// Instructions in the program.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Always false: a checked program has at least one instruction.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Whether `m` (every segment of it) passes the filter.
    #[inline]
    pub fn matches(&self, m: &Mbuf) -> bool {
        self.run(&Packet {
            first: m.data(),
            whole: m,
        }) != 0
    }

    /// Whether `bytes`, a whole packet in one piece, passes the filter.
    pub fn matches_bytes(&self, bytes: &[u8]) -> bool {
        self.run(&Bytes(bytes)) != 0
    }

    /// Runs the program: its return value (0 when a load falls outside the packet).
    fn run<P: PacketBytes>(&self, p: &P) -> u32 {
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; MEMWORDS];
        let mut pc = 0usize;
        // Every jump was checked to land inside the program and go forward, so `pc`
        // grows each step and the loop ends within `insns.len()` steps.
        while let Some(i) = self.insns.get(pc) {
            pc += 1;
            let k = i.k;
            match i.op {
                Op::LdPkt { size, ind } => {
                    let off = if ind { x.checked_add(k) } else { Some(k) };
                    match off.and_then(|o| p.load(o as usize, size)) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                Op::LdImm => a = k,
                Op::LdLen => a = p.len() as u32,
                Op::LdMem => a = mem[k as usize % MEMWORDS],
                Op::LdxImm => x = k,
                Op::LdxLen => x = p.len() as u32,
                Op::LdxMem => x = mem[k as usize % MEMWORDS],
                Op::LdxMsh => match p.load(k as usize, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                Op::St => mem[k as usize % MEMWORDS] = a,
                Op::Stx => mem[k as usize % MEMWORDS] = x,
                Op::Alu { op, x: src_x } => {
                    let v = if src_x { x } else { k };
                    a = match op {
                        0x00 => a.wrapping_add(v),
                        0x10 => a.wrapping_sub(v),
                        0x20 => a.wrapping_mul(v),
                        0x30 => match a.checked_div(v) {
                            Some(q) => q,
                            None => return 0,
                        },
                        0x40 => a | v,
                        0x50 => a & v,
                        0x60 => a.checked_shl(v).unwrap_or(0),
                        0x70 => a.checked_shr(v).unwrap_or(0),
                        0x90 => match a.checked_rem(v) {
                            Some(r) => r,
                            None => return 0,
                        },
                        _ => a ^ v,
                    };
                }
                Op::Neg => a = a.wrapping_neg(),
                Op::Ja => pc += k as usize,
                Op::Jcond { op, x: src_x } => {
                    let v = if src_x { x } else { k };
                    let taken = match op {
                        0x10 => a == v,
                        0x20 => a > v,
                        0x30 => a >= v,
                        _ => a & v != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                Op::RetK => return k,
                Op::RetA => return a,
                Op::Tax => x = a,
                Op::Txa => a = x,
            }
        }
        0
    }
}

/// The bytes a filter reads.
trait PacketBytes {
    /// Whole length.
    fn len(&self) -> usize;
    /// `size` (1, 2 or 4) bytes at `off`, big-endian; `None` past the end.
    fn load(&self, off: usize, size: u8) -> Option<u32>;
}

fn be(b: &[u8]) -> u32 {
    b.iter().fold(0, |v, &x| v << 8 | u32::from(x))
}

struct Bytes<'a>(&'a [u8]);

impl PacketBytes for Bytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load(&self, off: usize, size: u8) -> Option<u32> {
        self.0.get(off..off.checked_add(usize::from(size))?).map(be)
    }
}

/// An mbuf: loads from the first segment, and from the rest of a chain when a header
/// lies beyond it.
struct Packet<'a> {
    first: &'a [u8],
    whole: &'a Mbuf,
}

impl PacketBytes for Packet<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.whole.len()
    }
    #[inline]
    fn load(&self, off: usize, size: u8) -> Option<u32> {
        let end = off.checked_add(usize::from(size))?;
        match self.first.get(off..end) {
            Some(b) => Some(be(b)),
            None if end <= self.whole.len() => chained_load(self.whole, off, size),
            None => None,
        }
    }
}

/// A load that crosses or lies past the first segment of a chain.
#[cold]
fn chained_load(m: &Mbuf, off: usize, size: u8) -> Option<u32> {
    let mut bytes = m.segments().flatten().skip(off).take(usize::from(size));
    let mut v = 0u32;
    for _ in 0..size {
        v = v << 8 | u32::from(*bytes.next()?);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// `ether proto 0x0800 and udp dst port 53`, roughly as libpcap compiles it.
    fn ipv4_udp_dport(port: u32) -> Vec<sock_filter> {
        use libc::*;
        vec![
            ins(BPF_LD | BPF_H | BPF_ABS, 0, 0, 12),
            ins(BPF_JMP | BPF_JEQ | BPF_K, 0, 8, 0x0800),
            ins(BPF_LD | BPF_B | BPF_ABS, 0, 0, 23),
            ins(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, 17),
            ins(BPF_LD | BPF_H | BPF_ABS, 0, 0, 20),
            ins(BPF_JMP | BPF_JSET | BPF_K, 4, 0, 0x1fff),
            ins(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14),
            ins(BPF_LD | BPF_H | BPF_IND, 0, 0, 16),
            ins(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, port),
            ins(BPF_RET | BPF_K, 0, 0, 262144),
            ins(BPF_RET | BPF_K, 0, 0, 0),
        ]
    }

    fn udp_frame(dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 4];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 17;
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn a_udp_port_filter_matches_only_that_port() {
        let f = Filter::new(&ipv4_udp_dport(53)).unwrap();
        assert!(f.matches_bytes(&udp_frame(53)));
        assert!(!f.matches_bytes(&udp_frame(54)));
        let mut arp = udp_frame(53);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!f.matches_bytes(&arp));
        // Too short to hold the port: the load fails, no match, no panic.
        assert!(!f.matches_bytes(&udp_frame(53)[..30]));
        assert!(!f.matches_bytes(&[]));
    }

    #[test]
    fn programs_the_kernel_would_refuse_are_refused() {
        use libc::*;
        let ret = ins(BPF_RET | BPF_K, 0, 0, 1);
        assert_eq!(Filter::new(&[]).unwrap_err(), FilterError::Length(0));
        assert_eq!(
            Filter::new(&vec![ret; MAX_INSNS + 1]).unwrap_err(),
            FilterError::Length(MAX_INSNS + 1)
        );
        // Falls off the end.
        assert_eq!(
            Filter::new(&[ins(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0)]).unwrap_err(),
            FilterError::NoReturn
        );
        // Jumps past the end (conditional and not), or onto itself backwards is
        // impossible: offsets are unsigned.
        assert_eq!(
            Filter::new(&[ins(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0), ret]).unwrap_err(),
            FilterError::Jump { pc: 0 }
        );
        assert_eq!(
            Filter::new(&[ins(BPF_JMP | BPF_JA, 0, 0, u32::MAX), ret]).unwrap_err(),
            FilterError::Jump { pc: 0 }
        );
        assert_eq!(
            Filter::new(&[ins(BPF_ST, 0, 0, 16), ret]).unwrap_err(),
            FilterError::Memory { pc: 0, k: 16 }
        );
        assert_eq!(
            Filter::new(&[ins(BPF_ALU | BPF_DIV | BPF_K, 0, 0, 0), ret]).unwrap_err(),
            FilterError::DivideByZero { pc: 0 }
        );
        for code in [0xffffu32, 0x18, BPF_LD | BPF_W | BPF_MSH, BPF_MISC | 0x40] {
            assert!(matches!(
                Filter::new(&[ins(code, 0, 0, 0), ret]).unwrap_err(),
                FilterError::Opcode { pc: 0, .. }
            ));
        }
    }

    #[test]
    fn arithmetic_scratch_memory_and_division_by_a_zero_register() {
        use libc::*;
        // A = len; mem[3] = A; X = 0; A = A / X  -> run ends with 0.
        let div0 = Filter::new(&[
            ins(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
            ins(BPF_LDX | BPF_W | BPF_IMM, 0, 0, 0),
            ins(BPF_ALU | BPF_DIV | BPF_X, 0, 0, 0),
            ins(BPF_RET | BPF_K, 0, 0, 7),
        ])
        .unwrap();
        assert!(!div0.matches_bytes(&[1, 2, 3]));
        // A = len * 3 - 1 stored and reloaded through X, returned from A.
        let calc = Filter::new(&[
            ins(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
            ins(BPF_ALU | BPF_MUL | BPF_K, 0, 0, 3),
            ins(BPF_ALU | BPF_SUB | BPF_K, 0, 0, 1),
            ins(BPF_ST, 0, 0, 15),
            ins(BPF_LDX | BPF_W | BPF_MEM, 0, 0, 15),
            ins(BPF_LD | BPF_W | BPF_IMM, 0, 0, 0),
            ins(BPF_MISC | BPF_TXA, 0, 0, 0),
            ins(BPF_RET | BPF_A, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(calc.run(&Bytes(&[0; 10])), 29);
        assert_eq!(calc.run(&Bytes(&[])), u32::MAX);
    }
}
