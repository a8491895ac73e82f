//! What the daemon plans with besides Docker's state, and how it is (re)loaded.
//!
//! Loading is injected: `main` hands the daemon a [`LoadInputs`], which SIGHUP calls again.
//! The inputs are the planner's [`PlanInputs`] (options and policy); configuration and policy
//! files plug in through the loader, so the daemon's reload logic (keep the old inputs when the
//! new ones are broken) does not change when they do.

pub use crate::plan::PlanInputs;

use crate::config::ConfigErrors;

/// Why the plan inputs could not be loaded: every error in the configuration and policy
/// files, each naming `file:line`. The daemon logs it and keeps what it had.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has errors; nothing was changed:\n{0}")]
pub struct InputsError(#[from] pub ConfigErrors);

/// Loads the plan inputs.
pub trait LoadInputs {
    fn load(&mut self) -> Result<PlanInputs, InputsError>;
}

impl<F: FnMut() -> Result<PlanInputs, InputsError>> LoadInputs for F {
    fn load(&mut self) -> Result<PlanInputs, InputsError> {
        self()
    }
}
