// Branch shapes the access check reads without rejecting legal code: helpers, generic
// functions, `Box::pin`, local closures, a function that shares its name with a module, tasks
// declared in the body, `use`s inside blocks, `ctx.map` with a task passed by name, and readers
// that run together.
#![deny(warnings)]

use minder::prelude::*;
use std::future::Future;

mod db {
    use minder::prelude::*;

    #[task(writes = [Db])]
    pub async fn save_user(name: String) -> Result<(), TaskError> {
        let _ = name;
        Ok(())
    }

    #[task(reads = [Db])]
    pub async fn count_users(filter: String) -> Result<u64, TaskError> {
        Ok(filter.len() as u64)
    }

    pub mod more {
        pub use super::count_users as tally;
    }
}
use db::*;

#[task]
async fn ping(host: String) -> Result<u64, TaskError> {
    Ok(host.len() as u64)
}

async fn helper(x: u64) -> Result<u64, TaskError> {
    Ok(x)
}

fn generic<F: Future>(f: F) -> F {
    f
}

mod run {
    pub fn run() {}
}

async fn run(x: u64) -> Result<u64, TaskError> {
    Ok(x)
}

#[process]
async fn legal(ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    #![allow(clippy::let_and_return)]
    // A task declared in the body runs as a step: its body may read the clock.
    #[task(writes = [Audit])]
    async fn audit(x: u64) -> Result<u64, TaskError> {
        let now = std::time::SystemTime::now();
        Ok(x + now.elapsed().map_or(0, |d| d.as_secs()))
    }
    let f = |x: u64| helper(x);
    let ping_again = ping;
    let (a, b, c, d, e) = parallel!(
        count_users(name.clone()),
        async {
            use db::more::tally;
            let t = tally(name.clone()).await?;
            let n = generic(ping(name.clone())).await?;
            let b = Box::pin(helper(n)).await?;
            let s = u64::from(b as u32);
            let r = run(t + s).await?;
            Ok(r + b)
        },
        f(3),
        ping_again(name.clone()),
        async {
            {
                use std::time::*;
                let _ = Duration::from_secs(1);
            }
            let v: Vec<u64> = ctx.map("pings", vec![name.clone()], ping).await?;
            let w: Vec<u64> = ctx.map("audits", vec![1u64], |i| audit(i)).await?;
            Ok(v.len() as u64 + w.len() as u64)
        },
    )?;
    let (g, h) = parallel!(db::more::tally(name.clone()), count_users(name.clone()))?;
    save_user(name).await?;
    Ok(a + b + c + d + e + g + h)
}

fn main() {
    let _ = Runner::run::<legal>;
    run::run();
}
