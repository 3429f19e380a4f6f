use minder::prelude::*;

// Stands in for the `rand` crate, so the case needs no extra dependency.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let coin: bool = rand::random();
    let _ = coin;
    Ok(job)
}

fn main() {}
