// `#[deterministic]` on a statement or an expression: the call is the user's to vouch for.
#![deny(warnings)]

use minder::prelude::*;

#[process]
async fn report(_ctx: &Ctx, dir: String) -> Result<String, ProcessError> {
    // A read-only file shipped with the program: the same on every replay.
    #[deterministic]
    let template = std::fs::read_to_string(format!("{dir}/template.txt")).unwrap_or_default();
    let unit = #[minder::deterministic] std::env::var("UNIT_FIXED_AT_BUILD").is_ok();
    Ok(format!("{template}{unit}"))
}

fn main() {
    let _ = Runner::run::<report>;
}
