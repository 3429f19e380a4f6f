//! The one part of running a step that knows the task's types: its arguments and its output
//! to and from the journal, and the start of an attempt of its body.

use super::Output;
use crate::error::TaskError;
use crate::journal::Outcome;
use crate::state::{MissingState, StateMap};
use crate::task::TaskReturn;
use crate::Journaled;
use futures::future::BoxFuture;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What running a step needs of the task's types; the step engine itself
/// ([`run_step`](super::run_step)) is not generic.
pub(super) trait StepIo: Send {
    /// The call's arguments, journaled.
    fn args(&self) -> Result<serde_json::Value, serde_json::Error>;
    /// Starts one attempt of the body: with the call's arguments the first time, decoded from
    /// the journaled `args` after that, and the run's task state.
    fn start(
        &mut self,
        args: &serde_json::Value,
        states: &StateMap,
    ) -> Result<BoxFuture<'static, Output>, NotStarted>;
    /// The journaled form of an attempt's output.
    fn outcome(&self, out: &Output) -> Result<Outcome, serde_json::Error>;
    /// Whether an attempt's output is an error.
    fn failed(&self, out: &Output) -> bool;
    /// The output a journaled (or mocked) outcome stands for.
    fn decode(&self, outcome: &Outcome) -> Result<Output, serde_json::Error>;
    /// The output for minder's own error (a timeout, a panic), in the task's error type.
    fn error(&self, error: TaskError) -> Output;
}

/// A task's body, per argument and return type.
pub(super) type Body<A, R> = fn(A, &StateMap) -> Result<BoxFuture<'static, R>, MissingState>;

/// Why an attempt could not start.
pub(super) enum NotStarted {
    /// The journaled arguments do not fit the task's types now.
    Args(serde_json::Error),
    /// A `#[state]` parameter's type has no value in the runner.
    State(MissingState),
}

/// [`StepIo`] for arguments `A` and return type `R`.
pub(super) struct Typed<A, R> {
    pub(super) args: Option<A>,
    pub(super) body: Body<A, R>,
}

/// A body's future with its output boxed as an [`Output`].
struct Erased<R>(BoxFuture<'static, R>);

impl<R: Send + 'static> Future for Erased<R> {
    type Output = Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output> {
        self.0.as_mut().poll(cx).map(|r| Box::new(r) as Output)
    }
}

impl<A: Journaled, R: TaskReturn> Typed<A, R> {
    fn result(out: &Output) -> &R {
        out.downcast_ref::<R>()
            .expect("an attempt's output is its task's return type")
    }
}

impl<A: Journaled, R: TaskReturn> StepIo for Typed<A, R> {
    fn args(&self) -> Result<serde_json::Value, serde_json::Error> {
        // Called before the first `start`, while the arguments are still here (`Some(a)`
        // serializes as `a`).
        serde_json::to_value(self.args.as_ref())
    }

    fn start(
        &mut self,
        args: &serde_json::Value,
        states: &StateMap,
    ) -> Result<BoxFuture<'static, Output>, NotStarted> {
        let args = match self.args.take() {
            Some(a) => a,
            None => serde_json::from_value(args.clone()).map_err(NotStarted::Args)?,
        };
        let body = (self.body)(args, states).map_err(NotStarted::State)?;
        Ok(Box::pin(Erased(body)))
    }

    fn outcome(&self, out: &Output) -> Result<Outcome, serde_json::Error> {
        match Self::result(out).as_result() {
            Ok(v) => serde_json::to_value(v).map(Outcome::Ok),
            Err(e) => serde_json::to_value(e).map(Outcome::Err),
        }
    }

    fn failed(&self, out: &Output) -> bool {
        Self::result(out).as_result().is_err()
    }

    fn decode(&self, outcome: &Outcome) -> Result<Output, serde_json::Error> {
        let r = match outcome {
            Outcome::Ok(v) => serde_json::from_value(v.clone()).map(Ok),
            Outcome::Err(v) => serde_json::from_value(v.clone()).map(Err),
        }?;
        Ok(Box::new(R::from_result(r)))
    }

    fn error(&self, error: TaskError) -> Output {
        Box::new(R::from_result(Err(error.into())))
    }
}
