use minder::prelude::*;

// Stands in for the `tokio` crate, so the case needs no extra dependency.
mod tokio {
    macro_rules! select {
        ($p:pat = $f:expr => $e:expr, $($rest:tt)*) => {
            match $f.await {
                $p => $e,
            }
        };
    }
    pub(crate) use select;
}

#[task]
async fn approve(id: u32) -> Result<u32, TaskError> {
    Ok(id)
}

#[process]
async fn review(_ctx: &Ctx, id: u32) -> Result<u32, ProcessError> {
    let winner = tokio::select! {
        a = approve(id) => a?,
        _ = std::future::pending::<()>() => 0,
    };
    Ok(winner)
}

fn main() {}
