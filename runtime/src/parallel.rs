//! Support for `parallel!` (branch scopes, the compile-time access check) and `ctx.map`.

use crate::ctx::{current_scope, in_scope, with_scope, Ctx, Evaluating, Scope};
use crate::engine::Notice;
use crate::task::{AccessDef, TaskCall, TaskMeta};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::Arc;

/// The scopes of one `parallel!` block: one per branch.
#[doc(hidden)]
#[derive(Debug)]
pub struct Parallel {
    branches: Vec<Option<Arc<Scope>>>,
}

impl Parallel {
    /// Enters a parallel block of `n` branches labelled `label` in the current scope.
    pub fn enter(label: &str, n: usize) -> Self {
        let branches = match current_scope() {
            None => vec![None; n],
            Some(scope) => {
                let base = scope.enter(&format!("par({label})"));
                (0..n).map(|i| Some(base.child(&format!("b{i}")))).collect()
            }
        };
        Parallel { branches }
    }

    /// While the returned guard lives, the branch expression `i` is evaluated in its scope
    /// (task calls take their keys there).
    pub fn branch(&self, i: usize) -> BranchGuard {
        BranchGuard {
            _evaluating: Evaluating::enter(self.branches[i].clone()),
        }
    }

    /// Runs `poll` (of branch `i`'s future) inside branch `i`.
    pub(crate) fn poll_branch<R>(&self, i: usize, poll: impl FnOnce() -> R) -> R {
        with_scope(self.branches[i].clone(), poll)
    }

    /// Polls a branch future inside branch `i`.
    pub fn poll_in<F: Future>(&self, i: usize, fut: F) -> impl Future<Output = F::Output> {
        in_scope(self.branches[i].clone(), fut)
    }
}

/// Returned by [`Parallel::branch`].
#[doc(hidden)]
#[derive(Debug)]
#[must_use]
pub struct BranchGuard {
    _evaluating: Evaluating,
}

/// What a branch of `parallel!` declares it accesses (task calls) or not (anything else).
#[doc(hidden)]
pub trait HasAccess {
    const ACCESS: &'static AccessDef;
}

/// The probe result for a branch that is not a direct task call.
#[doc(hidden)]
#[derive(Debug)]
pub struct NotATask;

impl HasAccess for NotATask {
    const ACCESS: &'static AccessDef = &AccessDef::NONE;
}

impl<M: TaskMeta> HasAccess for TaskCall<M> {
    const ACCESS: &'static AccessDef = M::ACCESS;
}

/// Autoref probe, chosen for a direct task call.
#[doc(hidden)]
pub trait ProbeTask {
    type Probed;
    fn __minder_probe(&self) -> PhantomData<Self::Probed>;
}

impl<M: TaskMeta> ProbeTask for TaskCall<M> {
    type Probed = TaskCall<M>;
    fn __minder_probe(&self) -> PhantomData<TaskCall<M>> {
        PhantomData
    }
}

/// Autoref probe, chosen for anything else.
#[doc(hidden)]
pub trait ProbeOther {
    fn __minder_probe(&self) -> PhantomData<NotATask>;
}

impl<T> ProbeOther for &T {
    fn __minder_probe(&self) -> PhantomData<NotATask> {
        PhantomData
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn contains(list: &[&str], x: &str) -> bool {
    let mut i = 0;
    while i < list.len() {
        if same(list[i], x) {
            return true;
        }
        i += 1;
    }
    false
}

// The check `#[process]` makes at `cargo check` (type-check time, no monomorphization): for
// every call in a branch of a `parallel!` it writes `__minder_probe!(branch "name" path)` in a
// constant, which imports the path as `__minder_t` and expands `__minder_t!(..)`. `#[task]`
// gives each task that declares access a macro of the task's own name (macro namespace) that
// expands to that access; for any other callee the glob of `probe` supplies a `__minder_t!`
// that expands to none.

impl<M: TaskMeta> HasAccess for M {
    const ACCESS: &'static AccessDef = M::ACCESS;
}

/// One call of a `parallel!` branch as `#[process]` writes it in its constant: `branch`, the
/// path as written, and the path. Written out here rather than by the proc macro: rustc expands
/// a `macro_rules!` far more cheaply than it takes tokens from a proc macro.
#[doc(hidden)]
#[macro_export]
macro_rules! __minder_probe {
    ($branch:literal $name:literal $($path:tt)+) => {
        $crate::__private::ProbedCall {
            branch: $branch,
            name: $name,
            // The path's own `__minder_t!` (a task's) shadows the one of the glob `use
            // $crate::__private::probe::*` around the probes (no access); the glob is outside
            // this block, since a macro-expanded name may not shadow a glob's in its own.
            access: &{
                use $($path)+ as __minder_t;
                __minder_t!(@__minder_access $crate::__private)
            },
        }
    };
}

/// What a probed path that is not a task with declared access expands to: no access.
#[doc(hidden)]
#[macro_export]
macro_rules! __minder_no_access {
    (@__minder_access $($k:tt)*) => {
        $($k)*::AccessDef::NONE
    };
}

/// Glob-imported by a probe, so a task's own `__minder_t!` wins.
#[doc(hidden)]
pub mod probe {
    pub use crate::__minder_no_access as __minder_t;
}

// The check `parallel!` makes when the process is compiled to code, for the calls the constant
// of `#[process]` cannot name (through a parameter, `Type::f`, outside a process): each such
// call in a branch, at any depth, is wrapped in `__minder_tap(&slot, call)`, which gives the slot the
// call's type; after the branches are created, `(&slot).__minder_slot()` picks the task's type
// (or `NotATask`), and a generic function's constants compare them.

/// Holds the type of a tapped call (`fn() -> T`: `Send`, `Sync` and `Copy` whatever `T` is,
/// so a branch that captures it stays `Send`).
#[doc(hidden)]
pub type Slot<T> = PhantomData<fn() -> T>;

/// A tapped call: its value, unchanged; the slot learns its type.
#[doc(hidden)]
#[inline(always)]
pub fn __minder_tap<T>(_: &Slot<T>, value: T) -> T {
    value
}

/// A function passed by name to `ctx.map`: unchanged; the slot learns what it returns.
#[doc(hidden)]
#[inline(always)]
pub fn __minder_tap_fn<F: FnMut(A) -> R, A, R>(_: &Slot<R>, f: F) -> F {
    f
}

/// Autoref probe of a slot, chosen when it holds a task call.
#[doc(hidden)]
pub trait SlotTask {
    type Task;
    fn __minder_slot(&self) -> PhantomData<Self::Task>;
}

impl<M: TaskMeta> SlotTask for Slot<TaskCall<M>> {
    type Task = M;
    fn __minder_slot(&self) -> PhantomData<M> {
        PhantomData
    }
}

/// Autoref probe of a slot, chosen for anything else.
#[doc(hidden)]
pub trait SlotOther {
    fn __minder_slot(&self) -> PhantomData<NotATask>;
}

impl<T> SlotOther for &Slot<T> {
    fn __minder_slot(&self) -> PhantomData<NotATask> {
        PhantomData
    }
}

/// A call in branch `branch` of a `parallel!`, as written (`name`), with its declared access.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ProbedCall {
    pub branch: usize,
    pub name: &'static str,
    pub access: &'static AccessDef,
}

/// A message built at compile time: a constant's `panic!` takes one `&str`.
#[derive(Debug)]
struct ConflictMessage {
    buf: [u8; 1024],
    len: usize,
}

impl ConflictMessage {
    const fn push(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() && self.len < self.buf.len() {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn push_number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while k < digits.len() && self.len < self.buf.len() {
            self.buf[self.len] = digits[k];
            self.len += 1;
            k += 1;
        }
    }

    /// The message (cut at a character boundary if it did not fit).
    const fn as_str(&self) -> &str {
        let mut len = self.len;
        loop {
            match core::str::from_utf8(self.buf.split_at(len).0) {
                Ok(s) => return s,
                Err(_) => len -= 1,
            }
        }
    }
}

/// The first resource that call `at` and a call of an earlier branch both touch, one of them
/// writing: `(earlier call, resource, call `at` writes it, the earlier one writes it)`.
const fn first_conflict(
    calls: &[ProbedCall],
    at: usize,
) -> Option<(usize, &'static str, bool, bool)> {
    let this = calls[at].access;
    let mut i = 0;
    while i < calls.len() {
        if calls[i].branch < calls[at].branch {
            let other = calls[i].access;
            let mut w = 0;
            while w < this.writes.len() {
                let r = this.writes[w];
                if contains(other.writes, r) {
                    return Some((i, r, true, true));
                }
                if contains(other.reads, r) {
                    return Some((i, r, true, false));
                }
                w += 1;
            }
            let mut w = 0;
            while w < other.writes.len() {
                if contains(this.reads, other.writes[w]) {
                    return Some((i, other.writes[w], false, true));
                }
                w += 1;
            }
        }
        i += 1;
    }
    None
}

/// Panics, at compile time and at the caller's location (the user's call, as `#[process]`
/// spans it), when the task of call `at` conflicts with the task of a call of an earlier branch.
#[doc(hidden)]
#[track_caller]
pub const fn check_call(calls: &[ProbedCall], at: usize) {
    if let Some(found) = first_conflict(calls, at) {
        panic!("{}", conflict_message(calls, at, found).as_str());
    }
}

/// The error for call `at` of a `parallel!` whose task conflicts (as [`first_conflict`] found)
/// with the task of a call in an earlier branch.
const fn conflict_message(
    calls: &[ProbedCall],
    at: usize,
    (other, resource, this_writes, other_writes): (usize, &str, bool, bool),
) -> ConflictMessage {
    let (x, y) = (calls[at].name, calls[other].name);
    let mut m = ConflictMessage {
        buf: [0; 1024],
        len: 0,
    };
    m.push("task `");
    m.push(x);
    m.push("` ");
    m.push(if this_writes { "writes" } else { "reads" });
    m.push(" `");
    m.push(resource);
    m.push("` while task `");
    m.push(y);
    m.push("` ");
    m.push(if other_writes { "writes" } else { "reads" });
    m.push(if this_writes && other_writes {
        " it too"
    } else {
        " it"
    });
    m.push(" in branch ");
    m.push_number(calls[other].branch + 1);
    m.push(" of the `parallel!` running both");
    m.push(": branches run at the same time, so ");
    if this_writes && other_writes {
        m.push("the two writes can interleave");
    } else {
        m.push("`");
        m.push(if this_writes { y } else { x });
        m.push("` can see the write half done");
    }
    m.push("; await one of the two before the `parallel!`, or, if ");
    if this_writes && other_writes {
        m.push("one of them");
    } else {
        m.push("`");
        m.push(if this_writes { x } else { y });
        m.push("`");
    }
    m.push(" only reads `");
    m.push(resource);
    m.push("`, declare `reads = [");
    m.push(resource);
    m.push("]` on its `#[task]`");
    m
}

impl Ctx {
    /// Runs `f` on every item, at most [`Map::limit`] at once (32 unless set), and returns the
    /// results in input order. Each item is its own scope, so its steps have stable keys.
    ///
    /// Await it for fail-fast (the first error cancels the rest) or call [`Map::settle`] for
    /// one `Result` per item. `label` names the map in keys, progress and the graph.
    ///
    /// ```
    /// use minder::prelude::*;
    ///
    /// #[task]
    /// async fn word_count(line: String) -> Result<usize, TaskError> {
    ///     Ok(line.split_whitespace().count())
    /// }
    ///
    /// #[task]
    /// async fn must_be_short(line: String) -> Result<String, TaskError> {
    ///     if line.len() > 10 {
    ///         return Err(TaskError::new(format!("too long: {line}")));
    ///     }
    ///     Ok(line)
    /// }
    ///
    /// #[process]
    /// async fn words(ctx: &Ctx, lines: Vec<String>) -> Result<(usize, usize), ProcessError> {
    ///     // Fail-fast, at most 4 lines at once; item `i`'s steps are keyed `map(count)#0/i/..`.
    ///     let counts = ctx.map("count", lines.clone(), word_count).limit(4).await?;
    ///     // Every item to its end, one `Result` each.
    ///     let checked = ctx.map("check", lines, must_be_short).settle().await;
    ///     let short = checked.iter().filter(|r| r.is_ok()).count();
    ///     Ok((counts.iter().sum(), short))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let lines = vec!["one two".to_string(), "three four five six".to_string()];
    /// let done = Runner::in_memory().run::<words>(lines).await.unwrap();
    /// assert_eq!(done.output, (6, 1));
    /// # }
    /// ```
    pub fn map<I, F, Fut, R, E>(&self, label: &'static str, items: I, f: F) -> Map<'_, I::Item, F>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        Map::new(self, label, items.into_iter().collect(), f)
    }
}

/// A map over a collection, built by [`Ctx::map`]. Await it (fail-fast) or [`Map::settle`] it.
#[must_use = "a map does nothing unless it is awaited"]
pub struct Map<'c, T, F> {
    ctx: &'c Ctx,
    label: &'static str,
    items: Vec<T>,
    f: F,
    limit: usize,
}

impl<T, F> fmt::Debug for Map<'_, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("label", &self.label)
            .field("items", &self.items.len())
            .field("limit", &self.limit)
            .finish()
    }
}

/// The default number of map items in flight at once.
pub const DEFAULT_MAP_LIMIT: usize = 32;

impl<'c, T, F> Map<'c, T, F> {
    pub(crate) fn new(ctx: &'c Ctx, label: &'static str, items: Vec<T>, f: F) -> Self {
        Map {
            ctx,
            label,
            items,
            f,
            limit: DEFAULT_MAP_LIMIT,
        }
    }

    /// At most `limit` items in flight at once.
    ///
    /// # Panics
    /// If `limit` is zero.
    pub fn limit(mut self, limit: usize) -> Self {
        assert!(limit > 0, "a map limit must be at least 1");
        self.limit = limit;
        self
    }
}

impl<'c, T, F, Fut, R, E> Map<'c, T, F>
where
    T: Send + 'c,
    F: FnMut(T) -> Fut + Send + 'c,
    Fut: Future<Output = Result<R, E>> + Send + 'c,
    R: Send + 'c,
    E: Send + 'c,
{
    /// Runs every item to its end and returns one `Result` per item, in input order: one
    /// failure does not stop or lose the others.
    pub async fn settle(self) -> Vec<Result<R, E>> {
        match self.drive(false).await {
            Ok(all) => all,
            Err(_) => unreachable!("settle never stops early"),
        }
    }

    async fn drive(self, fail_fast: bool) -> Result<Vec<Result<R, E>>, E> {
        let Map {
            ctx,
            label,
            items,
            mut f,
            limit,
        } = self;
        let scope = ctx.scope();
        let base = scope.enter(&format!("map({label})"));
        let total = items.len();
        let mut results: Vec<Option<Result<R, E>>> = (0..total).map(|_| None).collect();
        let mut pending = items.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        let mut done = 0;
        loop {
            while running.len() < limit {
                let Some((i, item)) = pending.next() else {
                    break;
                };
                let item_scope = Some(base.child(&i.to_string()));
                let fut = with_scope(item_scope.clone(), || f(item));
                running.push(in_scope(item_scope, async move { (i, fut.await) }));
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            done += 1;
            scope.run.notify(Notice::Progress {
                label: label.to_string(),
                done,
                total,
            });
            match result {
                Err(e) if fail_fast => return Err(e),
                r => results[i] = Some(r),
            }
        }
        Ok(results.into_iter().flatten().collect())
    }
}

impl<'c, T, F, Fut, R, E> IntoFuture for Map<'c, T, F>
where
    T: Send + 'c,
    F: FnMut(T) -> Fut + Send + 'c,
    Fut: Future<Output = Result<R, E>> + Send + 'c,
    R: Send + 'c,
    E: Send + 'c,
{
    type Output = Result<Vec<R>, E>;
    type IntoFuture = BoxFuture<'c, Result<Vec<R>, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let all = self.drive(true).await?;
            Ok(all
                .into_iter()
                .map(|r| match r {
                    Ok(v) => v,
                    Err(_) => unreachable!("fail-fast returned at the first error"),
                })
                .collect())
        })
    }
}
