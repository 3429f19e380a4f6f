#![deny(unused_variables, dead_code)]

use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    let retries = 3;
    Ok(url)
}

#[task]
async fn never_called(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[process]
async fn mirror(_ctx: &Ctx, url: String) -> Result<String, ProcessError> {
    let copy = fetch(url.clone()).await?;
    Ok(url)
}

fn main() {
    let _ = Runner::run::<mirror>;
}
