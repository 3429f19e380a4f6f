use minder::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

// Task state is shared by every task running at once: a `RefCell` is not `Sync`, an `Rc` not
// `Send`.
#[task]
async fn count(#[state] seen: &RefCell<u32>, word: String) -> Result<usize, TaskError> {
    *seen.borrow_mut() += 1;
    Ok(word.len())
}

#[task]
async fn share(#[state] cache: &Rc<String>) -> Result<String, TaskError> {
    Ok(cache.to_string())
}

fn main() {
    let _ = count("a".to_string());
    let _ = share();
}
