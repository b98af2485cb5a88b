//! The `#[ipc2::service]` attribute. Use it through the `ipc2` crate
//! (`#[ipc2::service]`); the code it generates names only `::ipc2` paths, so
//! the crate that holds the trait needs no other dependency of ipc2's.
//!
//! - `model`: reads the trait and checks it can become a service; every
//!   rejection says what to change, at the tokens to change.
//! - `expand`: writes the generated items.

mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns a trait into a typed service that a host calls and its worker
/// processes answer: no request enum, response enum, `match` or reply
/// plumbing to write by hand.
///
/// Put the trait in a crate (or module) that the host and the worker both
/// use, or in the one executable that is both (self-exec, as here: the
/// example runs a real pool whose worker is the example itself):
///
/// ```standalone_crate
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// #[ipc2::service]
/// trait Store {
///     /// The value under `key`, if any.
///     fn get(key: String) -> Option<String>;
///     fn set(key: String, value: String);
///     /// Fails with the service's own error.
///     async fn take(&self, key: String) -> Result<String, Missing>;
///     /// Sent without waiting for the worker to run it.
///     #[ipc2(oneway)]
///     fn forget(key: String);
/// }
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// struct Missing(String);
///
/// // With this, `CallError<Missing>` is a `std::error::Error` too (for `?`).
/// impl std::fmt::Display for Missing {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "no value under {:?}", self.0)
///     }
/// }
/// impl std::error::Error for Missing {}
///
/// /// The worker's state: shared by every call it serves.
/// #[derive(Default)]
/// struct Memory(Mutex<HashMap<String, String>>);
///
/// impl Store for Memory {
///     fn get(&self, key: String) -> Option<String> {
///         self.0.lock().unwrap().get(&key).cloned()
///     }
///     fn set(&self, key: String, value: String) {
///         self.0.lock().unwrap().insert(key, value);
///     }
///     async fn take(&self, key: String) -> Result<String, Missing> {
///         self.0.lock().unwrap().remove(&key).ok_or(Missing(key))
///     }
///     fn forget(&self, key: String) {
///         self.0.lock().unwrap().remove(&key);
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // In a worker process (the pool below runs this executable): serve.
///     ipc2::worker::run_if_worker(worker);
///     host()
/// }
///
/// #[tokio::main]
/// async fn worker() -> Result<(), ipc2::worker::ServeError> {
///     Memory::default().serve().await
/// }
///
/// #[tokio::main]
/// async fn host() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = ipc2::Pool::builder().worker_count(1).self_exec().finish().await?;
///     let store = StoreClient::new(pool);
///     store.set("a".into(), "1".into()).await?;
///     assert_eq!(store.get("a".into()).await?, Some("1".into()));
///     assert_eq!(store.take("a".into()).await?, "1");
///     match store.take("a".into()).await {
///         Err(ipc2::CallError::App(Missing(key))) => assert_eq!(key, "a"),
///         other => panic!("expected Missing, got {other:?}"),
///     }
///     store.forget("b".into()).await?;
///     Ok(())
/// }
/// ```
///
/// # What it generates
///
/// For `trait Store`, next to it and with its visibility:
///
/// - **`trait Store`** itself, as the worker implements it: every method
///   takes `&self` (written or not), `async fn`s become
///   `fn .. -> impl Future<Output = T> + Send` (implement them with
///   `async fn`), and the trait requires `Send + Sync + 'static`. State lives
///   in the implementing type and is shared by concurrent calls: keep what
///   changes behind a `Mutex` or atomics. No `Clone` is needed. It gains one
///   provided method, **`serve(self)`**: in a worker process, connects to the
///   host and answers every call until the host closes the connection or
///   asks the worker to stop, then waits for the calls still running.
/// - **`StoreRequest`**: one variant per method, named in `UpperCamelCase`
///   (`set_value` → `SetValue { .. }`), whose fields are the method's
///   arguments. **`StoreResponse`**: one variant per method holding what it
///   returned. Both derive serde's `Serialize` and `Deserialize` (through
///   `ipc2`'s own serde, so the crate needs no serde of its own unless its
///   argument types derive it) and implement `ipc2::host::service::ServiceMessage`
///   (which method a message belongs to).
/// - **`StoreClient`**: the host's typed client. `StoreClient::new(pool)`
///   takes an `ipc2::Pool<StoreRequest, StoreResponse>` (and
///   `StoreClient::from` any `WorkerSet` of those types); `pool()` gives it
///   back (for `stats()`, `shutdown()`); `with_timeout(d)` returns a client
///   of the same pool whose calls each have that deadline. It is `Clone`
///   (clones share the pool) and has one `async` method per service method,
///   taking the same arguments.
///
/// # What a call returns
///
/// - A method declared to return a type written as a path ending in
///   `Result` (`Result<T, E>`, `std::result::Result<T, E>`, `io::Result<T>`,
///   or your crate's own `type Result<T> = ..`) gives the caller
///   `Result<T, ipc2::CallError<E>>`: the worker's `Err(e)` is
///   `CallError::App(e)`, and every error of the pool (the worker died or
///   panicked, the call timed out, the queue was full, the pool is shutting
///   down, ...) is a variant of its own beside it; nothing is nested and `E`
///   needs no conversion. `T` and `E` are found through the type system
///   (`ipc2::host::Fallible`), so aliases work; a type named `Result` that
///   is not `std::result::Result` is a compile error that says so.
/// - Any other method gives `Result<T, ipc2::host::Error>`. An alias under
///   another name (`type Outcome<T> = Result<T, E>`) is such a `T`: write
///   it as `Result<..>` to get `CallError`.
/// - `#[ipc2(oneway)]` methods return nothing; the call resolves once a
///   worker has taken it (`WorkerSet::send_unidirectional`).
/// - A reply of the wrong method (host and worker built from different
///   versions of the service) is `Error::WrongReply` (`CallError::WrongReply`),
///   never a panic. A handler that panics fails its call with
///   `Error::Panicked` (`CallError::Panicked`) carrying the panic's message
///   and location, and the worker goes on serving.
///
/// # How a worker runs calls
///
/// Calls of one worker run concurrently, up to the pool's
/// `max_in_flight_per_worker` (default 1), all sharing the state:
///
/// - An `async fn` handler starts in the worker's receive loop; if it has to
///   wait, it goes on in a task of its own. One that never waits costs no
///   task. Long computations without `.await` belong in a plain `fn`.
/// - A plain `fn` handler may block. With one call at a time it runs right in
///   the receive loop; with more, each call runs on tokio's blocking pool
///   (`spawn_blocking`), which costs a thread hop per call: for light,
///   concurrent calls, prefer `async fn`.
///
/// # What it rejects
///
/// Each with a message at the tokens to change: an item that is not a
/// trait; generic traits or methods; `self` by value, `&mut self` or a
/// typed `self`; borrowed, `impl Trait` or `Self` argument and return
/// types; method bodies; `const`/`unsafe`/`extern` methods; trait items
/// that are not methods; two methods that map to the same variant; a
/// `#[ipc2(oneway)]` method that returns something; unknown `#[ipc2(..)]`
/// options; and method names that clash with what it generates (`serve`,
/// `new`, `pool`, `with_timeout`, `clone`). An argument type that is not
/// serde-serializable is reported by the compiler at that argument.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = proc_macro2::TokenStream::from(item);
    match model::Service::read(args, item) {
        Ok(service) => expand::expand(&service).into(),
        Err(error) => error.to_compile_error().into(),
    }
}
