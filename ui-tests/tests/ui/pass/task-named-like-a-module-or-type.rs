// A task may share its name with a module, a type or an import of the type namespace, as any
// function may: what `#[task]` adds for the access check is in the macro namespace.
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

// A lowercase tuple struct, called in a branch like a function.
#[allow(non_camel_case_types)]
struct wrap(u64);

#[task(reads = [Sources])]
async fn build(name: String) -> Result<u64, TaskError> {
    Ok(name.len() as u64 + build::STEPS)
}

#[task(reads = [Sources])]
async fn lint(name: String) -> Result<u64, TaskError> {
    Ok(name.len() as u64 + lint::RULES)
}

#[task(reads = [Registry])]
async fn package(size: u64) -> Result<u64, TaskError> {
    let p = package { size };
    Ok(p.size)
}

// Two public tasks of one name, in two modules.
mod mirror_a {
    use minder::prelude::*;

    #[task(writes = [MirrorA])]
    pub async fn sync(n: u64) -> Result<u64, TaskError> {
        Ok(n)
    }
}

mod mirror_b {
    use minder::prelude::*;

    #[task(writes = [MirrorB])]
    pub async fn sync(n: u64) -> Result<u64, TaskError> {
        Ok(n + 1)
    }
}

#[process]
async fn release(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let (built, linted) = parallel!(build(name.clone()), lint(name))?;
    let (size, again) = parallel!(package(built + linted), package(wrap(1).0))?;
    let (a, b) = parallel!(mirror_a::sync(size), mirror_b::sync(again))?;
    Ok(a + b)
}

fn main() {
    let _ = Runner::run::<release>;
}
