//! The joins behind `parallel!`: fail-fast (`try_joinN`) and settle-all (`settleN`) for 1 to 16
//! branches, written once here so a process crate type-checks a call, not a poll loop per block.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

macro_rules! joins {
    ($($try_join:ident $settle:ident ($($f:ident $t:ident $r:ident),+);)+) => {$(
        /// Polls every branch; the first error is returned and the others are dropped
        /// (cancelled); otherwise all results, in branch order.
        #[allow(clippy::too_many_arguments, non_snake_case)]
        pub async fn $try_join<E, $($f, $t),+>($($f: $f),+) -> Result<($($t,)+), E>
        where
            $($f: Future<Output = Result<$t, E>>),+
        {
            $(let mut $f = pin!($f); let mut $r: Option<$t> = None;)+
            poll_fn(|cx| {
                let mut pending = false;
                $(
                    if $r.is_none() {
                        match $f.as_mut().poll(cx) {
                            Poll::Ready(Ok(v)) => $r = Some(v),
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => pending = true,
                        }
                    }
                )+
                if pending {
                    return Poll::Pending;
                }
                Poll::Ready(Ok(($($r.take().expect("every branch finished"),)+)))
            })
            .await
        }

        /// Polls every branch to its end; all outputs, in branch order.
        #[allow(clippy::too_many_arguments, non_snake_case)]
        pub async fn $settle<$($f, $t),+>($($f: $f),+) -> ($($t,)+)
        where
            $($f: Future<Output = $t>),+
        {
            $(let mut $f = pin!($f); let mut $r: Option<$t> = None;)+
            poll_fn(|cx| {
                let mut pending = false;
                $(
                    if $r.is_none() {
                        match $f.as_mut().poll(cx) {
                            Poll::Ready(v) => $r = Some(v),
                            Poll::Pending => pending = true,
                        }
                    }
                )+
                if pending {
                    return Poll::Pending;
                }
                Poll::Ready(($($r.take().expect("every branch finished"),)+))
            })
            .await
        }
    )+};
}

joins! {
    try_join1 settle1 (F0 T0 r0);
    try_join2 settle2 (F0 T0 r0, F1 T1 r1);
    try_join3 settle3 (F0 T0 r0, F1 T1 r1, F2 T2 r2);
    try_join4 settle4 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3);
    try_join5 settle5 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4);
    try_join6 settle6 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5);
    try_join7 settle7 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6);
    try_join8 settle8 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6, F7 T7 r7);
    try_join9 settle9 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6, F7 T7 r7, F8 T8 r8);
    try_join10 settle10 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6, F7 T7 r7, F8 T8 r8, F9 T9 r9);
    try_join11 settle11 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6, F7 T7 r7, F8 T8 r8, F9 T9 r9, F10 T10 r10);
    try_join12 settle12 (F0 T0 r0, F1 T1 r1, F2 T2 r2, F3 T3 r3, F4 T4 r4, F5 T5 r5, F6 T6 r6, F7 T7 r7, F8 T8 r8, F9 T9 r9, F10 T10 r10, F11 T11 r11);
}

/// A later fail-fast branch with its error converted to the block's (an identity that
/// `same_error` checked), so every branch of a `try_joinN` has one error type.
pub async fn map_err<F, T, B, E>(f: F, convert: fn(B) -> E) -> Result<T, E>
where
    F: Future<Output = Result<T, B>>,
{
    f.await.map_err(convert)
}
