// A task may share its name with a module, a type or an import of the type namespace, as any
// function may: the task's hidden type gives way to them.
#![deny(warnings)]

use minder::prelude::*;

mod build {
    pub const STEPS: u64 = 3;
}

mod tools {
    pub mod lint {
        pub const RULES: u64 = 2;
    }
}
use tools::lint;

#[allow(non_camel_case_types)]
struct package {
    size: u64,
}

#[task]
async fn build(name: String) -> Result<u64, TaskError> {
    Ok(name.len() as u64 + build::STEPS)
}

#[task]
async fn lint(name: String) -> Result<u64, TaskError> {
    Ok(name.len() as u64 + lint::RULES)
}

#[task]
async fn package(size: u64) -> Result<u64, TaskError> {
    let p = package { size };
    Ok(p.size)
}

#[process]
async fn release(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let (built, linted) = parallel!(build(name.clone()), lint(name))?;
    let (size, again) = parallel!(package(built + linted), package(1))?;
    Ok(size + again)
}

fn main() {
    let _ = Runner::run::<release>;
}
