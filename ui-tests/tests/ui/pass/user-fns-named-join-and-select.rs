#![deny(warnings)]

use minder::prelude::*;
use std::path::PathBuf;

fn join(a: &str, b: &str) -> String {
    format!("{a}{b}")
}

fn select(items: &[String], i: usize) -> Option<&String> {
    items.get(i)
}

struct Menu;

impl Menu {
    fn select(&self, i: usize) -> usize {
        i + 1
    }
}

#[process]
async fn report(_ctx: &Ctx, items: Vec<String>) -> Result<String, ProcessError> {
    // `join` and `select` of the user's own, and methods of those names, are not races.
    let csv = items.join(",");
    let path = PathBuf::from("out").join("report.csv");
    let picked = select(&items, 0).cloned().unwrap_or_default();
    let n = Menu.select(1);
    let join = join(&csv, &picked);
    let select = vec![join.clone(); n];
    Ok(format!("{} {} {}", path.display(), join, select.len()))
}

fn main() {}
