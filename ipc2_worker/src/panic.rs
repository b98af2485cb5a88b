//! Turning a panic in a job's handler into that job's answer.
//!
//! Isolating code that may panic is a reason to use worker processes at all,
//! so a panic must reach the caller as what it is (with its message and
//! location), not as a vague "no reply" or "worker died". The worker
//! library installs a panic hook (chained to the one already in place, so
//! the usual message still goes to stderr) that remembers each panic's
//! report for the thread, and for the tokio task, that panicked. A job's
//! [`ReplySender`](crate::ReplySender) dropped by that panic then answers
//! with the report instead of "no reply":
//!
//! - dropped while unwinding (`std::thread::panicking()`): a handler run
//!   inline in the worker's loop, in `spawn_blocking`, or on a thread; tokio
//!   also drops a panicked task's future while the panic unwinds;
//! - or dropped, after the panic was caught, by the task that panicked
//!   (found by its task id), in case a runtime drops the future later.
//!
//! A panic that unwinds out of the worker's loop ends the process; the
//! [`Receiver`](crate::Receiver) it drops on the way flushes the report to
//! the host before the process exits (see `Receiver`'s `Drop`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once};

use ipc2_common::protocol::{MAX_PANIC_MESSAGE, PanicReport};
use ipc2_common::sync::lock;

/// Panics of tokio tasks remembered for their tasks' reply senders; older
/// ones (of tasks that held no job) are forgotten.
const REMEMBERED_TASK_PANICS: usize = 64;

thread_local! {
    /// The last panic on this thread.
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

static TASK_PANICS: Mutex<VecDeque<(tokio::task::Id, PanicReport)>> = Mutex::new(VecDeque::new());
static INSTALL: Once = Once::new();

/// Installs the reporting hook once per process, chained to the hook in
/// place (by default the one that prints the panic to stderr). A hook set
/// later with `std::panic::set_hook` replaces it, and panics then reach the
/// host as `NoReply` or as the worker's death.
pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            record(report_of(info));
            previous(info);
        }));
    });
}

fn report_of(info: &PanicHookInfo<'_>) -> PanicReport {
    // What `PanicHookInfo::payload_as_str` does; it needs Rust 1.91, this
    // crate supports 1.85.
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic payload is not a string");
    PanicReport {
        message: truncated(message, MAX_PANIC_MESSAGE).to_owned(),
        location: info.location().map(ToString::to_string),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn record(report: PanicReport) {
    if let Some(task) = tokio::task::try_id() {
        let mut panics = task_panics();
        if panics.len() == REMEMBERED_TASK_PANICS {
            panics.pop_front();
        }
        panics.push_back((task, report.clone()));
    }
    let _ = LAST_PANIC.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(report);
        }
    });
}

fn task_panics() -> std::sync::MutexGuard<'static, VecDeque<(tokio::task::Id, PanicReport)>> {
    lock(&TASK_PANICS)
}

/// The report of the panic that is dropping a reply sender right now, if a
/// panic is what drops it.
pub(crate) fn report_for_dropped_sender() -> Option<PanicReport> {
    if std::thread::panicking() {
        let last = LAST_PANIC
            .try_with(|last| last.try_borrow().ok().and_then(|last| last.clone()))
            .ok()
            .flatten();
        if last.is_some() {
            return last;
        }
    }
    let task = tokio::task::try_id()?;
    task_panics()
        .iter()
        .rev()
        .find(|(id, _)| *id == task)
        .map(|(_, report)| report.clone())
}
