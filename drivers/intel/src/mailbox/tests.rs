//! The mailbox against a PF written for the tests: one that answers, refuses, stays
//! silent, acknowledges and never answers, answers garbage, holds the buffer, or resets.

use super::*;
use std::cell::RefCell;

/// What the test PF does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pf {
    /// ACK with the request's words echoed after the header.
    Ack,
    /// NACK.
    Nack,
    /// Never acknowledges.
    Silent,
    /// Acknowledges, never answers.
    AckOnly,
    /// Answers with another message type.
    Garbage,
    /// Never lets the VF take the buffer.
    Busy,
    /// Goes into reset when the request arrives.
    ResetDuring,
}

struct TestPf {
    mode: Cell<Pf>,
    ctl: Cell<u32>,
    mem: RefCell<[u32; WORDS]>,
    /// Requests received, first word each.
    got: RefCell<Vec<u32>>,
    /// ACKs of the PF's messages by the VF.
    vf_acks: Cell<u32>,
}

impl TestPf {
    fn new(mode: Pf) -> TestPf {
        TestPf {
            mode: Cell::new(mode),
            ctl: Cell::new(0),
            mem: RefCell::new([0; WORDS]),
            got: RefCell::new(Vec::new()),
            vf_acks: Cell::new(0),
        }
    }

    fn raise(&self, bits: u32) {
        self.ctl.set(self.ctl.get() | bits);
    }

    /// The PF sends a message unasked.
    fn send(&self, w0: u32) {
        self.mem.borrow_mut()[0] = w0;
        self.raise(ctl::PFSTS);
    }
}

impl MbxRegs for TestPf {
    fn ctl(&self) -> u32 {
        let v = self.ctl.get();
        self.ctl.set(v & !ctl::READ_CLEARS);
        v
    }

    fn set_ctl(&self, v: u32) {
        let keep = self.ctl.get() & !(ctl::VFU | ctl::REQ | ctl::ACK);
        self.ctl.set(keep);
        if v & ctl::VFU != 0 && self.mode.get() != Pf::Busy {
            self.raise(ctl::VFU);
        }
        if v & ctl::ACK != 0 {
            self.vf_acks.set(self.vf_acks.get() + 1);
        }
        if v & ctl::REQ != 0 {
            let req = *self.mem.borrow();
            self.got.borrow_mut().push(req[0]);
            let ty = req[0] & msg::TYPE_MASK;
            match self.mode.get() {
                Pf::Silent | Pf::Busy => {}
                Pf::AckOnly => self.raise(ctl::PFACK),
                Pf::ResetDuring => self.raise(ctl::RSTI),
                Pf::Ack | Pf::Nack | Pf::Garbage => {
                    let mut m = self.mem.borrow_mut();
                    m[0] = match self.mode.get() {
                        Pf::Ack => ty | msg::ACK | msg::CTS,
                        Pf::Nack => ty | msg::NACK | msg::CTS,
                        _ => (ty + 1) | msg::ACK,
                    };
                    self.raise(ctl::PFACK | ctl::PFSTS);
                }
            }
        }
    }

    fn word(&self, i: usize) -> u32 {
        self.mem.borrow()[i]
    }

    fn set_word(&self, i: usize, v: u32) {
        self.mem.borrow_mut()[i] = v;
    }
}

fn quick() -> Mailbox {
    Mailbox::new(Duration::from_millis(30))
}

#[test]
fn an_answered_request_returns_the_words_and_acknowledges_them() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    let a = mbx.request(&pf, &[0x05, 9018]).unwrap();
    assert_eq!(a[0], 0x05 | msg::ACK | msg::CTS);
    assert_eq!(a[1], 9018, "the buffer as the PF left it");
    assert_eq!(pf.got.borrow().as_slice(), &[0x05]);
    assert_eq!(pf.vf_acks.get(), 1, "the answer was acknowledged");
    assert_eq!(pf.ctl.get() & ctl::VFU, 0, "the buffer was released");
    assert_eq!(mbx.stats().acked, 1);
}

#[test]
fn a_refusal_is_nack_or_returned_when_asked_for() {
    let pf = TestPf::new(Pf::Nack);
    let mbx = quick();
    assert_eq!(mbx.request(&pf, &[0x06]), Err(MbxError::Nack { msg: 0x06 }));
    let a = mbx.request_nack_ok(&pf, &[0x01]).unwrap();
    assert_ne!(a[0] & msg::NACK, 0);
    assert_eq!(mbx.stats().nacked, 2);
}

#[test]
fn a_silent_pf_is_a_timeout_at_the_acknowledgement() {
    let pf = TestPf::new(Pf::Silent);
    let mbx = quick();
    let e = mbx.request(&pf, &[0x02, 1, 2]).unwrap_err();
    assert_eq!(
        e,
        MbxError::Timeout {
            msg: 0x02,
            stage: "acknowledge"
        }
    );
    assert!(e.to_string().contains("interface up"), "{e}");
    assert_eq!(mbx.stats().timeouts, 1);
}

#[test]
fn an_acknowledged_request_without_answer_is_a_timeout_at_the_answer() {
    let pf = TestPf::new(Pf::AckOnly);
    let mbx = quick();
    assert_eq!(
        mbx.request(&pf, &[0x03]),
        Err(MbxError::Timeout {
            msg: 0x03,
            stage: "answer"
        })
    );
}

#[test]
fn an_answer_to_another_message_is_garbage() {
    let pf = TestPf::new(Pf::Garbage);
    let mbx = quick();
    assert_eq!(
        mbx.request(&pf, &[0x04]),
        Err(MbxError::Garbage {
            msg: 0x04,
            answer: 0x05 | msg::ACK
        })
    );
    assert_eq!(mbx.stats().garbage, 1);
}

#[test]
fn a_buffer_the_pf_never_releases_is_busy_and_nothing_is_written() {
    let pf = TestPf::new(Pf::Busy);
    let mbx = quick();
    assert_eq!(mbx.request(&pf, &[0x02, 7]), Err(MbxError::Busy));
    assert!(pf.got.borrow().is_empty());
    assert_eq!(pf.mem.borrow()[1], 0, "no word written without the buffer");
}

#[test]
fn a_pf_reset_during_a_request_ends_it_and_is_counted() {
    let pf = TestPf::new(Pf::ResetDuring);
    let mbx = quick();
    assert_eq!(mbx.request(&pf, &[0x05, 1518]), Err(MbxError::PfReset));
    assert_eq!(mbx.stats().pf_resets, 1);
    assert_eq!(mbx.poll(&pf), PfEvent::Reset, "still resetting");
}

#[test]
fn messages_out_of_range_are_refused_before_any_access() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    assert_eq!(mbx.request(&pf, &[]), Err(MbxError::TooLong(0)));
    assert_eq!(mbx.request(&pf, &[0; 17]), Err(MbxError::TooLong(17)));
    assert!(pf.got.borrow().is_empty());
}

#[test]
fn read_clear_bits_seen_early_are_not_lost() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    // A reset-done seen by a read that was looking for something else.
    pf.raise(ctl::RSTD);
    assert!(!mbx.take(&pf, ctl::PFSTS));
    assert_eq!(pf.ctl.get() & ctl::RSTD, 0, "the register cleared on read");
    assert_eq!(mbx.poll(&pf), PfEvent::Reset, "kept for the next look");
    assert_eq!(mbx.poll(&pf), PfEvent::None, "and consumed once");
}

#[test]
fn a_pf_that_stays_in_reset_is_a_timeout_and_one_that_leaves_it_is_done() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    pf.raise(ctl::RSTI | ctl::RSTD);
    let e = mbx.wait_reset_done(&pf).unwrap_err();
    assert!(e.to_string().contains("RSTI"), "{e}");
    pf.ctl.set(ctl::RSTD);
    mbx.wait_reset_done(&pf).unwrap();
    assert_eq!(mbx.poll(&pf), PfEvent::None, "the reset-done was consumed");
    mbx.request(&pf, &[0x01]).unwrap();
}

#[test]
fn an_unasked_message_is_read_acknowledged_and_not_taken_for_an_answer() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    pf.send(0x0100);
    assert_eq!(mbx.poll(&pf), PfEvent::Message(0x0100));
    assert_eq!(pf.vf_acks.get(), 1);
    assert_eq!(mbx.poll(&pf), PfEvent::None);
    // Pending when a request starts: read first, then the request's own answer.
    pf.send(0x0100);
    let a = mbx.request(&pf, &[0x05, 1518]).unwrap();
    assert_eq!(a[0] & msg::TYPE_MASK, 0x05);
    assert_eq!(mbx.stats().pf_messages, 2);
    let mut x = Vec::new();
    mbx.xstats(&mut x);
    assert!(x.contains(&("mbx_pf_messages".to_string(), 2)), "{x:?}");
}

#[test]
fn mac_addresses_travel_in_two_words() {
    let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let w = mac_to_words(mac);
    assert_eq!(w, [0x1200_5452, 0x5634]);
    assert_eq!(mac_from_words(w), mac);
}

#[test]
fn control_bits_match_the_datasheets() {
    // 82576 8.14.x V2PMAILBOX, 82599 8.3.5.1.x VFMAILBOX: same layout.
    assert_eq!(
        (ctl::REQ, ctl::ACK, ctl::VFU, ctl::PFU),
        (0x1, 0x2, 0x4, 0x8)
    );
    assert_eq!(
        (ctl::PFSTS, ctl::PFACK, ctl::RSTI, ctl::RSTD),
        (0x10, 0x20, 0x40, 0x80)
    );
    assert_eq!(
        (msg::ACK, msg::NACK, msg::CTS),
        (0x8000_0000, 0x4000_0000, 0x2000_0000)
    );
}

#[test]
fn a_message_while_the_buffer_is_busy_stays_pending_for_the_next_look() {
    let pf = TestPf::new(Pf::Busy);
    let mbx = quick();
    pf.send(0x0100);
    assert_eq!(
        mbx.poll(&pf),
        PfEvent::None,
        "not readable now, and no wait"
    );
    assert_eq!(mbx.stats().pf_messages, 0);
    pf.mode.set(Pf::Ack);
    assert_eq!(mbx.poll(&pf), PfEvent::Message(0x0100), "kept, read later");
    assert_eq!(pf.vf_acks.get(), 1);
}

#[test]
fn a_long_pf_reset_is_counted_once() {
    let pf = TestPf::new(Pf::Ack);
    let mbx = quick();
    pf.raise(ctl::RSTI);
    for _ in 0..20 {
        assert_eq!(mbx.poll(&pf), PfEvent::Reset);
    }
    pf.ctl.set(ctl::RSTD);
    assert_eq!(mbx.poll(&pf), PfEvent::Reset, "reset done is news too");
    assert_eq!(mbx.poll(&pf), PfEvent::None);
    assert_eq!(mbx.stats().pf_resets, 1);
    // A reset-done without an RSTI seen before: a reset of its own.
    pf.raise(ctl::RSTD);
    assert_eq!(mbx.poll(&pf), PfEvent::Reset);
    assert_eq!(mbx.stats().pf_resets, 2);
}
