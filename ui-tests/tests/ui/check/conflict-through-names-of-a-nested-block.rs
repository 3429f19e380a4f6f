// A `parallel!` in a nested block calls tasks through names that block declares: the check sits
// where the block is, so it sees them.
use minder::prelude::*;

mod db {
    use minder::prelude::*;

    #[task(writes = [Db])]
    pub async fn save_user(name: String) -> Result<(), TaskError> {
        let _ = name;
        Ok(())
    }

    #[task(reads = [Db])]
    pub async fn count_users(filter: String) -> Result<u64, TaskError> {
        Ok(filter.len() as u64)
    }
}

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let count = {
        use db::{count_users as tally, save_user as store};
        let ((), count) = parallel!(store(name.clone()), tally(name))?;
        count
    };
    Ok(count)
}

fn main() {}
