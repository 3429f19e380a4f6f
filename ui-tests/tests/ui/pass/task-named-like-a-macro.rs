// Tasks named like macros every module sees (`write`, `test`, `vec`): the macros still work
// beside them, in their module and in a child that imports everything, and the tasks run in
// a `parallel!` (checked when the program is compiled to code).
#![deny(warnings)]

use minder::prelude::*;
use std::fmt::Write as _;

#[task(writes = [Out])]
async fn write(text: String) -> Result<usize, TaskError> {
    let mut out = String::new();
    write!(out, "{text}").map_err(|e| TaskError::new(e.to_string()))?;
    Ok(out.len())
}

#[task(reads = [Repo])]
async fn test(name: String) -> Result<usize, TaskError> {
    Ok(name.len())
}

#[task]
async fn vec(n: u64) -> Result<Vec<u64>, TaskError> {
    Ok(vec![n; 2])
}

#[process]
async fn ci(_ctx: &Ctx, name: String) -> Result<usize, ProcessError> {
    let (a, b) = parallel!(write(name.clone()), test(name.clone()))?;
    let v = vec(3).await?;
    Ok(a + b + v.len() + format!("{a}").len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers() {
        let _ = Runner::run::<ci>;
    }
}

fn main() {
    let _ = Runner::run::<ci>;
    assert!(matches!(Some(1), Some(_)));
}
