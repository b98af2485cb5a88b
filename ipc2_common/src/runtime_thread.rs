//! A thread of its own running a tokio runtime, for code that is not async.
//!
//! A blocking worker (no runtime of the user's) and a pool whose tasks run
//! apart from the caller's runtime both need the same thing: a thread
//! running a current-thread runtime until they are done with it. Other
//! threads run futures on it with [`Handle::block_on`]: the runtime thread
//! drives the I/O and timers meanwhile, so those futures make progress
//! without a runtime on the calling thread.

use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A thread running a current-thread runtime until this value drops;
/// whatever was left on the runtime is dropped then.
#[derive(Debug)]
pub struct RuntimeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl RuntimeThread {
    /// Starts the thread, named `name`. `setup` runs on it first (e.g. to
    /// carry the caller's `tracing` subscriber over); what it returns lives
    /// as long as the thread.
    pub fn start<G: 'static>(
        name: &str,
        setup: impl FnOnce() -> G + Send + 'static,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _setup = setup();
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    /// Where to spawn tasks, or run a future from another thread with
    /// [`Handle::block_on`].
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
