//! Journaled races: [`Ctx::select`] and [`Ctx::race`] wait for the first of several futures,
//! record which one won, and hand the same winner back on every replay.
//!
//! A raw `tokio::select!` in a process body picks its winner by timing, which differs when the
//! run is replayed after a crash: the replay could take the other branch than the one whose
//! effects the first run already caused. `#[process]` rejects it at compile time and names
//! these two instead.

use crate::ctx::{in_scope, Ctx, Scope};
use crate::engine::Stopped;
use crate::error::RunError;
use crate::journal::Event;
use crate::replay::Replayed;
use futures::future::BoxFuture;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::task::Poll;

/// Which of the two futures of [`Ctx::select`] finished first, with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Either<A, B> {
    /// The first future won.
    First(A),
    /// The second future won.
    Second(B),
}

impl Ctx {
    /// Waits for whichever of `a` and `b` finishes first and drops the other; the winner is
    /// journaled, so a replay returns the same one (running only its branch) whatever the
    /// timing is then. The loser's unfinished steps are journaled as cancelled, its command
    /// tasks killed, and an effect it waited for is no longer pending.
    ///
    /// Each future is polled in its own step scope (`select(label)#n/b0`, `../b1`), so steps
    /// an `async` block takes there have stable keys; `label` names the select in keys.
    ///
    /// ```
    /// use minder::prelude::*;
    /// use minder::Either;
    /// use std::time::Duration;
    ///
    /// #[process]
    /// async fn approve_or_expire(ctx: &Ctx, version: String) -> Result<bool, ProcessError> {
    ///     let decided = ctx
    ///         .select(
    ///             "approval",
    ///             ctx.breakpoint("approve", format!("ship {version}?")),
    ///             ctx.sleep(Duration::from_secs(3600)),
    ///         )
    ///         .await;
    ///     Ok(matches!(decided, Either::First(d) if d.is_approved()))
    /// }
    /// ```
    #[track_caller]
    pub fn select<'a, A, B>(
        &'a self,
        label: &str,
        a: A,
        b: B,
    ) -> impl Future<Output = Either<A::Output, B::Output>> + Send + 'a
    where
        A: IntoFuture,
        A::IntoFuture: Send + 'a,
        A::Output: Send + 'a,
        B: IntoFuture,
        B::IntoFuture: Send + 'a,
        B::Output: Send + 'a,
    {
        let (a, b) = (a.into_future(), b.into_future());
        let branches: Vec<BoxFuture<'a, Either<A::Output, B::Output>>> = vec![
            Box::pin(async move { Either::First(a.await) }),
            Box::pin(async move { Either::Second(b.await) }),
        ];
        let journaled = self.first_of(label.to_string(), self.site(), branches);
        async move { journaled.await.1 }
    }

    /// Waits for the first of `futures` to finish and drops the others: returns the winner's
    /// index and output. Journaled like [`Ctx::select`]: a replay returns the same winner.
    ///
    /// # Panics
    /// When `futures` is empty (there would be nothing to wait for).
    #[track_caller]
    pub fn race<'a, I>(
        &'a self,
        label: &str,
        futures: I,
    ) -> impl Future<Output = (usize, <I::Item as IntoFuture>::Output)> + Send + 'a
    where
        I: IntoIterator,
        I::Item: IntoFuture,
        <I::Item as IntoFuture>::IntoFuture: Send + 'a,
        <I::Item as IntoFuture>::Output: Send + 'a,
    {
        let branches: Vec<BoxFuture<'a, _>> = futures
            .into_iter()
            .map(|f| Box::pin(f.into_future()) as BoxFuture<'a, _>)
            .collect();
        assert!(!branches.is_empty(), "`ctx.race` needs at least one future");
        self.first_of(label.to_string(), self.site(), branches)
    }

    async fn first_of<'a, T: Send + 'a>(
        &'a self,
        label: String,
        (location, node): (String, Option<u32>),
        branches: Vec<BoxFuture<'a, T>>,
    ) -> (usize, T) {
        let scope = self.scope();
        let base = scope.enter(&format!("select({label})"));
        let mut step = base.next_key("winner");
        let run = base.run.clone();
        let n = branches.len();
        let scoped = |i: usize, f: BoxFuture<'a, T>| {
            let branch: Arc<Scope> = base.child(&format!("b{i}"));
            Box::pin(in_scope(Some(branch), f))
        };
        let code = || format!("races {n} futures at {location}");
        let recorded = match run.replayed(&mut step) {
            Err(Stopped) => return std::future::pending().await,
            Ok(None) => None,
            Ok(Some(Replayed::Recorded {
                value,
                location: was,
            })) => match value.as_u64().map(|i| i as usize).filter(|i| *i < n) {
                Some(i) => Some(i),
                None => {
                    let journal = Replayed::Recorded {
                        value,
                        location: was,
                    };
                    run.diverged(&step, &journal, code());
                    return std::future::pending().await;
                }
            },
            Ok(Some(other)) => {
                run.diverged(&step, &other, code());
                return std::future::pending().await;
            }
        };
        if let Some(winner) = recorded {
            // The journal says who won: only that branch runs again; the others are
            // dropped without being polled.
            let branch = branches.into_iter().nth(winner).expect("checked above");
            return (winner, scoped(winner, branch).await);
        }
        let mut racing: Vec<_> = branches
            .into_iter()
            .enumerate()
            .map(|(i, f)| scoped(i, f))
            .collect();
        // Polled in index order every time: of two that finish in one round, the first
        // wins, and the choice is journaled either way.
        let (winner, output) = std::future::poll_fn(|cx| {
            for (i, f) in racing.iter_mut().enumerate() {
                if let Poll::Ready(out) = f.as_mut().poll(cx) {
                    return Poll::Ready((i, out));
                }
            }
            Poll::Pending
        })
        .await;
        // The losers go first: their unfinished steps are journaled as cancelled.
        drop(racing);
        run.append(Event::Recorded {
            key: step.key.clone(),
            value: serde_json::Value::from(winner as u64),
            seq: Some(step.seq),
            location: Some(location),
            node,
        });
        let _active = run.active();
        if let Err(e) = run.flush().await {
            run.fail(RunError::Store(e));
            return std::future::pending().await;
        }
        (winner, output)
    }
}
