use minder::prelude::*;

trait Store: Send + Sync {}

struct Pool;

#[task]
async fn by_value(#[state] pool: Pool) -> Result<(), TaskError> {
    let _ = pool;
    Ok(())
}

#[task]
async fn mutably(#[state] pool: &mut Pool) -> Result<(), TaskError> {
    let _ = pool;
    Ok(())
}

#[task]
async fn trait_object(#[state] store: &dyn Store) -> Result<(), TaskError> {
    let _ = store;
    Ok(())
}

#[task]
async fn borrowed(#[state] name: &Option<&str>) -> Result<(), TaskError> {
    let _ = name;
    Ok(())
}

#[task]
async fn with_arguments(#[state(shared)] pool: &Pool) -> Result<(), TaskError> {
    let _ = pool;
    Ok(())
}

fn main() {}
