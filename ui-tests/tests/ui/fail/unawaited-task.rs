use minder::prelude::*;

#[task]
async fn notify(user: String) -> Result<(), TaskError> {
    let _ = user;
    Ok(())
}

#[process]
async fn welcome(_ctx: &Ctx, user: String) -> Result<(), ProcessError> {
    notify(user);
    Ok(())
}

fn main() {}
