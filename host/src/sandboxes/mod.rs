//! The sandbox manager: the host's record of its sandboxes, their limits and lifetimes, and the
//! channels to their daemons. All container work goes through the `Backend`.
//!
//! One job per file: `manager` (the records, queries, destroy), `create` (cap and budget,
//! start, readiness), `pool` (warm pools: shapes, claim, refill), `reaper` (lifetimes,
//! death and reconciliation), `adopt` (taking over an earlier host's sandboxes) and `probe` (the
//! readiness check both use).

mod adopt;
mod create;
mod manager;
mod pool;
mod probe;
mod reaper;
mod record;

pub use create::CreateSpec;
pub use manager::{Manager, ManagerConfig, STARTING_WAIT};
pub use pool::{contexts_pool, PoolChoice, PoolReport, PoolShape, LOW_MEMORY};
pub use record::{SandboxRecord, SandboxStatus, ANONYMOUS, CONTEXT_OWNER_LABEL};
