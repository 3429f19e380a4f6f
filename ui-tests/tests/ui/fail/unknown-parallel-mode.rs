use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[process]
async fn mirror(_ctx: &Ctx, url: String) -> Result<String, ProcessError> {
    let (a, b) = parallel!(race: fetch(url.clone()), fetch(url));
    Ok(a? + &b?)
}

fn main() {}
