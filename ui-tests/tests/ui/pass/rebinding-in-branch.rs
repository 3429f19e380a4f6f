#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[process]
async fn mirror(_ctx: &Ctx, urls: Vec<String>) -> Result<usize, ProcessError> {
    // Every `first`/`second` inside a branch is bound there: by a match arm, an `if let`, a
    // `for` loop or a `while let`.
    let (first, second) = parallel!(
        fetch(match urls.first() {
            Some(first) => first.clone(),
            None => String::new(),
        }),
        async {
            let mut out = String::new();
            if let Some(second) = urls.get(1) {
                out += &fetch(second.clone()).await?;
            }
            for first in urls.iter().skip(2) {
                out += &fetch(first.clone()).await?;
            }
            let mut rest = urls.clone();
            while let Some(second) = rest.pop() {
                out += &second;
            }
            Ok(out)
        },
    )?;
    Ok(first.len() + second.len())
}

fn main() {}
