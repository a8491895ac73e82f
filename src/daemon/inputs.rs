//! What the daemon plans with besides Docker's state, and how it is (re)loaded.
//!
//! Loading is injected: `main` hands the daemon a [`LoadInputs`], which SIGHUP calls again.
//! The inputs are the planner's [`PlanInputs`] (options and policy); configuration and policy
//! files plug in through the loader, so the daemon's reload logic (keep the old inputs when the
//! new ones are broken) does not change when they do.

pub use crate::plan::PlanInputs;

/// Loads the plan inputs. An error is a message a person can act on, naming `file:line` when
/// a file is at fault; the daemon logs it and keeps what it had.
pub trait LoadInputs {
    fn load(&mut self) -> Result<PlanInputs, String>;
}

impl<F: FnMut() -> Result<PlanInputs, String>> LoadInputs for F {
    fn load(&mut self) -> Result<PlanInputs, String> {
        self()
    }
}
