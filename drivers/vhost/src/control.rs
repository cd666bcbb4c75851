//! The control thread: listens on the socket (or connects to a front end that listens,
//! with `client=1`), serves one front end at a time through [`crate::backend::serve`],
//! and after each connection stops every ring and forgets the connection's state, so a
//! front end or VM that restarts simply connects again.

use crate::backend::{serve, Backend, ControlStats, Ended};
use crate::shared::Shared;
use pmd_core::unix::Listener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Poll period of the accept and reconnect loops (also how quickly `stop` is seen).
const TICK: Duration = Duration::from_millis(50);
/// Client mode: pause between connection attempts.
const RECONNECT: Duration = Duration::from_millis(200);

/// Where the front end is.
#[derive(Debug)]
pub enum Mode {
    /// Accept front ends on this listening socket (owned by the device).
    Server(Arc<Listener>),
    /// Connect to a front end listening at this path, and reconnect after it goes away.
    Client(PathBuf),
}

/// What the back end offers each front end.
#[derive(Clone, Debug)]
pub struct Offer {
    /// Queue pairs.
    pub queue_pairs: u16,
    /// Checksum and TSO offloads both ways.
    pub tso: bool,
    /// The protocol counters, kept across connections.
    pub stats: Arc<ControlStats>,
}

/// A running control thread.
#[derive(Debug)]
pub struct Control {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Control {
    /// Starts the thread.
    pub fn spawn(
        name: &str,
        mode: Mode,
        offer: Offer,
        shared: Arc<Shared>,
    ) -> std::io::Result<Control> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-ctl"))
            .spawn(move || run(&mode, &offer, &shared, &st))?;
        Ok(Control {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread (the connection is closed, every ring stopped) and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(mode: &Mode, offer: &Offer, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let Some(sock) = next_front_end(mode, shared, stop) else {
            continue;
        };
        shared.counters.connects.fetch_add(1, Ordering::Relaxed);
        let mut backend = Backend::new(offer.queue_pairs, offer.tso, offer.stats.clone());
        // `serve` resets the back end (every ring taken back) whatever ended it.
        let ended = serve(&sock, &mut backend, shared, stop);
        // Counted and explained before the link goes down: whoever sees it down sees why.
        shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        if matches!(ended, Ended::Refused(_)) {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!("vhost: front end disconnected: {ended}");
        shared.set_reason(&ended.to_string());
        shared.stop_all();
    }
    shared.stop_all();
}

/// Waits (one tick, or one connection attempt) for the next front end.
fn next_front_end(mode: &Mode, shared: &Shared, stop: &AtomicBool) -> Option<UnixStream> {
    match mode {
        Mode::Server(l) => match l.accept_within(TICK) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("vhost: accept on {}: {e}", l.path().display());
                std::thread::sleep(TICK);
                None
            }
        },
        Mode::Client(path) => match UnixStream::connect(path) {
            Ok(s) => Some(s),
            Err(_) => {
                shared
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                let mut waited = Duration::ZERO;
                while waited < RECONNECT && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(TICK);
                    waited += TICK;
                }
                None
            }
        },
    }
}
