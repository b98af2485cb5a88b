//! Results as they complete: a bounded, streaming map of many messages over
//! the pool.
//!
//! [`WorkerSet::map`] (any iterator) and [`WorkerSet::map_stream`] (any
//! `Stream`) run every message as a job and hand back the outcomes one by
//! one: in input order ([`Map`], Python's `imap`), or as they complete
//! ([`MapUnordered`], from [`Map::unordered`]: Python's `imap_unordered` and
//! `as_completed`, each outcome tagged with its input's index).
//!
//! The input is read lazily, on the caller's side, as outcomes are taken:
//! at most a *window* of jobs (by default twice the worker count) is ever
//! submitted and not yet handed back, so memory stays flat however long the
//! input. In order, the window also bounds the outcomes held back behind a
//! slow one. Every job gets an indexed responder that sends its outcome
//! into one channel owned by the map; dropping the map closes that channel,
//! so the jobs not yet given to a worker are never sent and late replies
//! are discarded.
//!
//! Async code takes outcomes with the inherent `next().await` or through
//! the `futures_core::Stream` impl; synchronous code iterates
//! [`blocking`](Map::blocking), which waits by the pool's blocking rules.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use ipc2_common::{FrameKind, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::blocking::{block_on, may_block};
use crate::dispatch::Job;
use crate::error::Error;
use crate::responder::decoded;
use crate::responder::{Indexed, Outcome, Responder};
use crate::workerset::{Encoded, WorkerSet};

impl<S, W, H> WorkerSet<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// Runs every message of `messages` as a job and yields the outcomes in
    /// input order, reading the input only as fast as outcomes are taken
    /// (Python's `imap`; [`unordered`](Map::unordered) for the order of
    /// completion). At most [`window`](Map::window) jobs (by default twice
    /// the worker count) are submitted and not yet yielded, so a million
    /// inputs take no more memory than a hundred.
    ///
    /// Each outcome is what [`send`](Self::send) would have returned for
    /// its message (one failing job does not end the map) and is counted in
    /// [`stats`](Self::stats) as the map receives it. With a bounded queue
    /// the map's jobs take places like `send`'s and wait for room. Dropping
    /// the map cancels the jobs not yet given to a worker (a reply that
    /// arrives later is discarded); the map keeps the pool alive while it
    /// exists.
    ///
    /// Take outcomes with `next().await` or as a `futures_core::Stream`, or
    /// from synchronous code with [`blocking`](Map::blocking):
    ///
    /// ```
    /// # use test_common::behaviour::{Request, Response};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ipc2_host::Error> {
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(2)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish()
    /// #     .await?;
    /// let mut sums = workers.map((0..1000).map(|i| Request::Add(i, 1)));
    /// let mut expected = 1;
    /// while let Some(sum) = sums.next().await {
    ///     assert_eq!(sum?, Response::Sum(expected));
    ///     expected += 1;
    /// }
    /// # assert_eq!(expected, 1001);
    /// # Ok(()) }
    /// ```
    pub fn map<I>(&self, messages: I) -> Map<S, W, H, FromIter<I::IntoIter>>
    where
        I: IntoIterator<Item = H>,
    {
        self.map_stream(FromIter(messages.into_iter()))
    }

    /// [`map`](Self::map) over a `futures_core::Stream` of messages: the
    /// stream is polled for the next message only while the window has
    /// room. (Pin a stream that is not `Unpin` with `Box::pin`.)
    pub fn map_stream<St>(&self, messages: St) -> Map<S, W, H, St>
    where
        St: Stream<Item = H> + Unpin,
    {
        Map {
            feed: Feed::new(self.clone(), messages),
            held: VecDeque::new(),
        }
    }
}

/// The outcomes of a streaming map, in input order; from
/// [`WorkerSet::map`] or [`WorkerSet::map_stream`].
///
/// Each item is what [`WorkerSet::send`] would have returned for the
/// message at that place in the input. `In` is the input: a
/// `futures_core::Stream` of messages ([`FromIter`] for an iterator).
#[must_use = "a map submits nothing until its outcomes are taken"]
pub struct Map<S, W, H, In> {
    feed: Feed<S, W, H, In>,
    /// Outcomes that completed ahead of an earlier one, by input index
    /// from the next to yield (`None`: still running). Never longer than
    /// the window.
    held: VecDeque<Option<Result<W, Error>>>,
}

/// The outcomes of a streaming map as they complete, each with the index
/// of its message in the input (0-based); from [`Map::unordered`].
///
/// A slow job holds back nothing but itself: the window bounds the jobs
/// running, so the pool stays busy.
#[must_use = "a map submits nothing until its outcomes are taken"]
pub struct MapUnordered<S, W, H, In> {
    feed: Feed<S, W, H, In>,
    /// Outcomes completed before the map was made unordered.
    held: VecDeque<(usize, Result<W, Error>)>,
}

/// The index [`MapUnordered`]'s blocking iterator gives an outcome that is
/// not a job's: a wait refused with [`Error::BlockingInRuntime`].
pub const REFUSED: usize = usize::MAX;

/// A synchronous `Iterator` over a map's outcomes; from
/// [`Map::blocking`] or [`MapUnordered::blocking`].
///
/// It stays on the thread that made it (it is not `Send`), since that is
/// where it checked it may block.
pub struct Blocking<M> {
    map: M,
    _this_thread: PhantomData<*const ()>,
}

/// An iterator of messages as a `futures_core::Stream` that is always
/// ready: the input of [`WorkerSet::map`].
#[derive(Debug)]
pub struct FromIter<I>(I);

impl<I: Iterator> Stream for FromIter<I> {
    type Item = I::Item;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.get_mut().0.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

// Nothing is ever pinned in place inside these: the input is polled
// through `Pin::new`, which needs it to be `Unpin` anyway.
impl<I> Unpin for FromIter<I> {}
impl<S, W, H, In> Unpin for Map<S, W, H, In> {}
impl<S, W, H, In> Unpin for MapUnordered<S, W, H, In> {}

/// What both orders share: reads the input, submits jobs while the window
/// has room, and receives outcomes as they complete.
struct Feed<S, W, H, In> {
    workers: WorkerSet<S, W, H>,
    /// `None` once it has ended (dropped early).
    input: Option<In>,
    /// A job read and encoded, waiting for a place in a bounded queue.
    next: Option<Encoded>,
    /// Taking that place.
    place: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    window: usize,
    /// Jobs submitted so far; also the index of the next one.
    submitted: usize,
    /// Outcomes received from the pool.
    received: usize,
    /// Outcomes handed to the caller; `submitted - released` is what the
    /// window bounds.
    released: usize,
    sender: Indexed,
    outcomes: mpsc::UnboundedReceiver<(usize, Outcome)>,
    /// Jobs ready to submit together, under one lock.
    batch: Vec<Job>,
}

impl<S, W, H, In> Feed<S, W, H, In> {
    fn new(workers: WorkerSet<S, W, H>, input: In) -> Self {
        let (sender, outcomes) = mpsc::unbounded_channel();
        Self {
            window: workers.worker_count().saturating_mul(2).max(1),
            workers,
            input: Some(input),
            next: None,
            place: None,
            submitted: 0,
            received: 0,
            released: 0,
            sender,
            outcomes,
            batch: Vec::new(),
        }
    }

    /// Jobs submitted and not yet received.
    fn running(&self) -> usize {
        self.submitted - self.received
    }
}

impl<S, W, H, In> Feed<S, W, H, In>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    /// The next outcome to complete, with its input index; `None` once the
    /// input has ended and every job has been received.
    fn poll_completed(
        &mut self,
        context: &mut Context<'_>,
    ) -> Poll<Option<(usize, Result<W, Error>)>> {
        self.top_up(context);
        if self.running() == 0 {
            if self.input.is_none() && self.next.is_none() {
                return Poll::Ready(None);
            }
            // Waiting for the input or a queue place, whose wakers are set.
            return Poll::Pending;
        }
        // The map holds a sender, so the channel never ends here.
        let Some((index, outcome)) = ready!(self.outcomes.poll_recv(context)) else {
            return Poll::Ready(None);
        };
        self.received += 1;
        let outcome = decoded(outcome);
        self.workers.shared().counters.record(&outcome);
        Poll::Ready(Some((index, outcome)))
    }

    /// Reads and submits messages while the window has room and the input
    /// (and a bounded queue) are ready.
    fn top_up(&mut self, context: &mut Context<'_>) {
        let timeout = self.workers.shared().config.job_timeout;
        while self.submitted - self.released < self.window {
            let job = match self.next.take() {
                Some(job) => job,
                None => {
                    let Some(input) = self.input.as_mut() else {
                        break;
                    };
                    let message = match Pin::new(input).poll_next(context) {
                        Poll::Ready(Some(message)) => message,
                        Poll::Ready(None) => {
                            self.input = None;
                            break;
                        }
                        Poll::Pending => break,
                    };
                    match self.workers.encode(FrameKind::Job, &message) {
                        Ok(job) => job,
                        Err(error) => {
                            // Never queued: its outcome is known now.
                            Responder::indexed(self.sender.clone(), self.submitted)
                                .send(Err(error));
                            self.submitted += 1;
                            continue;
                        }
                    }
                }
            };
            let Poll::Ready(holds_place) = self.poll_place(context) else {
                self.next = Some(job);
                break;
            };
            let reply = Responder::indexed(self.sender.clone(), self.submitted);
            self.submitted += 1;
            self.batch.push(job.into_job(reply, timeout, holds_place));
        }
        if !self.batch.is_empty() {
            self.workers.shared().dispatch.submit(self.batch.drain(..));
        }
    }

    /// Takes a place in a bounded queue: `Ready(true)` once taken,
    /// `Ready(false)` when the queue is unbounded.
    fn poll_place(&mut self, context: &mut Context<'_>) -> Poll<bool> {
        if self.workers.shared().dispatch.room().is_none() {
            return Poll::Ready(false);
        }
        let place = self.place.get_or_insert_with(|| {
            let workers = self.workers.clone();
            Box::pin(async move {
                workers.place(1).await;
            })
        });
        ready!(place.as_mut().poll(context));
        self.place = None;
        Poll::Ready(true)
    }
}

impl<S, W, H, In> Map<S, W, H, In> {
    /// Sets how many jobs may be submitted and not yet yielded (at least
    /// 1). Default: twice the worker count. A larger window keeps workers
    /// with `max_in_flight_per_worker` above 1 busy, and lets more outcomes
    /// wait behind a slow one; memory grows with it, not with the input.
    pub fn window(mut self, jobs: usize) -> Self {
        self.feed.window = jobs.max(1);
        self
    }

    /// The same map, yielding outcomes as they complete, each with its
    /// input's index (Python's `imap_unordered`/`as_completed`). Outcomes
    /// already completed are yielded first.
    ///
    /// ```
    /// # use test_common::behaviour::{Request, Response};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ipc2_host::Error> {
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(2)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish()
    /// #     .await?;
    /// let naps = [300, 10, 20];
    /// let mut done = workers.map(naps.map(Request::Sleep)).unordered().window(3);
    /// let (first, reply) = done.next().await.unwrap();
    /// assert_ne!(first, 0, "the 300 ms nap finishes last");
    /// assert!(matches!(reply?, Response::Slept(_)));
    /// # Ok(()) }
    /// ```
    pub fn unordered(self) -> MapUnordered<S, W, H, In> {
        let start = self.feed.released;
        let held = (start..)
            .zip(self.held)
            .filter_map(|(index, outcome)| Some((index, outcome?)))
            .collect();
        MapUnordered {
            feed: self.feed,
            held,
        }
    }

    /// Iterates the outcomes from synchronous code, blocking for each:
    /// `for outcome in workers.map(messages).blocking()? { .. }`.
    ///
    /// Fails with [`Error::BlockingInRuntime`] on a current-thread tokio
    /// runtime (take the outcomes with `next().await` there); on a
    /// multi-thread runtime each wait runs inside `block_in_place`. Should
    /// the thread enter a current-thread runtime after that, `next()`
    /// yields that error instead of blocking, and the map carries on once
    /// called from a thread where it may block.
    ///
    /// ```
    /// # use test_common::behaviour::{Request, Response};
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(2)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish_blocking()?;
    /// let lines = vec!["a".repeat(3), "b".repeat(5)];
    /// let lengths: Vec<Response> = workers
    ///     .map(lines.iter().map(|line| Request::Echo(line.clone().into_bytes())))
    ///     .blocking()?
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(lengths, [Response::Echo(b"aaa".to_vec()), Response::Echo(b"bbbbb".to_vec())]);
    /// # Ok::<(), ipc2_host::Error>(())
    /// ```
    pub fn blocking(self) -> Result<Blocking<Self>, Error> {
        Blocking::new(self, "Map::blocking")
    }
}

impl<S, W, H, In> Map<S, W, H, In>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    /// The next outcome in input order, or `None` once every message has
    /// been run and yielded.
    pub async fn next(&mut self) -> Option<Result<W, Error>> {
        std::future::poll_fn(|context| self.poll_ordered(context)).await
    }

    fn poll_ordered(&mut self, context: &mut Context<'_>) -> Poll<Option<Result<W, Error>>> {
        loop {
            if let Some(Some(_)) = self.held.front() {
                self.feed.released += 1;
                return Poll::Ready(self.held.pop_front().flatten());
            }
            let Some((index, outcome)) = ready!(self.feed.poll_completed(context)) else {
                return Poll::Ready(None);
            };
            let place = index - self.feed.released;
            if self.held.len() <= place {
                self.held.resize_with(place + 1, || None);
            }
            self.held[place] = Some(outcome);
        }
    }
}

impl<S, W, H, In> MapUnordered<S, W, H, In> {
    /// Sets how many jobs may be running at once (at least 1). Default:
    /// twice the worker count.
    pub fn window(mut self, jobs: usize) -> Self {
        self.feed.window = jobs.max(1);
        self
    }

    /// Iterates the outcomes from synchronous code, blocking for each; see
    /// [`Map::blocking`] for the rules.
    ///
    /// If, after `blocking()` checked the thread, the thread enters a
    /// current-thread runtime and calls `next()` there, that wait is refused
    /// (blocking could deadlock): the item is [`Error::BlockingInRuntime`]
    /// with the index [`REFUSED`], which no input has.
    pub fn blocking(self) -> Result<Blocking<Self>, Error> {
        Blocking::new(self, "MapUnordered::blocking")
    }
}

impl<S, W, H, In> MapUnordered<S, W, H, In>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    /// The next outcome to complete, with the index of its message in the
    /// input, or `None` once every message has been run and yielded.
    pub async fn next(&mut self) -> Option<(usize, Result<W, Error>)> {
        std::future::poll_fn(|context| self.poll_unordered(context)).await
    }

    fn poll_unordered(
        &mut self,
        context: &mut Context<'_>,
    ) -> Poll<Option<(usize, Result<W, Error>)>> {
        let next = match self.held.pop_front() {
            Some(held) => Some(held),
            None => ready!(self.feed.poll_completed(context)),
        };
        self.feed.released += usize::from(next.is_some());
        Poll::Ready(next)
    }
}

impl<S, W, H, In> Stream for Map<S, W, H, In>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    type Item = Result<W, Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_ordered(context)
    }
}

impl<S, W, H, In> Stream for MapUnordered<S, W, H, In>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    type Item = (usize, Result<W, Error>);

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_unordered(context)
    }
}

impl<M> Blocking<M> {
    /// Checks, on this thread, that waiting may block it.
    fn new(map: M, call: &'static str) -> Result<Self, Error> {
        may_block(call)?;
        Ok(Self {
            map,
            _this_thread: PhantomData,
        })
    }
}

impl<M: Stream + Unpin> Blocking<M> {
    /// Blocks for the map's next item, by the pool's blocking rules.
    fn blocking_next(&mut self, call: &'static str) -> Result<Option<M::Item>, Error> {
        let map = &mut self.map;
        block_on(
            call,
            None,
            std::future::poll_fn(|context| Pin::new(&mut *map).poll_next(context)),
        )
    }
}

impl<S, W, H, In> Iterator for Blocking<Map<S, W, H, In>>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    type Item = Result<W, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.blocking_next("Map::blocking (Iterator::next)")
            .unwrap_or_else(|refused| Some(Err(refused)))
    }
}

impl<S, W, H, In> Iterator for Blocking<MapUnordered<S, W, H, In>>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
    In: Stream<Item = H> + Unpin,
{
    type Item = (usize, Result<W, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        self.blocking_next("MapUnordered::blocking (Iterator::next)")
            .unwrap_or_else(|refused| Some((REFUSED, Err(refused))))
    }
}

impl<S, W, H, In> Feed<S, W, H, In> {
    fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("window", &self.window)
            .field("submitted", &self.submitted)
            .field("running", &self.running())
            .field("yielded", &self.released)
            .field("input_ended", &self.input.is_none())
            .finish()
    }
}

/// Shows the window and how many jobs were submitted, are running and were
/// yielded (message types need not implement `Debug`).
impl<S, W, H, In> std::fmt::Debug for Map<S, W, H, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.feed.debug("Map", f)
    }
}

/// Shows the window and how many jobs were submitted, are running and were
/// yielded (message types need not implement `Debug`).
impl<S, W, H, In> std::fmt::Debug for MapUnordered<S, W, H, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.feed.debug("MapUnordered", f)
    }
}

/// Shows the map it iterates.
impl<M: std::fmt::Debug> std::fmt::Debug for Blocking<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Blocking").field(&self.map).finish()
    }
}
