//! The state a pool's handle and its tasks share.
//!
//! One [`Shared`] per set, behind an `Arc`: the `WorkerSet` handle reads it
//! to submit jobs and take snapshots; each slot's supervisor reads it to
//! spawn, admit and serve its worker. It sits in a module of its own so
//! that the handle, the builder and the supervisors depend on it rather than
//! on each other.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::Config;
use crate::dispatch::Dispatch;
use crate::gate::Gate;
use crate::spawner::Spawner;
use crate::stats::Counters;

/// State shared by the handle and the pool's tasks.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) dispatch: Dispatch,
    pub(crate) gate: Arc<Gate>,
    pub(crate) spawner: Spawner,
    pub(crate) socket_path: PathBuf,
    pub(crate) next_job_id: AtomicU64,
    pub(crate) counters: Counters,
}
