//! The joins behind `parallel!`: fail-fast (`try_joinN`) and settle-all (`settleN`) for 1 to 12
//! branches, written once here so a process crate type-checks a call, not a poll loop per block.
//!
//! Each join is a plain struct implementing `Future` (not an `async fn`): the branches arrive
//! boxed, so a join holds boxes and result slots, and a crate that uses it has no coroutine of
//! ours to lay out. Branch `i` is polled inside its scope of the block's [`Parallel`].

use crate::parallel::Parallel;
use futures::future::BoxFuture;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The conversion of the first branch's error: it is the block's error type already.
pub fn keep<E>(e: E) -> E {
    e
}

macro_rules! joins {
    ($($try_join:ident $TryJoin:ident $settle:ident $Settle:ident
        ($($i:tt $f:ident $c:ident $t:ident $b:ident),+);)+) => {$(
        /// A fail-fast join: polls every branch; the first error is returned (converted to the
        /// block's error type) and the other branches are dropped with the join; otherwise all
        /// results, in branch order.
        #[must_use = "a join does nothing unless awaited"]
        #[allow(clippy::type_complexity)]
        pub struct $TryJoin<'a, E, $($t, $b),+> {
            par: Parallel,
            branches: ($((BoxFuture<'a, Result<$t, $b>>, fn($b) -> E),)+),
            done: ($(Option<$t>,)+),
        }

        // Never pin-projected: the branches are boxed, the results are only moved out.
        impl<E, $($t, $b),+> Unpin for $TryJoin<'_, E, $($t, $b),+> {}

        impl<E, $($t, $b),+> fmt::Debug for $TryJoin<'_, E, $($t, $b),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($TryJoin))
                    .field("par", &self.par)
                    .finish_non_exhaustive()
            }
        }

        /// Joins the branches of a fail-fast block: each with the conversion of its error.
        #[allow(clippy::too_many_arguments)]
        pub fn $try_join<'a, E, $($t, $b),+>(
            par: Parallel,
            $($f: BoxFuture<'a, Result<$t, $b>>, $c: fn($b) -> E),+
        ) -> $TryJoin<'a, E, $($t, $b),+> {
            $TryJoin {
                par,
                branches: ($(($f, $c),)+),
                done: ($(Option::<$t>::None,)+),
            }
        }

        impl<E, $($t, $b),+> Future for $TryJoin<'_, E, $($t, $b),+> {
            type Output = Result<($($t,)+), E>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let this = self.get_mut();
                let mut pending = false;
                $(
                    if this.done.$i.is_none() {
                        let (fut, convert) = &mut this.branches.$i;
                        match this.par.poll_branch($i, || fut.as_mut().poll(cx)) {
                            Poll::Ready(Ok(v)) => this.done.$i = Some(v),
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(convert(e))),
                            Poll::Pending => pending = true,
                        }
                    }
                )+
                if pending {
                    return Poll::Pending;
                }
                Poll::Ready(Ok(($(this.done.$i.take().expect("every branch finished"),)+)))
            }
        }

        /// A settle-all join: polls every branch to its end; all outputs, in branch order.
        #[must_use = "a join does nothing unless awaited"]
        pub struct $Settle<'a, $($t),+> {
            par: Parallel,
            branches: ($(BoxFuture<'a, $t>,)+),
            done: ($(Option<$t>,)+),
        }

        // Never pin-projected: the branches are boxed, the results are only moved out.
        impl<$($t),+> Unpin for $Settle<'_, $($t),+> {}

        impl<$($t),+> fmt::Debug for $Settle<'_, $($t),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Settle))
                    .field("par", &self.par)
                    .finish_non_exhaustive()
            }
        }

        /// Joins the branches of a `settle:` block.
        #[allow(clippy::too_many_arguments)]
        pub fn $settle<'a, $($t),+>(par: Parallel, $($f: BoxFuture<'a, $t>),+) -> $Settle<'a, $($t),+> {
            $Settle {
                par,
                branches: ($($f,)+),
                done: ($(Option::<$t>::None,)+),
            }
        }

        impl<$($t),+> Future for $Settle<'_, $($t),+> {
            type Output = ($($t,)+);

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let this = self.get_mut();
                let mut pending = false;
                $(
                    if this.done.$i.is_none() {
                        let fut = &mut this.branches.$i;
                        match this.par.poll_branch($i, || fut.as_mut().poll(cx)) {
                            Poll::Ready(v) => this.done.$i = Some(v),
                            Poll::Pending => pending = true,
                        }
                    }
                )+
                if pending {
                    return Poll::Pending;
                }
                Poll::Ready(($(this.done.$i.take().expect("every branch finished"),)+))
            }
        }
    )+};
}

joins! {
    try_join1 TryJoin1 settle1 Settle1 (0 f0 c0 T0 B0);
    try_join2 TryJoin2 settle2 Settle2 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1);
    try_join3 TryJoin3 settle3 Settle3 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2);
    try_join4 TryJoin4 settle4 Settle4 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3);
    try_join5 TryJoin5 settle5 Settle5 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3,
        4 f4 c4 T4 B4);
    try_join6 TryJoin6 settle6 Settle6 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3,
        4 f4 c4 T4 B4, 5 f5 c5 T5 B5);
    try_join7 TryJoin7 settle7 Settle7 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3,
        4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6);
    try_join8 TryJoin8 settle8 Settle8 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3,
        4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6, 7 f7 c7 T7 B7);
    try_join9 TryJoin9 settle9 Settle9 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2, 3 f3 c3 T3 B3,
        4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6, 7 f7 c7 T7 B7, 8 f8 c8 T8 B8);
    try_join10 TryJoin10 settle10 Settle10 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2,
        3 f3 c3 T3 B3, 4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6, 7 f7 c7 T7 B7, 8 f8 c8 T8 B8,
        9 f9 c9 T9 B9);
    try_join11 TryJoin11 settle11 Settle11 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2,
        3 f3 c3 T3 B3, 4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6, 7 f7 c7 T7 B7, 8 f8 c8 T8 B8,
        9 f9 c9 T9 B9, 10 f10 c10 T10 B10);
    try_join12 TryJoin12 settle12 Settle12 (0 f0 c0 T0 B0, 1 f1 c1 T1 B1, 2 f2 c2 T2 B2,
        3 f3 c3 T3 B3, 4 f4 c4 T4 B4, 5 f5 c5 T5 B5, 6 f6 c6 T6 B6, 7 f7 c7 T7 B7, 8 f8 c8 T8 B8,
        9 f9 c9 T9 B9, 10 f10 c10 T10 B10, 11 f11 c11 T11 B11);
}
