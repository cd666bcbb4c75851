//! The mailbox between a virtual function and its physical function (82576 datasheet
//! 7.8.2.9 "VF to PF mailbox", 82599 datasheet 7.10.3.7): sixteen 32-bit words of shared
//! buffer and one control register on the VF side. The VF takes the buffer (VFU), writes
//! a message and raises REQ; the PF acknowledges (PFACK), answers in the same buffer and
//! raises PFSTS; the VF reads the answer and acknowledges it (ACK).
//!
//! The first word of a message is its type (bits 15:0), type-specific information (bits
//! 23:16) and, in answers, ACK (bit 31) or NACK (bit 30); CTS (bit 29) tells the VF the PF
//! takes its requests. The message types and their words are what the PF's driver
//! defines (Linux's igb and ixgbe); [`Mailbox::request`] is the exchange they share.
//!
//! The PF is another party: it may never answer, answer garbage, refuse, or reset in the
//! middle. Every wait here is bounded and every such case is a typed [`MbxError`] and a
//! counter ([`MbxStats`]), never a hang or a panic.

use crate::bar::Bar;
use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// Words in the shared buffer.
pub const WORDS: usize = 16;

/// Control register bits (VF side: 82576 V2PMAILBOX, 82599 VFMAILBOX; same layout).
pub mod ctl {
    /// VF to PF: a message is in the buffer.
    pub const REQ: u32 = 1 << 0;
    /// VF to PF: the PF's message was read.
    pub const ACK: u32 = 1 << 1;
    /// The VF holds the buffer.
    pub const VFU: u32 = 1 << 2;
    /// The PF holds the buffer.
    pub const PFU: u32 = 1 << 3;
    /// PF to VF: a message is in the buffer (clears when read).
    pub const PFSTS: u32 = 1 << 4;
    /// PF to VF: the VF's message was read (clears when read).
    pub const PFACK: u32 = 1 << 5;
    /// The PF is resetting.
    pub const RSTI: u32 = 1 << 6;
    /// A PF or VF reset completed (clears when read).
    pub const RSTD: u32 = 1 << 7;
    /// The bits a read clears, which must not be lost between reads.
    pub const READ_CLEARS: u32 = PFSTS | PFACK | RSTD;
}

/// Message header bits (first word).
pub mod msg {
    /// Message type (bits 15:0).
    pub const TYPE_MASK: u32 = 0xffff;
    /// Type-specific information (bits 23:16), e.g. a count.
    pub const INFO_SHIFT: u32 = 16;
    /// Mask of the information field.
    pub const INFO_MASK: u32 = 0xff << INFO_SHIFT;
    /// Answer: done.
    pub const ACK: u32 = 1 << 31;
    /// Answer: refused.
    pub const NACK: u32 = 1 << 30;
    /// The PF takes requests from this VF (set once it has answered its reset).
    pub const CTS: u32 = 1 << 29;
}

/// Where the mailbox is in the VF's register space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbxLayout {
    /// The control register.
    pub ctl: usize,
    /// Word 0 of the buffer (word `i` at `mem + 4 * i`).
    pub mem: usize,
}

/// Access to a mailbox's registers: the VF's BAR, or a test's PF.
pub trait MbxRegs {
    /// Reads the control register (the read clears [`ctl::READ_CLEARS`] bits).
    fn ctl(&self) -> u32;
    /// Writes the control register.
    fn set_ctl(&self, v: u32);
    /// Reads buffer word `i` (< [`WORDS`]).
    fn word(&self, i: usize) -> u32;
    /// Writes buffer word `i` (< [`WORDS`]).
    fn set_word(&self, i: usize, v: u32);
}

/// A VF's mailbox registers in its BAR.
pub struct BarMbx<'a> {
    bar: &'a Bar,
    layout: MbxLayout,
}

impl<'a> BarMbx<'a> {
    /// The mailbox at `layout` in `bar`.
    pub fn new(bar: &'a Bar, layout: MbxLayout) -> BarMbx<'a> {
        BarMbx { bar, layout }
    }
}

impl MbxRegs for BarMbx<'_> {
    fn ctl(&self) -> u32 {
        self.bar.rd(self.layout.ctl)
    }
    fn set_ctl(&self, v: u32) {
        self.bar.wr(self.layout.ctl, v)
    }
    fn word(&self, i: usize) -> u32 {
        self.bar.rd(self.layout.mem + 4 * (i % WORDS))
    }
    fn set_word(&self, i: usize, v: u32) {
        self.bar.wr(self.layout.mem + 4 * (i % WORDS), v)
    }
}

/// What went wrong in an exchange with the PF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MbxError {
    /// The PF held the buffer for the whole timeout.
    Busy,
    /// No PFACK (`stage` "acknowledge") or no answer (`stage` "answer") in time.
    Timeout {
        /// The request's type.
        msg: u32,
        /// What did not come.
        stage: &'static str,
    },
    /// The PF refused the request.
    Nack {
        /// The request's type.
        msg: u32,
    },
    /// The answer is not about the request, or is neither ACK nor NACK.
    Garbage {
        /// The request's type.
        msg: u32,
        /// The answer's first word.
        answer: u32,
    },
    /// The PF reset (RSTI/RSTD) during the exchange: the VF must reset and start again.
    PfReset,
    /// The message does not fit the buffer.
    TooLong(usize),
}

impl fmt::Display for MbxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbxError::Busy => write!(
                f,
                "the PF kept the mailbox busy; check its driver (its log: dmesg on the PF's host)"
            ),
            MbxError::Timeout { msg, stage } => write!(
                f,
                "the PF did not {stage} message {msg:#x} in time; is the PF's driver loaded and \
                 its interface up?"
            ),
            MbxError::Nack { msg } => write!(
                f,
                "the PF refused message {msg:#x} (its driver's log, dmesg on the PF's host, says why; \
                 a trusted VF, `ip link set PF vf N trust on`, is allowed more)"
            ),
            MbxError::Garbage { msg, answer } => write!(
                f,
                "the PF answered message {msg:#x} with {answer:#010x}, which is not an answer to it; \
                 restart the port (the VF resets and starts the mailbox afresh)"
            ),
            MbxError::PfReset => write!(
                f,
                "the PF reset during the exchange; restart the port (stop, configure, start) once \
                 the PF is back"
            ),
            MbxError::TooLong(n) => write!(f, "a {n}-word message does not fit the mailbox"),
        }
    }
}

impl std::error::Error for MbxError {}

/// Counts of a mailbox's exchanges (xstats `mbx_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MbxStats {
    /// Requests answered with ACK.
    pub acked: u64,
    /// Requests refused (NACK).
    pub nacked: u64,
    /// Requests with no acknowledgement or answer in time, or a buffer never free.
    pub timeouts: u64,
    /// Answers that were not answers to the request.
    pub garbage: u64,
    /// PF resets seen.
    pub pf_resets: u64,
    /// Messages the PF sent unasked (e.g. link or control notices).
    pub pf_messages: u64,
}

/// What [`Mailbox::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfEvent {
    /// Nothing new.
    None,
    /// The PF reset (or is resetting): the VF must reset before the PF takes requests.
    Reset,
    /// The PF sent a message unasked; its first word.
    Message(u32),
}

/// How often the control register is read while waiting.
const POLL: Duration = Duration::from_micros(20);
/// How long a VF reset may take to show in the mailbox (Linux waits 1 ms on hardware).
const RESET_SHOWS: Duration = Duration::from_millis(10);

/// The VF's side of one mailbox: read-clear bits kept between reads, the timeout, counts.
/// Register access is passed to each call, so the state lives with the device.
#[derive(Debug)]
pub struct Mailbox {
    /// Read-clear bits seen and not yet consumed.
    sticky: Cell<u32>,
    timeout: Duration,
    stats: Cell<MbxStats>,
    /// RSTI was showing at the last look (a reset is counted once, when it starts).
    resetting: Cell<bool>,
}

impl Default for Mailbox {
    fn default() -> Mailbox {
        Mailbox::new(Mailbox::TIMEOUT)
    }
}

impl Mailbox {
    /// Default wait for each step (an acknowledgement, an answer). A PF answers in its
    /// interrupt handler, within microseconds on hardware; an emulated PF inside an
    /// emulated machine can take milliseconds.
    pub const TIMEOUT: Duration = Duration::from_secs(2);

    /// A mailbox whose waits last at most `timeout` each.
    pub fn new(timeout: Duration) -> Mailbox {
        Mailbox {
            sticky: Cell::new(0),
            timeout,
            stats: Cell::new(MbxStats::default()),
            resetting: Cell::new(false),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> MbxStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut MbxStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// The control register with the read-clear bits seen before.
    fn read(&self, r: &impl MbxRegs) -> u32 {
        let v = r.ctl() | self.sticky.get();
        self.sticky.set(v & ctl::READ_CLEARS);
        v
    }

    /// Whether `v` shows a PF reset (RSTI, or a pending RSTD, which is consumed); counts a
    /// reset once: when RSTI appears, or at an RSTD that no RSTI was seen before.
    fn pf_reset_in(&self, v: u32) -> bool {
        let rsti = v & ctl::RSTI != 0;
        let rstd = v & ctl::RSTD != 0;
        let was = self.resetting.replace(rsti);
        if rstd {
            self.sticky.set(self.sticky.get() & !ctl::RSTD);
        }
        if !was && (rsti || rstd) {
            self.count(|s| s.pf_resets += 1);
        }
        rsti || rstd
    }

    /// Whether any of `bits` is set, consuming those of them that clear on read.
    fn take(&self, r: &impl MbxRegs, bits: u32) -> bool {
        let v = self.read(r);
        self.sticky.set(self.sticky.get() & !bits);
        v & bits != 0
    }

    /// Waits until `bits` shows (consumed), failing early if the PF resets.
    fn wait_for(
        &self,
        r: &impl MbxRegs,
        bits: u32,
        msg: u32,
        stage: &'static str,
    ) -> Result<(), MbxError> {
        let end = Instant::now() + self.timeout;
        loop {
            let v = self.read(r);
            if self.pf_reset_in(v) {
                return Err(MbxError::PfReset);
            }
            if v & bits != 0 {
                self.sticky.set(self.sticky.get() & !bits);
                return Ok(());
            }
            if Instant::now() >= end {
                self.count(|s| s.timeouts += 1);
                return Err(MbxError::Timeout { msg, stage });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Tries once to take the buffer (VFU).
    fn try_lock(&self, r: &impl MbxRegs) -> bool {
        r.set_ctl(ctl::VFU);
        self.read(r) & ctl::VFU != 0
    }

    /// Takes the buffer (VFU), waiting while the PF holds it.
    fn lock(&self, r: &impl MbxRegs) -> Result<(), MbxError> {
        let end = Instant::now() + self.timeout;
        loop {
            if self.try_lock(r) {
                return Ok(());
            }
            if Instant::now() >= end {
                self.count(|s| s.timeouts += 1);
                return Err(MbxError::Busy);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Writes `words` and raises REQ, then waits for the PF's acknowledgement.
    pub fn post(&self, r: &impl MbxRegs, words: &[u32]) -> Result<(), MbxError> {
        if words.is_empty() || words.len() > WORDS {
            return Err(MbxError::TooLong(words.len()));
        }
        let msg = words[0] & msg::TYPE_MASK;
        // A stale acknowledgement belongs to nobody now; a message the PF sent unasked is
        // read first, so that it is not taken for the answer.
        self.take(r, ctl::PFACK);
        if self.read(r) & ctl::PFSTS != 0 {
            let mut m = [0; WORDS];
            self.read_message(r, &mut m)?;
            self.count(|s| s.pf_messages += 1);
        }
        self.lock(r)?;
        for (i, w) in words.iter().enumerate() {
            r.set_word(i, *w);
        }
        // REQ without VFU: hands the buffer over and interrupts the PF.
        r.set_ctl(ctl::REQ);
        self.wait_for(r, ctl::PFACK, msg, "acknowledge")
    }

    /// Reads the PF's message into `out` (all [`WORDS`]) and acknowledges it; the caller
    /// saw PFSTS, which is consumed once the buffer is taken (and kept if it cannot be).
    fn read_message(&self, r: &impl MbxRegs, out: &mut [u32; WORDS]) -> Result<(), MbxError> {
        self.lock(r)?;
        self.sticky.set(self.sticky.get() & !ctl::PFSTS);
        for (i, w) in out.iter_mut().enumerate() {
            *w = r.word(i);
        }
        // ACK without VFU: releases the buffer and tells the PF it was read.
        r.set_ctl(ctl::ACK);
        Ok(())
    }

    /// Sends `words` and returns the PF's answer (all [`WORDS`]; word 0 is the header),
    /// which must be an ACK of the same message type.
    pub fn request(&self, r: &impl MbxRegs, words: &[u32]) -> Result<[u32; WORDS], MbxError> {
        self.exchange(r, words, false)
    }

    /// As [`Mailbox::request`], but an answer of the request's type with NACK is
    /// returned too (a VF reset's NACK still carries news: no MAC address).
    pub fn request_nack_ok(
        &self,
        r: &impl MbxRegs,
        words: &[u32],
    ) -> Result<[u32; WORDS], MbxError> {
        self.exchange(r, words, true)
    }

    fn exchange(
        &self,
        r: &impl MbxRegs,
        words: &[u32],
        nack_ok: bool,
    ) -> Result<[u32; WORDS], MbxError> {
        self.post(r, words)?;
        let msg = words[0] & msg::TYPE_MASK;
        self.wait_for(r, ctl::PFSTS, msg, "answer")?;
        let mut answer = [0; WORDS];
        self.read_message(r, &mut answer)?;
        let head = answer[0];
        if head & msg::TYPE_MASK != msg || head & (msg::ACK | msg::NACK) == 0 {
            self.count(|s| s.garbage += 1);
            return Err(MbxError::Garbage { msg, answer: head });
        }
        if head & msg::NACK != 0 {
            self.count(|s| s.nacked += 1);
            if !nack_ok {
                return Err(MbxError::Nack { msg });
            }
        } else {
            self.count(|s| s.acked += 1);
        }
        Ok(answer)
    }

    /// After the VF set its reset bit: waits briefly for the reset to show (RSTD or RSTI;
    /// some PFs and emulations show neither), then (bounded) until the PF is out of reset
    /// (RSTI clear), and consumes the reset-done. A PF that stays in reset is a timeout.
    pub fn wait_reset_done(&self, r: &impl MbxRegs) -> Result<(), MbxError> {
        let shown = Instant::now() + RESET_SHOWS;
        while self.read(r) & (ctl::RSTD | ctl::RSTI) == 0 && Instant::now() < shown {
            std::thread::sleep(POLL);
        }
        let end = Instant::now() + self.timeout;
        loop {
            let v = self.read(r);
            if v & ctl::RSTI == 0 {
                self.sticky.set(self.sticky.get() & !ctl::RSTD);
                self.resetting.set(false);
                return Ok(());
            }
            if Instant::now() >= end {
                self.count(|s| s.timeouts += 1);
                return Err(MbxError::Timeout {
                    msg: 0,
                    stage: "come out of reset (RSTI) for",
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Looks, without waiting, for a PF reset or an unasked message (which is read and
    /// acknowledged if the buffer is free now; otherwise it stays pending for the next
    /// look). For a link check between bursts.
    pub fn poll(&self, r: &impl MbxRegs) -> PfEvent {
        let v = self.read(r);
        if self.pf_reset_in(v) {
            return PfEvent::Reset;
        }
        if v & ctl::PFSTS != 0 && self.try_lock(r) {
            self.sticky.set(self.sticky.get() & !ctl::PFSTS);
            let w0 = r.word(0);
            // ACK without VFU: releases the buffer and tells the PF it was read.
            r.set_ctl(ctl::ACK);
            self.count(|s| s.pf_messages += 1);
            return PfEvent::Message(w0);
        }
        PfEvent::None
    }

    /// The counts as xstats.
    pub fn xstats(&self, out: &mut Vec<(String, u64)>) {
        let s = self.stats();
        for (name, v) in [
            ("mbx_acked", s.acked),
            ("mbx_nacked", s.nacked),
            ("mbx_timeouts", s.timeouts),
            ("mbx_garbage", s.garbage),
            ("mbx_pf_resets", s.pf_resets),
            ("mbx_pf_messages", s.pf_messages),
        ] {
            out.push((name.to_string(), v));
        }
    }
}

/// A MAC address as the mailbox carries it: bytes 0-3 in one word, 4-5 in the low half of
/// the next (little-endian, as the PF's driver copies bytes into the buffer).
pub fn mac_to_words(mac: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// The MAC address in two mailbox words (see [`mac_to_words`]).
pub fn mac_from_words(w: [u32; 2]) -> [u8; 6] {
    let a = w[0].to_le_bytes();
    let b = w[1].to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

#[cfg(test)]
mod tests;
