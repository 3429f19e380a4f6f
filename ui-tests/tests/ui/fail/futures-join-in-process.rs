use minder::prelude::*;

// Stands in for the `futures` crate, so the case needs no extra dependency.
mod futures {
    macro_rules! join {
        ($($f:expr),*) => {
            ($($f,)*)
        };
    }
    pub(crate) use join;
}

#[task]
async fn fetch(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

#[process]
async fn nightly(_ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let (a, b) = futures::join!(fetch(n), fetch(n + 1));
    let _ = (a, b);
    Ok(n)
}

fn main() {}
