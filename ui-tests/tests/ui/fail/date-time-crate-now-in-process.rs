use minder::prelude::*;

// Stand-ins with the paths of chrono, time and jiff (this crate does not depend on them).
mod chrono {
    pub struct Utc;
    impl Utc {
        pub fn now() -> u64 {
            0
        }
    }
}
mod time {
    pub struct OffsetDateTime;
    impl OffsetDateTime {
        pub fn now_utc() -> u64 {
            0
        }
    }
}
mod jiff {
    pub struct Timestamp;
    impl Timestamp {
        pub fn now() -> u64 {
            0
        }
    }
}

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<u64, ProcessError> {
    let _ = job;
    Ok(chrono::Utc::now() + time::OffsetDateTime::now_utc() + jiff::Timestamp::now())
}

fn main() {}
