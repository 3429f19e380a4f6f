#![deny(warnings)]

// The shape of the brief's first example: results named after the tasks that produce them.

use minder::prelude::*;

#[data]
struct Report {
    coverage: u32,
    lint: u32,
    types: u32,
}

#[task]
async fn coverage(files: Vec<String>) -> Result<u32, TaskError> {
    Ok(files.len() as u32)
}

#[task]
async fn lint(files: Vec<String>) -> Result<u32, TaskError> {
    Ok(files.len() as u32)
}

#[task]
async fn types(files: Vec<String>) -> Result<u32, TaskError> {
    Ok(files.len() as u32)
}

#[process]
async fn quality_checks(_ctx: &Ctx, files: Vec<String>) -> Result<Report, ProcessError> {
    let (coverage, lint, types) =
        parallel!(coverage(files.clone()), lint(files.clone()), types(files),)?;
    Ok(Report {
        coverage,
        lint,
        types,
    })
}

fn main() {}
