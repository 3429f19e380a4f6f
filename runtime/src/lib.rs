// The rooms of this crate, and which way the arrows run (a module uses only those to its
// left; `../shared/tools/module-cycles` checks that there is no cycle):
//
//   journal -> store -> inspect -> error -> replay -> state -> engine -> ctx -> steps -> command
//     -> run -> worker -> testing -> cli
//
// - journal: the events a run records (data only).
// - store: where journals live: the `Store` trait, the file store, the memory store,
//   PostgreSQL; claims, readiness, queues, workers, each run's inbox.
// - inspect: a journal read back as a summary (what `status` and `list` show), and the states
//   it names (a run's, a step's, what a run waits for).
// - error: what tasks, processes and runs fail with (and what a suspended run waits for).
// - replay: a run's journal by step key, checked for consistency and step order.
// - state: task state, the shared resources (a pool, a client) a runner hands to tasks by type.
// - engine: the state of one running run (append, flush, fail, wait, notices) and the hooks
//   seam tests plug into; knows keys and events, not tasks.
// - ctx: the process handle and the step-key scopes.
// - steps: task (a `#[task]` call as a journaled step), parallel + join (`parallel!`, maps),
//   effects (breakpoints, external tasks), select (journaled races).
// - command: command tasks (programs in their own process group).
// - run: the runner: create, drive, resume, post, decide, cancel (deliver: answers to a run
//   another writer holds, through its inbox); and child processes (`run/child.rs`: `ctx.child`
//   needs processes and the runner, so it lives here, not in steps).
// - worker: workers that claim ready runs from a store and drive them.
// - testing: mocks, a virtual clock, automatic answers, journal replay checks (through the
//   engine's hooks seam only).
// - cli: the command line. Beside them: graph (the static graph), used by the runner and the
//   command line and using only the journal.
//! # minder
//!
//! Type-checked, durable workflows in async Rust. A workflow is an ordinary `async fn` marked
//! [`#[process]`](macro@process); its steps are async fns marked [`#[task]`](macro@task);
//! [`parallel!`] runs independent steps at once and returns a typed tuple; [`Ctx::map`] runs a
//! step over a collection with a concurrency limit. Every step is journaled, so a run that
//! stopped (a crash, a deploy) resumes without redoing finished work.
//!
//! ```
//! use minder::prelude::*;
//!
//! #[data]
//! struct Report {
//!     words: usize,
//!     lines: usize,
//! }
//!
//! #[task]
//! async fn count_words(text: String) -> Result<usize, TaskError> {
//!     Ok(text.split_whitespace().count())
//! }
//!
//! #[task]
//! async fn count_lines(text: String) -> Result<usize, TaskError> {
//!     Ok(text.lines().count())
//! }
//!
//! #[process]
//! async fn text_stats(ctx: &Ctx, text: String) -> Result<Report, ProcessError> {
//!     let (words, lines) = parallel!(count_words(text.clone()), count_lines(text.clone()))?;
//!     ctx.log(format!("{words} words on {lines} lines"));
//!     Ok(Report { words, lines })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let runner = Runner::in_memory();
//! let done = runner.run::<text_stats>("one two\nthree".to_string()).await.unwrap();
//! assert_eq!((done.output.words, done.output.lines), (3, 2));
//! # }
//! ```
//!
//! What the macros reject at compile time, and why, is in the README.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod command;
mod ctx;
mod deliver;
mod effects;
mod engine;
mod error;
mod graph;
pub mod inspect;
mod join;
pub mod journal;
mod parallel;
mod replay;
mod run;
mod select;
mod state;
pub mod store;
mod task;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod worker;

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;

pub use crate::ctx::Ctx;
pub use crate::effects::Decision;
pub use crate::engine::Notice;
pub use crate::error::{
    CancelProblem, DecodeProblem, EffectProblem, ProcessError, RunError, TaskError, TaskErrorKind,
    VersionMismatch, Waiting,
};
pub use crate::graph::{Graph, Node, NodeCounts, NodeState, RunStates};
pub use crate::parallel::{Map, DEFAULT_MAP_LIMIT};
pub use crate::run::{
    Finished, Process, Runner, Submit, CANCEL_CHECK, CANCEL_WAIT, DEFAULT_SUSPEND_SLEEPS_OVER,
};
pub use crate::select::Either;
pub use crate::state::TaskState;
// The stores a `Runner` is built on, at the root for convenience; their pages are in `store`.
#[doc(no_inline)]
pub use crate::store::{FileStore, MemoryStore, Store};
pub use crate::task::{artifact_dir, idempotency_key};

/// Marks a data type as journaled: derives serde's `Serialize` and `Deserialize` through
/// minder, so the user's crate needs no direct serde dependency. Serde's field and container
/// attributes (`#[serde(...)]`) work as usual.
///
/// ```
/// use minder::prelude::*;
///
/// #[data]
/// #[derive(Debug, Clone, PartialEq)]
/// struct Summary {
///     file: String,
///     #[serde(default)]
///     bytes: u64,
/// }
/// ```
pub use minder_macros::data;

/// Turns an `async fn` into a journaled task.
///
/// ```
/// use minder::prelude::*;
///
/// #[task(retries = 2, timeout = "30s", reads = [Repo])]
/// async fn count_files(dir: String) -> Result<usize, TaskError> {
///     Ok(std::fs::read_dir(dir)?.count())
/// }
/// ```
///
/// Options: `retries = N` (extra attempts after a failure), `backoff = "100ms"` (first retry
/// delay, doubled each time), `timeout = "60s"` (per attempt; units `ms`, `s`, `m`, `h`),
/// `reads = [A, B]` / `writes = [C]` (resources checked by `parallel!`), `name = "..."`,
/// `crate = "path"`.
///
/// Inside a process, a call is a journaled step: replayed from the journal when it already
/// completed, otherwise run (on the tokio runtime) with its retries and timeout. Outside any
/// process the call just runs the body.
///
/// A parameter marked `#[state]`, a shared reference `&T`, is task state: the value of type
/// `T` registered on the runner ([`Runner::state`]), for a pool, a client, a configuration. It
/// is not journaled and not part of the call (`fetch(url)` below); a runner without it stops
/// the run with [`RunError::MissingState`].
///
/// ```
/// use minder::prelude::*;
///
/// struct Client {
///     base: String,
/// }
///
/// #[task(retries = 2)]
/// async fn fetch(#[state] http: &Client, path: String) -> Result<String, TaskError> {
///     Ok(format!("{}{path}", http.base))
/// }
///
/// #[process]
/// async fn page(_ctx: &Ctx, path: String) -> Result<String, ProcessError> {
///     Ok(fetch(path).await?)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let runner = Runner::in_memory().state(Client { base: "https://example.org".into() });
/// assert_eq!(runner.run::<page>("/a".into()).await.unwrap().output, "https://example.org/a");
/// # }
/// ```
pub use minder_macros::task;

/// Turns `async fn name(ctx: &Ctx, input: I) -> Result<O, E>` into a durable process.
///
/// The function stays callable; a type of the same name (in the type namespace) implements
/// [`Process`], so `runner.run::<name>(input)` runs it. Option `name = "..."` sets the process
/// name (default: the function name with `-` for `_`); `queue = "..."` the queue workers take
/// its runs from (default `default`; see [`worker`]); `crate = "path"` renames minder.
///
/// The body is checked at compile time: no wall clock, randomness, spawning, environment,
/// direct I/O or plain sleeps outside tasks (use the [`Ctx`] equivalents), no task future left
/// un-awaited, and no `parallel!` branch that uses the result of a sibling branch.
pub use minder_macros::process;

/// Runs independent steps at once and returns their results as a tuple, in branch order.
///
/// * `parallel!(a(x), b(y), c(z))` — fail-fast: `Result<(A, B, C), E>`. The first error
///   cancels the unfinished branches and is returned.
/// * `parallel!(settle: a(x), b(y))` — every branch runs to its end:
///   `(Result<A, E>, Result<B, E>)`.
///
/// A branch is any expression whose value is a future of `Result`: a task call, another
/// `parallel!`, or a sequence `async { let a = x().await?; y(a).await }`. Each branch is its own
/// step scope, so replay hands every branch its own results whatever order they finished in.
/// Branches whose tasks declare conflicting `reads`/`writes` of one resource are rejected by
/// `cargo check` (inside a `#[process]`; other shapes at `cargo build`).
///
/// ```
/// use minder::prelude::*;
///
/// #[task]
/// async fn double(x: u32) -> Result<u32, TaskError> {
///     Ok(x * 2)
/// }
///
/// #[task]
/// async fn half(x: u32) -> Result<u32, TaskError> {
///     if x % 2 == 1 {
///         return Err(TaskError::new(format!("{x} is odd")));
///     }
///     Ok(x / 2)
/// }
///
/// #[process]
/// async fn arithmetic(_ctx: &Ctx, x: u32) -> Result<(u32, u32, bool), ProcessError> {
///     // Fail-fast: a tuple of outputs, or the first error.
///     let (a, b) = parallel!(double(x), async {
///         let y = double(x).await?;
///         half(y).await
///     })?;
///     // Settle: each branch's own `Result`.
///     let (even, odd) = parallel!(settle: half(a), half(b));
///     Ok((a, even?, odd.is_err()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let done = Runner::in_memory().run::<arithmetic>(5).await.unwrap();
/// assert_eq!(done.output, (10, 5, true));
/// # }
/// ```
///
/// Without the macro, a fail-fast block is roughly:
///
/// ```text
/// let par = Parallel::enter("a+b", 2);
/// let fa = { let _in = par.branch(0); a(x) };   // a task call takes its step key in branch 0
/// let fb = { let _in = par.branch(1); b(y) };
/// try_join2(par, Box::pin(fa), keep, Box::pin(fb), keep).await   // polls each in its branch
/// ```
#[macro_export]
macro_rules! parallel {
    ($($tokens:tt)*) => {
        $crate::__private::parallel_impl! { ($crate) $($tokens)* }
    };
}

/// A value that can be journaled: serde in both directions, `Send`, owned.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be journaled",
    label = "not serde-serializable and -deserializable",
    note = "mark the type `#[minder::data]` (or derive serde's `Serialize` and `Deserialize`); references and non-`Send` types cannot be journaled"
)]
pub trait Journaled: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Journaled for T {}

/// Everything a workflow file needs: `use minder::prelude::*;`.
pub mod prelude {
    pub use crate::{
        data, parallel, process, task, Ctx, Decision, Finished, ProcessError, Runner, TaskError,
    };
}

/// Re-exported for code the macros generate. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__minder_probe;
    pub use crate::join::*;
    pub use crate::parallel::{
        __minder_tap, __minder_tap_fn, check_call, probe, HasAccess, NotATask, Parallel,
        ProbeOther, ProbeTask, ProbedCall, Slot, SlotOther, SlotTask,
    };
    pub use crate::state::{MissingState, StateMap};
    pub use crate::task::{AccessDef, TaskCall, TaskDef, TaskMeta, TaskReturn};
    pub use crate::TaskState;
    pub use crate::{Ctx, Graph, Journaled, Node, Process};
    use core::future::IntoFuture;
    pub use core::future::{poll_fn, Future};
    pub use core::marker::PhantomData;
    pub use core::pin::pin;
    pub use core::task::Poll;
    pub use futures::future::BoxFuture;
    pub use minder_macros::parallel_impl;
    pub use serde;

    /// The first branch of a fail-fast `parallel!`: a future of `Result<T, E>`, boxed; `E`
    /// is the error type of the whole block.
    pub fn first_branch<'a, F, T, E>(_: &Option<E>, f: F) -> BoxFuture<'a, Result<T, E>>
    where
        F: IntoFuture<Output = Result<T, E>>,
        F::IntoFuture: Send + 'a,
    {
        Box::pin(f.into_future())
    }

    /// A later branch of a fail-fast `parallel!`: a future of `Result<T, B>`, boxed.
    pub fn later_branch<'a, F, T, B>(f: F) -> BoxFuture<'a, Result<T, B>>
    where
        F: IntoFuture<Output = Result<T, B>>,
        F::IntoFuture: Send + 'a,
    {
        Box::pin(f.into_future())
    }

    /// A branch of a `settle:` `parallel!`: any future, boxed.
    pub fn settle_branch<'a, F, O>(f: F) -> BoxFuture<'a, O>
    where
        F: IntoFuture<Output = O>,
        F::IntoFuture: Send + 'a,
    {
        Box::pin(f.into_future())
    }

    /// Says, under the branch, that a later branch's error type differs from the first's.
    #[diagnostic::on_unimplemented(
        message = "this branch fails with `{B}`, but the first branch of this `parallel!` fails with `{Self}`",
        label = "fails with `{B}`, not `{Self}`",
        note = "a fail-fast `parallel!` returns the first error, so all branches need one error type: convert this one in an `async` block (`async {{ x().await.map_err(..) }}`), or use `parallel!(settle: ..)`, which returns each branch's own `Result`"
    )]
    pub trait SameError<B> {
        /// The identity.
        fn same(b: B) -> Self;
    }

    impl<B> SameError<B> for B {
        fn same(b: B) -> B {
            b
        }
    }

    /// The conversion of a later branch's error into the block's (the identity). The branch
    /// comes first: rustc then knows `B` before it learns `E`.
    pub fn same_error<'a, T, B, E>(_: &BoxFuture<'a, Result<T, B>>, _: &Option<E>) -> fn(B) -> E
    where
        E: SameError<B>,
    {
        <E as SameError<B>>::same
    }

    /// A task's body, boxed; its output type is the task's declared return type.
    ///
    /// When the body is not `Send`, rustc shows the line of the `Send` bound under its error (a
    /// value held across an `.await`), so that line says what to do.
    pub fn task_body<R, F>(body: F) -> BoxFuture<'static, R>
    where
        F: Future<Output = R> + 'static,
        F: Send, // a task may resume on another thread: drop the value before the `.await`, or use `Arc` for `Rc`
    {
        Box::pin(body)
    }

    /// The task state of type `T` (a `#[state]` parameter), from a run's map.
    pub fn state<T: TaskState>(map: &StateMap) -> Result<std::sync::Arc<T>, MissingState> {
        map.get::<T>()
    }

    /// Fails to compile, under the user's type, unless `T` can be journaled.
    pub fn assert_journaled<T: Journaled>() {}

    /// What a process returns: a journaled output or an error that can be displayed.
    #[diagnostic::on_unimplemented(
        message = "a `#[process]` must return `Result<Output, Error>` with a journaled `Output` and an `Error: Display`, found `{Self}`",
        label = "not a process result",
        note = "use `Result<Output, ProcessError>`; `Output` needs `#[minder::data]` or serde's derives"
    )]
    pub trait ProcessReturn {
        /// The output.
        type Ok: Journaled;
        /// The error.
        type Err: core::fmt::Display + Send + 'static;
    }

    impl<T: Journaled, E: core::fmt::Display + Send + 'static> ProcessReturn for Result<T, E> {
        type Ok = T;
        type Err = E;
    }
}
