//! The sandbox manager: the host's record of its sandboxes, their limits and lifetimes, and the
//! channels to their daemons. All container work goes through the `Backend`.
//!
//! One job per file: `manager` (the records, queries, destroy), `create` (cap and budget,
//! start, readiness), `warm` (the pool of sandboxes with a started kernel), `reaper` (lifetimes,
//! death and reconciliation), `adopt` (taking over an earlier host's sandboxes) and `probe` (the
//! readiness check both use).

mod adopt;
mod create;
mod manager;
mod probe;
mod reaper;
mod record;
mod warm;

pub use create::CreateSpec;
pub use manager::{Manager, ManagerConfig};
pub use record::{SandboxRecord, SandboxStatus, ANONYMOUS, CONTEXT_OWNER_LABEL};
