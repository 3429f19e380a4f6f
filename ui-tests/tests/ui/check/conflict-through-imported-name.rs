// Tasks reached through a module path, a renaming `use` and a `use` inside the body are the
// tasks they name.
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

use db::count_users as tally;

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    use db::save_user as store;
    let ((), a) = parallel!(store(name.clone()), tally(name.clone()))?;
    let ((), b) = parallel!(db::save_user(name.clone()), db::count_users(name))?;
    Ok(a + b)
}

fn main() {}
