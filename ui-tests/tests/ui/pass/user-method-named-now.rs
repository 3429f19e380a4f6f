#![deny(warnings)]

use minder::prelude::*;

struct Calendar {
    today: u32,
}

impl Calendar {
    fn now(&self) -> u32 {
        self.today
    }

    fn spawn(&self) -> Calendar {
        Calendar {
            today: self.today + 1,
        }
    }
}

mod clock {
    pub struct Clock;

    impl Clock {
        pub fn now() -> u32 {
            7
        }
    }
}

#[process]
async fn plan(_ctx: &Ctx, today: u32) -> Result<u32, ProcessError> {
    // Methods and types of the user's own that are named like clock or spawn functions.
    let calendar = Calendar { today };
    let tomorrow = calendar.spawn();
    Ok(calendar.now() + tomorrow.now() + clock::Clock::now())
}

fn main() {}
