use minder::prelude::*;

#[task(reads = [Config], writes = [Cache])]
async fn warm_cache(key: String) -> Result<(), TaskError> {
    let _ = key;
    Ok(())
}

#[task(writes = [Cache])]
async fn clear_cache(key: String) -> Result<(), TaskError> {
    let _ = key;
    Ok(())
}

#[task]
async fn ping(host: String) -> Result<(), TaskError> {
    let _ = host;
    Ok(())
}

#[process]
async fn refresh(_ctx: &Ctx, key: String) -> Result<(), ProcessError> {
    parallel!(warm_cache(key.clone()), ping(key.clone()), clear_cache(key))?;
    Ok(())
}

fn main() {}
