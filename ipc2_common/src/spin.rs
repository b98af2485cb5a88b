//! A short, bounded, adaptive spin before a reader parks.
//!
//! A thread that parks to wait for the next frame pays to be woken: on a
//! virtual machine whose CPU went idle, tens of microseconds, often more
//! than the whole round trip costs otherwise. While frames arrive in quick
//! succession (a worker answering job after job), it is cheaper to poll the
//! socket for a few microseconds before parking, yielding the CPU to
//! whoever else can run between polls. [`Spin`] decides how long: up to
//! [`MAX_SPIN`] right after a wait that was that short and brought a single
//! frame, and not at all otherwise: an idle reader never spins, and neither
//! does one whose frames come in bursts (the peer is busy, every CPU is
//! needed, and the next burst is not microseconds away). [`spin_then`]
//! does it.
//!
//! Spinning only helps where polling a read makes the system call (the
//! Unix socket halves of [`crate::descriptors`] read before asking the
//! reactor); elsewhere the reactor would have to report the bytes first.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Longest spin before parking.
pub const MAX_SPIN: Duration = Duration::from_micros(50);

/// Whether the next wait spins, from how the last one went.
#[derive(Debug, Default)]
pub struct Spin {
    /// The last wait ended within [`MAX_SPIN`].
    recent: AtomicBool,
    /// The last wait brought more than one frame.
    burst: AtomicBool,
}

impl Spin {
    /// How long the next wait may spin.
    pub fn budget(&self) -> Duration {
        match self.recent.load(Ordering::Relaxed) && !self.burst.load(Ordering::Relaxed) {
            true => MAX_SPIN,
            false => Duration::ZERO,
        }
    }

    /// Records how many frames the last wait brought.
    pub fn frames(&self, frames: usize) {
        self.burst.store(frames > 1, Ordering::Relaxed);
    }

    /// Records how long a wait took.
    pub fn observe(&self, waited: Duration) {
        self.recent.store(waited <= MAX_SPIN, Ordering::Relaxed);
    }
}

thread_local! {
    /// This thread is inside a spinning poll of [`spin_then`].
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is polling a future without a waker, inside
/// [`spin_then`]'s spin: an I/O source polled then need not (and, to spare
/// the reactor needless wake-ups, should not) be registered with it, since
/// the spin polls it again (or, once it gives up, awaits it with a waker).
pub(crate) fn spinning() -> bool {
    SPINNING.with(Cell::get)
}

/// Marks this thread as spinning until dropped (also when the poll
/// panics, so a thread that goes on does not think it still spins).
struct Spinning;

impl Spinning {
    fn enter() -> Self {
        SPINNING.with(|spinning| spinning.set(true));
        Self
    }
}

impl Drop for Spinning {
    fn drop(&mut self) {
        SPINNING.with(|spinning| spinning.set(false));
    }
}

/// Polls `future` without a waker, yielding the thread between polls, for
/// at most `spin`'s budget; then awaits it as usual. Records how long the
/// wait took.
pub async fn spin_then<F: Future>(spin: &Spin, future: F) -> F::Output {
    let started = Instant::now();
    let mut future = pin!(future);
    let budget = spin.budget();
    if !budget.is_zero() {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let polled = {
                let _spinning = Spinning::enter();
                future.as_mut().poll(&mut cx)
            };
            if let Poll::Ready(output) = polled {
                spin.observe(started.elapsed());
                return output;
            }
            if started.elapsed() >= budget {
                break;
            }
            std::thread::yield_now();
        }
    }
    let output = future.await;
    spin.observe(started.elapsed());
    output
}
