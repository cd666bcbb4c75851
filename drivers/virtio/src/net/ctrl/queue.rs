//! The virtio-net control virtqueue, driver side, for devices that serve it themselves
//! (virtio-pci).
//!
//! A command is one descriptor chain: a device-readable buffer holding the one-byte class,
//! the one-byte command and the command's data, then a one-byte device-writable ack
//! (`VIRTIO_NET_OK` = 0). Commands are issued one at a time and completed synchronously:
//! the driver publishes the chain, notifies, and polls for the used element with a bounded
//! wait ([`CTRL_TIMEOUT`]). The queue is always driven on the ring layout the rest of the
//! device uses (split, or packed with `VIRTIO_F_RING_PACKED`).
//!
//! The device is untrusted: the used element must name the chain we posted, report
//! exactly the one ack byte written, and nothing else may show up as used; the ack must be
//! `VIRTIO_NET_OK`. A device that breaks the protocol or does not answer in time leaves
//! the queue *broken*: every later command fails at once (the chain may still be in the
//! device's hands, so it is never reused). The queue is made fresh again at the next
//! device start ([`CtrlQueue::reset`]).

use super::{CtrlCommand, CTRL_QUEUE_SIZE, VIRTIO_NET_OK};
use crate::transport::{Notifier, RingSetup};
use crate::virtqueue::packed::{VRING_PACKED_DESC_F_AVAIL, VRING_PACKED_DESC_F_USED};
use crate::virtqueue::{
    AddrMode, Layout, PackedLayout, RingAddrs, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use pmd_core::error::{Error, Result};
use pmd_core::memory::Segment;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a command may take before it is an error.
pub const CTRL_TIMEOUT: Duration = Duration::from_secs(1);

/// Value an ack byte holds before the device writes it (neither OK nor ERR).
const ACK_UNSET: u8 = 0xa5;

/// Offset of the command buffer in the queue's segment (after the ring).
fn cmd_off(size: u16) -> usize {
    let split = Layout::new(size).map_or(0, |l| l.total);
    let packed = PackedLayout::new(size).map_or(0, |l| l.total);
    split.max(packed)
}

/// Offset of the ack byte (same cache line as nothing else).
fn ack_off(size: u16) -> usize {
    cmd_off(size) + 64
}

/// The control virtqueue of a device that serves it.
pub struct CtrlQueue {
    name: String,
    mem: Arc<Segment>,
    index: u16,
    size: u16,
    packed: bool,
    mode: AddrMode,
    notifier: Arc<dyn Notifier>,
    timeout: Duration,
    /// Split: next avail index; packed: unused.
    avail_idx: u16,
    /// Split: used index we have consumed up to.
    last_used: u16,
    /// Packed: ring position of the next chain, and the driver's wrap counter.
    pos: u16,
    wrap: bool,
    broken: Option<String>,
    /// Commands the device acknowledged with `VIRTIO_NET_OK`.
    pub ok: u64,
    /// Commands that failed (error ack, protocol violation, timeout).
    pub failed: u64,
}

impl std::fmt::Debug for CtrlQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtrlQueue")
            .field("index", &self.index)
            .field("packed", &self.packed)
            .field("broken", &self.broken)
            .finish()
    }
}

impl CtrlQueue {
    /// A control queue at device queue `index`, on its own memory segment (`name` names
    /// it in errors). `packed` picks the ring layout, `mode` which addresses the device
    /// is given.
    pub fn new(
        name: &str,
        index: u16,
        packed: bool,
        mode: AddrMode,
        notifier: Arc<dyn Notifier>,
    ) -> Result<CtrlQueue> {
        let size = CTRL_QUEUE_SIZE;
        let mem = Arc::new(Segment::alloc(
            &format!("{name}-ctrlq"),
            ack_off(size) + 64,
        )?);
        let mut q = CtrlQueue {
            name: name.to_string(),
            mem,
            index,
            size,
            packed,
            mode,
            notifier,
            timeout: CTRL_TIMEOUT,
            avail_idx: 0,
            last_used: 0,
            pos: 0,
            wrap: true,
            broken: None,
            ok: 0,
            failed: 0,
        };
        q.reset();
        Ok(q)
    }

    /// Changes the completion timeout (tests use short ones).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Device queue index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Why the queue stopped accepting commands, if it did.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Makes the queue fresh (empty ring, indices at 0). Only while the device does not
    /// use it (before it is started or after it was stopped/reset).
    pub fn reset(&mut self) {
        // SAFETY: the segment is ours and at least ack_off + 64 bytes long; the device is
        // not running (caller's contract), so nothing else writes it.
        unsafe { std::ptr::write_bytes(self.mem.as_ptr(), 0, ack_off(self.size) + 64) };
        self.avail_idx = 0;
        self.last_used = 0;
        self.pos = 0;
        self.wrap = true;
        self.broken = None;
    }

    fn addr(&self, off: usize) -> u64 {
        match self.mode {
            AddrMode::Va => self.mem.as_ptr() as u64 + off as u64,
            AddrMode::Iova => self.mem.iova_at(off),
        }
    }

    /// Where the ring is and where the device starts, for [`crate::transport::Transport::start`].
    pub fn setup(&self) -> RingSetup {
        let (avail, used, base) = if self.packed {
            let l = PackedLayout::new(self.size).expect("valid size");
            (l.driver_event_off, l.device_event_off, 0x8000)
        } else {
            let l = Layout::new(self.size).expect("valid size");
            (l.avail_off, l.used_off, 0)
        };
        RingSetup {
            addrs: RingAddrs {
                index: self.index,
                size: self.size,
                desc: self.addr(0),
                avail: self.addr(avail),
                used: self.addr(used),
            },
            base,
        }
    }

    fn ptr(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.mem.len());
        // SAFETY: every offset used is inside the segment (ring + buffers).
        unsafe { self.mem.as_ptr().add(off) }
    }

    fn u16_at(&self, off: usize) -> &AtomicU16 {
        // SAFETY: 2-aligned offsets inside the live segment; the device writes these
        // fields concurrently, hence atomics.
        unsafe { &*(self.ptr(off) as *const AtomicU16) }
    }

    fn write_desc(&self, slot: u16, addr: u64, len: u32, id_or_next: u16, flags: u16) {
        let p = self.ptr(16 * slot as usize);
        // SAFETY: slot < size: inside the descriptor ring; the device does not read this
        // descriptor until it is published (avail index, or the head's flags).
        unsafe {
            std::ptr::write_volatile(p as *mut u64, addr.to_le());
            std::ptr::write_volatile(p.add(8) as *mut u32, len.to_le());
        }
        if self.packed {
            // Packed: addr, len, id, flags. The flags go last (the head's with release).
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(p.add(12) as *mut u16, id_or_next.to_le()) };
        } else {
            // Split: addr, len, flags, next.
            // SAFETY: as above.
            unsafe {
                std::ptr::write_volatile(p.add(12) as *mut u16, flags.to_le());
                std::ptr::write_volatile(p.add(14) as *mut u16, id_or_next.to_le());
            }
        }
    }

    fn fail(&mut self, msg: String, breaks: bool) -> Error {
        self.failed += 1;
        if breaks {
            self.broken = Some(msg.clone());
        }
        Error::driver(&self.name, format!("control queue {}: {msg}", self.index))
    }

    /// Sends `cmd` and waits (at most the timeout) for the device's ack.
    pub fn execute(&mut self, cmd: CtrlCommand) -> Result<()> {
        if let Some(why) = &self.broken {
            let msg = format!("unusable after an earlier failure ({why}); restart the port");
            return Err(self.fail(msg, false));
        }
        let bytes = cmd.encode();
        let (co, ao) = (cmd_off(self.size), ack_off(self.size));
        // SAFETY: the buffers lie in our segment after the ring; no chain is in flight
        // (commands are synchronous and a queue with a lost chain is broken), so the
        // device does not access them now.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr(co), bytes.len());
            std::ptr::write_volatile(self.ptr(ao), ACK_UNSET);
        }
        let (cmd_addr, ack_addr) = (self.addr(co), self.addr(ao));
        let len = bytes.len() as u32;
        if self.packed {
            let (head, tail) = (self.pos, self.pos + 1);
            let bits = if self.wrap {
                VRING_PACKED_DESC_F_AVAIL
            } else {
                VRING_PACKED_DESC_F_USED
            };
            self.write_desc(tail, ack_addr, 1, 0, 0);
            self.u16_at(16 * tail as usize + 14)
                .store((VRING_DESC_F_WRITE | bits).to_le(), Ordering::Relaxed);
            self.write_desc(head, cmd_addr, len, 0, 0);
            self.u16_at(16 * head as usize + 14)
                .store((VRING_DESC_F_NEXT | bits).to_le(), Ordering::Release);
        } else {
            let l = Layout::new(self.size).expect("valid size");
            self.write_desc(0, cmd_addr, len, 1, VRING_DESC_F_NEXT);
            self.write_desc(1, ack_addr, 1, 0, VRING_DESC_F_WRITE);
            let slot = self.avail_idx & (self.size - 1);
            self.u16_at(l.avail_off + 4 + 2 * slot as usize)
                .store(0, Ordering::Relaxed);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.u16_at(l.avail_off + 2)
                .store(self.avail_idx.to_le(), Ordering::Release);
        }
        fence(Ordering::SeqCst);
        self.notifier.notify();

        let deadline = Instant::now() + self.timeout;
        let (id, used_len) = loop {
            if let Some(done) = self.poll_used()? {
                break done;
            }
            if Instant::now() >= deadline {
                let msg = format!(
                    "no completion for {cmd} within {:?} (the device does not process its \
                     control queue)",
                    self.timeout
                );
                return Err(self.fail(msg, true));
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        if id != 0 {
            let msg = format!("used element names buffer {id}, only buffer 0 was posted");
            return Err(self.fail(msg, true));
        }
        if used_len != 1 {
            let msg = format!(
                "used element for {cmd} reports {used_len} bytes written, the ack is 1 byte"
            );
            return Err(self.fail(msg, true));
        }
        // The chain is ours again.
        if self.packed {
            self.pos += 2;
            if self.pos >= self.size {
                self.pos -= self.size;
                self.wrap = !self.wrap;
            }
        }
        // SAFETY: the device returned the chain: the ack byte is ours to read.
        let ack = unsafe { std::ptr::read_volatile(self.ptr(ao)) };
        if ack != VIRTIO_NET_OK {
            let msg = format!("device rejected {cmd} (ack {ack})");
            return Err(self.fail(msg, false));
        }
        self.ok += 1;
        tracing::debug!(queue = self.index, %cmd, "control command acknowledged");
        Ok(())
    }

    /// The completed chain `(id, len)`, if the device returned it.
    fn poll_used(&mut self) -> Result<Option<(u32, u32)>> {
        if self.packed {
            let off = 16 * self.pos as usize;
            let flags = u16::from_le(self.u16_at(off + 14).load(Ordering::Acquire));
            let avail = flags & VRING_PACKED_DESC_F_AVAIL != 0;
            let used = flags & VRING_PACKED_DESC_F_USED != 0;
            if avail != used || used != self.wrap {
                return Ok(None);
            }
            // SAFETY: inside the ring; the device published this descriptor (acquire above).
            let (len, id) = unsafe {
                (
                    u32::from_le(std::ptr::read_volatile(self.ptr(off + 8) as *const u32)),
                    u16::from_le(std::ptr::read_volatile(self.ptr(off + 12) as *const u16)),
                )
            };
            Ok(Some((u32::from(id), len)))
        } else {
            let l = Layout::new(self.size).expect("valid size");
            let idx = u16::from_le(self.u16_at(l.used_off + 2).load(Ordering::Acquire));
            let new = idx.wrapping_sub(self.last_used);
            if new == 0 {
                return Ok(None);
            }
            if new != 1 {
                let msg = format!(
                    "used index jumped by {new} with one command in flight (hostile device)"
                );
                return Err(self.fail(msg, true));
            }
            let slot = (self.last_used & (self.size - 1)) as usize;
            let p = self.ptr(l.used_off + 4 + 8 * slot);
            // SAFETY: slot < size: inside the used ring; published (acquire above).
            let (id, len) = unsafe {
                (
                    u32::from_le(std::ptr::read_volatile(p as *const u32)),
                    u32::from_le(std::ptr::read_volatile(p.add(4) as *const u32)),
                )
            };
            self.last_used = idx;
            Ok(Some((id, len)))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::VIRTIO_NET_ERR;
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// What the simulated device does with the next command.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Reply {
        /// Complete with this ack byte, used length 1.
        Ack(u8),
        /// Never complete.
        Silent,
        /// Complete with this id and used length, ack OK.
        Elem(u32, u32),
        /// Split only: publish a used index 2 ahead.
        Jump,
    }

    /// A device serving a control queue: on each notification it reads the chain (a
    /// readable buffer, then a writable one), records the readable bytes, and answers as
    /// `reply` says. Runs inside `notify` (synchronously), like a very fast device.
    pub(crate) struct SimCtrlDevice {
        pub(crate) ring: Mutex<Option<(RingAddrs, bool)>>,
        pub(crate) reply: Mutex<Reply>,
        pub(crate) seen: Mutex<Vec<Vec<u8>>>,
        state: Mutex<(u16, u16, bool)>, // split: last_avail, used_idx; packed: pos, _, wrap
        kicks: AtomicU64,
    }

    impl SimCtrlDevice {
        pub(crate) fn new() -> Arc<SimCtrlDevice> {
            Arc::new(SimCtrlDevice {
                ring: Mutex::new(None),
                reply: Mutex::new(Reply::Ack(VIRTIO_NET_OK)),
                seen: Mutex::new(Vec::new()),
                state: Mutex::new((0, 0, true)),
                kicks: AtomicU64::new(0),
            })
        }

        /// Attaches the device to a ring (as the transport's start would).
        pub(crate) fn attach(&self, r: RingSetup, packed: bool) {
            *self.ring.lock().unwrap() = Some((r.addrs, packed));
            *self.state.lock().unwrap() = (0, 0, true);
        }

        fn serve(&self) {
            let Some((a, packed)) = *self.ring.lock().unwrap() else {
                return;
            };
            let reply = *self.reply.lock().unwrap();
            let mut st = self.state.lock().unwrap();
            let rd = |p: u64, off: usize| -> (u64, u32, u16, u16) {
                let d = (p as usize + off) as *const u8;
                // SAFETY: test: inside the descriptor ring at a VA the driver gave us.
                unsafe {
                    (
                        std::ptr::read_volatile(d as *const u64),
                        std::ptr::read_volatile(d.add(8) as *const u32),
                        std::ptr::read_volatile(d.add(12) as *const u16),
                        std::ptr::read_volatile(d.add(14) as *const u16),
                    )
                }
            };
            let (head_slot, chain) = if packed {
                let (pos, _, wrap) = *st;
                let (addr, len, id, flags) = rd(a.desc, 16 * pos as usize);
                let avail = flags & VRING_PACKED_DESC_F_AVAIL != 0;
                let used = flags & VRING_PACKED_DESC_F_USED != 0;
                if avail != wrap || used == wrap {
                    return; // nothing available
                }
                assert!(flags & VRING_DESC_F_NEXT != 0 && flags & VRING_DESC_F_WRITE == 0);
                let (aaddr, alen, _, aflags) = rd(a.desc, 16 * (pos as usize + 1));
                assert!(aflags & VRING_DESC_F_WRITE != 0 && aflags & VRING_DESC_F_NEXT == 0);
                (id, (addr, len, aaddr, alen))
            } else {
                let (last, _, _) = *st;
                // SAFETY: test: the avail ring at the VA the driver gave us.
                let idx = unsafe { std::ptr::read_volatile((a.avail + 2) as *const u16) };
                if idx == last {
                    return;
                }
                let slot = last & (a.size - 1);
                // SAFETY: as above.
                let head = unsafe {
                    std::ptr::read_volatile((a.avail + 4 + 2 * slot as u64) as *const u16)
                };
                let (addr, len, flags, next) = rd(a.desc, 16 * head as usize);
                assert!(flags & VRING_DESC_F_NEXT != 0 && flags & VRING_DESC_F_WRITE == 0);
                let (aaddr, alen, aflags, _) = rd(a.desc, 16 * next as usize);
                assert!(aflags & VRING_DESC_F_WRITE != 0);
                st.0 = last.wrapping_add(1);
                (head, (addr, len, aaddr, alen))
            };
            let (addr, len, aaddr, alen) = chain;
            assert_eq!(alen, 1);
            // SAFETY: test: the driver's command buffer (VA) of `len` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
            self.seen.lock().unwrap().push(bytes.to_vec());
            let (id, used_len, ack) = match reply {
                Reply::Silent => return,
                Reply::Ack(v) => (head_slot as u32, 1, v),
                Reply::Elem(id, l) => (id, l, VIRTIO_NET_OK),
                Reply::Jump => (head_slot as u32, 1, VIRTIO_NET_OK),
            };
            // SAFETY: test: the driver's one-byte ack buffer.
            unsafe { std::ptr::write_volatile(aaddr as *mut u8, ack) };
            if packed {
                let (pos, _, wrap) = *st;
                let d = (a.desc as usize + 16 * pos as usize) as *mut u8;
                // SAFETY: test: the head descriptor, written back as used.
                unsafe {
                    std::ptr::write_volatile(d.add(8) as *mut u32, used_len);
                    std::ptr::write_volatile(d.add(12) as *mut u16, id as u16);
                    let f = if wrap {
                        VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED
                    } else {
                        0
                    };
                    (*(d.add(14) as *const AtomicU16)).store(f, Ordering::Release);
                }
                st.0 = pos + 2;
                if st.0 >= a.size {
                    st.0 -= a.size;
                    st.2 = !wrap;
                }
            } else {
                let used_idx = st.1;
                let slot = (used_idx & (a.size - 1)) as u64;
                // SAFETY: test: the used ring at the VA the driver gave us.
                unsafe {
                    let e = (a.used + 4 + 8 * slot) as *mut u32;
                    std::ptr::write_volatile(e, id);
                    std::ptr::write_volatile(e.add(1), used_len);
                    let step = if reply == Reply::Jump { 2 } else { 1 };
                    st.1 = used_idx.wrapping_add(step);
                    (*((a.used + 2) as *const AtomicU16)).store(st.1, Ordering::Release);
                }
            }
        }
    }

    impl Notifier for SimCtrlDevice {
        fn notify(&self) {
            self.kicks.fetch_add(1, Ordering::Relaxed);
            self.serve();
        }
    }

    fn queue(packed: bool) -> (CtrlQueue, Arc<SimCtrlDevice>) {
        let dev = SimCtrlDevice::new();
        let mut q = CtrlQueue::new("ctrl-test", 2, packed, AddrMode::Va, dev.clone()).unwrap();
        q.set_timeout(Duration::from_millis(30));
        dev.attach(q.setup(), packed);
        (q, dev)
    }

    #[test]
    fn commands_reach_the_device_split_and_packed() {
        for packed in [false, true] {
            let (mut q, dev) = queue(packed);
            assert_eq!(q.setup().base, if packed { 0x8000 } else { 0 });
            // More commands than entries: both layouts wrap.
            for i in 0..100u16 {
                q.execute(CtrlCommand::Promisc(i % 2 == 0)).unwrap();
            }
            q.execute(CtrlCommand::VqPairsSet(2)).unwrap();
            q.execute(CtrlCommand::AllMulti(true)).unwrap();
            let seen = dev.seen.lock().unwrap();
            assert_eq!(seen.len(), 102);
            assert_eq!(seen[0], vec![0, 0, 1]);
            assert_eq!(seen[1], vec![0, 0, 0]);
            assert_eq!(seen[100], vec![4, 0, 2, 0]);
            assert_eq!(seen[101], vec![0, 1, 1]);
            assert_eq!(q.ok, 102);
            assert_eq!(dev.kicks.load(Ordering::Relaxed), 102);
        }
    }

    #[test]
    fn error_ack_is_an_error_and_the_queue_goes_on() {
        for packed in [false, true] {
            let (mut q, dev) = queue(packed);
            *dev.reply.lock().unwrap() = Reply::Ack(VIRTIO_NET_ERR);
            let e = q.execute(CtrlCommand::Promisc(false)).unwrap_err();
            assert!(e.to_string().contains("rejected RX PROMISC 0"), "{e}");
            *dev.reply.lock().unwrap() = Reply::Ack(7);
            assert!(q.execute(CtrlCommand::VqPairsSet(2)).is_err());
            *dev.reply.lock().unwrap() = Reply::Ack(VIRTIO_NET_OK);
            q.execute(CtrlCommand::VqPairsSet(2)).unwrap();
            assert_eq!((q.ok, q.failed), (1, 2));
        }
    }

    #[test]
    fn no_completion_times_out_and_breaks_the_queue() {
        for packed in [false, true] {
            let (mut q, dev) = queue(packed);
            *dev.reply.lock().unwrap() = Reply::Silent;
            let t = Instant::now();
            let e = q.execute(CtrlCommand::VqPairsSet(2)).unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(1));
            assert!(e.to_string().contains("no completion"), "{e}");
            // The chain may still be in the device's hands: never reused.
            *dev.reply.lock().unwrap() = Reply::Ack(VIRTIO_NET_OK);
            let e = q.execute(CtrlCommand::Promisc(true)).unwrap_err();
            assert!(e.to_string().contains("unusable"), "{e}");
            assert_eq!(dev.seen.lock().unwrap().len(), 1);
            // A fresh start makes it usable again.
            q.reset();
            dev.attach(q.setup(), packed);
            q.execute(CtrlCommand::Promisc(true)).unwrap();
        }
    }

    #[test]
    fn hostile_used_elements_are_errors() {
        let cases: &[(bool, Reply, &str)] = &[
            (false, Reply::Elem(5, 1), "buffer 5"),
            (false, Reply::Elem(0, 0), "0 bytes"),
            (false, Reply::Elem(0, 4096), "4096 bytes"),
            (false, Reply::Jump, "jumped"),
            (true, Reply::Elem(9, 1), "buffer 9"),
            (true, Reply::Elem(0, 0), "0 bytes"),
            (true, Reply::Elem(0, u32::MAX), "bytes written"),
        ];
        for &(packed, reply, want) in cases {
            let (mut q, dev) = queue(packed);
            *dev.reply.lock().unwrap() = reply;
            let e = q.execute(CtrlCommand::Promisc(true)).unwrap_err();
            assert!(e.to_string().contains(want), "{reply:?}: {e}");
            assert!(q.broken().is_some());
            assert!(q.execute(CtrlCommand::Promisc(true)).is_err());
        }
    }
}
