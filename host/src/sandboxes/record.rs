//! What the host knows about one sandbox.

use std::collections::HashMap;

pub use agent_runtime_client::SandboxStatus;
use chrono::{DateTime, Utc};

use crate::egress::Policy;
use crate::ids::SandboxId;
use crate::limits::Limits;

/// Owner of sandboxes made without a token (all of them when the host has no tokens).
pub const ANONYMOUS: &str = "anonymous";

/// Label of sandboxes made for REST contexts.
pub const CONTEXT_OWNER_LABEL: (&str, &str) = ("owner", "rest-context");

/// What the host knows about one sandbox.
#[derive(Clone, Debug)]
pub struct SandboxRecord {
    /// Its id.
    pub id: SandboxId,
    /// Backend handle.
    pub container_id: String,
    /// Image it runs.
    pub image: String,
    /// Its limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the reaper destroys it.
    pub expires_at: DateTime<Utc>,
    /// Caller labels.
    pub labels: HashMap<String, String>,
    /// Lifecycle state.
    pub status: SandboxStatus,
    /// Milliseconds from request to ready (0 for adopted sandboxes).
    pub startup_ms: u64,
    /// Taken over from an earlier host rather than created by this one.
    pub adopted: bool,
    /// Who owns it: the name of the token that created it, or [`ANONYMOUS`].
    pub owner: String,
    /// Why it is dead, when it is.
    pub dead_reason: Option<String>,
    /// Its egress policy.
    pub egress: Policy,
    /// The warm pool it came from (or waits in); `None` when it was started for its caller.
    pub pool: Option<String>,
    /// It waits in its pool (starting or ready), not handed out yet: not listed.
    pub pooled: bool,
}

impl SandboxRecord {
    /// Whether it counts against the cap and the memory budget (dead sandboxes do not).
    pub fn holds_slot(&self) -> bool {
        self.status != SandboxStatus::Dead
    }
}
