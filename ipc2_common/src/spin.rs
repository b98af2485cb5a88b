//! A short, bounded, adaptive spin before a reader parks.
//!
//! A thread that parks to wait for the next frame pays to be woken: on a
//! virtual machine whose CPU went idle, tens of microseconds, often more
//! than the whole round trip costs otherwise. While frames arrive in quick
//! succession (a worker answering job after job), it is cheaper to poll the
//! socket for a few microseconds before parking, yielding the CPU to
//! whoever else can run between polls. [`Spin`] decides how long: up to
//! [`MAX_SPIN`] right after a wait that was that short and brought a single
//! frame; otherwise not at all, or, with [`Spin::probing`] (where the
//! peer runs on another CPU), once in eight waits, to find out whether
//! frames come that quickly again. A reader that is idle between frames
//! spins in vain at most once per eight frames, and one whose frames come
//! in bursts never does (the peer is busy, every CPU is needed, and the
//! next burst is not microseconds away). [`spin_then`] does it.
//!
//! Spinning only helps where polling a read makes the system call (the
//! Unix socket halves of [`crate::descriptors`] read before asking the
//! reactor); elsewhere the reactor would have to report the bytes first.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Longest spin before parking.
pub const MAX_SPIN: Duration = Duration::from_micros(50);

/// Every this many waits that did not spin (for want of a short wait
/// before them, not because frames came in a burst), one spins anyway
/// (with [`Spin::probing`]). A reader that parks counts its own wake-up
/// (tens of microseconds on a virtual machine) in its wait, so once it
/// parks its waits look too long to spin for, even when the peer answers
/// well within [`MAX_SPIN`]: without a probe it would park for good. One
/// probe in eight spins at most [`MAX_SPIN`] in vain, an eighth of that
/// per frame, plus, on a worker, two `epoll_ctl` calls to take its socket
/// off the reactor and back. A/B, unpinned round trips with the seed's
/// worker: 15-35k a second without probes, 38-43k with them.
const PROBE_EVERY: u32 = 8;

/// Whether the next wait spins, from how the last one went.
#[derive(Debug, Default)]
pub struct Spin {
    /// The last wait ended within [`MAX_SPIN`].
    recent: AtomicBool,
    /// The last wait brought more than one frame.
    burst: AtomicBool,
    /// Waits that did not spin since the last that did.
    unspun: AtomicU32,
    /// Probe now and then (see [`Spin::probing`]).
    probe: bool,
}

/// Whether this process may run on one CPU only (its affinity mask, or a
/// cgroup quota of one CPU; counted as the host's builder counts its
/// default workers). Then its peer runs only when this side yields or
/// parks: a reader gains nothing by trying a read the reactor has not
/// reported, nor by probing (see [`Spin::for_this_machine`]). A quota of
/// one CPU spread over several cores counts as one, though both sides may
/// then run at once: that costs only the early wake-ups and probes, never
/// a read.
pub fn one_cpu() -> bool {
    num_cpus::get() == 1
}

impl Spin {
    /// A spin that does not probe on one CPU ([`one_cpu`]) and probes
    /// ([`Spin::probing`]) elsewhere.
    pub fn for_this_machine() -> Self {
        match one_cpu() {
            true => Self::default(),
            false => Self::probing(),
        }
    }

    /// A spin that probes: after long waits, it still spins once in eight
    /// waits, since a reader that parks counts its own wake-up in its wait
    /// and would otherwise never learn that frames come quickly again. For
    /// a reader whose peer runs on another CPU: on a single CPU the peer
    /// answers only once the reader yields or parks, and probing there made
    /// pinned round trips bimodal (p50 1.16-1.69x the blocking floor across
    /// runs, 1.05-1.39x without).
    pub fn probing() -> Self {
        Self {
            probe: true,
            ..Self::default()
        }
    }

    /// How long the next wait may spin.
    pub fn budget(&self) -> Duration {
        if self.burst.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        if self.recent.load(Ordering::Relaxed) {
            self.unspun.store(0, Ordering::Relaxed);
            return MAX_SPIN;
        }
        // Now and then, spin anyway: see `PROBE_EVERY`.
        if self.probe && self.unspun.fetch_add(1, Ordering::Relaxed) + 1 >= PROBE_EVERY {
            self.unspun.store(0, Ordering::Relaxed);
            return MAX_SPIN;
        }
        Duration::ZERO
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_spins_after_short_waits_never_in_bursts_and_probes_after_long_ones() {
        let spin = Spin::probing();
        // Nothing seen yet: a probe is due only after a few waits.
        spin.observe(MAX_SPIN * 10);
        let spun: Vec<bool> = (0..2 * PROBE_EVERY)
            .map(|_| !spin.budget().is_zero())
            .collect();
        let probes = spun.iter().filter(|&&spun| spun).count();
        assert_eq!(
            probes, 2,
            "one probe per {PROBE_EVERY} long waits: {spun:?}"
        );
        // A short wait: every next wait spins.
        spin.observe(Duration::from_micros(5));
        assert!((0..3).all(|_| !spin.budget().is_zero()));
        // Frames in a burst: no spin, not even a probe.
        spin.frames(3);
        assert!((0..2 * PROBE_EVERY).all(|_| spin.budget().is_zero()));
        // A spin that does not probe never spins after long waits.
        let spin = Spin::default();
        spin.observe(MAX_SPIN * 10);
        assert!((0..2 * PROBE_EVERY).all(|_| spin.budget().is_zero()));
    }
}
