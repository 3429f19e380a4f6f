#![deny(warnings)]

// `parallel!` names its own locals `__par`, `__v0`, `__b0`, `__c1`, `__e`, `__f0`, `__r0`,
// `__cx`, `__pending`; they are hygienic, so user variables of the same names are neither
// shadowed nor reachable.

use minder::prelude::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[task]
async fn echo(text: String) -> Result<String, TaskError> {
    Ok(text)
}

#[task]
async fn len(text: String) -> Result<usize, TaskError> {
    Ok(text.len())
}

async fn fan_out(__par: String, __v0: String) -> Result<Vec<String>, TaskError> {
    let __f0 = String::from("f0");
    let __r0 = String::from("r0");
    let __cx = String::from("cx");
    let __pending = String::from("pending");
    let __b0 = String::from("b");
    let __c1 = String::from("c");
    let __e = String::from("e");
    let (__v1, __f1, __r1) = parallel!(
        echo(__par.clone()),
        echo(__v0.clone() + &__f0),
        len(__r0.clone() + &__cx + &__pending + &__b0 + &__c1 + &__e),
    )?;
    let (__v0, __par) = parallel!(settle: echo(__v1.clone()), len(__f1.clone()));
    Ok(vec![
        __v1,
        __f1,
        __r1.to_string(),
        __v0?,
        __par?.to_string(),
    ])
}

#[process]
async fn same_names(_ctx: &Ctx, __par: String) -> Result<String, ProcessError> {
    let __v0 = __par.clone();
    let (__f0, __r0) = parallel!(echo(__par), echo(__v0))?;
    Ok(__f0 + &__r0)
}

/// Outside a process a task runs its body, so one poll finishes the whole fan-out.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("nothing here waits"),
    }
}

fn main() {
    let out = block_on(fan_out("par".into(), "v0".into())).unwrap();
    assert_eq!(out, ["par", "v0f0", "14", "par", "4"]);
}
