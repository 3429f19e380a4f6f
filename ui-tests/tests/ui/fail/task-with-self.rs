use minder::prelude::*;

struct Linter {
    strict: bool,
}

impl Linter {
    #[task]
    async fn lint(&self, files: Vec<String>) -> Result<usize, TaskError> {
        Ok(if self.strict { files.len() } else { 0 })
    }
}

fn main() {
    let _ = Linter { strict: true }.lint(Vec::new());
}
