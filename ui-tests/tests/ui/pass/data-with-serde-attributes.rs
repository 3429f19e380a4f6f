#![deny(warnings)]

use minder::prelude::*;

#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Request {
    file_name: String,
    #[serde(default)]
    max_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

#[data]
#[derive(Debug)]
#[serde(tag = "kind")]
enum Outcome {
    Done { bytes: u64 },
    Skipped,
}

#[task]
async fn read(req: Request) -> Result<Outcome, TaskError> {
    Ok(if req.max_bytes == 0 {
        Outcome::Skipped
    } else {
        Outcome::Done {
            bytes: req.max_bytes,
        }
    })
}

#[process]
async fn fetch_file(_ctx: &Ctx, req: Request) -> Result<Outcome, ProcessError> {
    Ok(read(req).await?)
}

fn main() {
    let req = Request {
        file_name: "a.txt".into(),
        max_bytes: 0,
        owner: None,
    };
    let _ = Outcome::Done { bytes: 1 };
    let _ = req.clone() == req;
    let _ = (req.file_name, req.owner);
}
