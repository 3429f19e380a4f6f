use minder::prelude::*;

#[task]
async fn notify(user: String) {
    let _ = user;
}

fn main() {
    let _ = notify(String::new());
}
