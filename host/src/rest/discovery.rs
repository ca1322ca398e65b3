//! Which sandbox holds which REST context: learnt on create, rediscovered from the sandboxes
//! after a restart or for an id not in the map.
//!
//! REST reaches only its own contexts: those in sandboxes it made (label `owner=rest-context`)
//! and those it created in a sandbox named explicitly. A context made over gRPC or MCP is
//! CONTEXT_NOT_FOUND here, even when its id is known; a sandbox a token owns cannot be named.
//!
//! Discovery asks all candidate sandboxes at once, each with a short deadline: a sandbox that
//! does not answer is skipped (and logged), never waited for, and no lock is held across a call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{Context, ListContextsRequest};
use tonic::transport::Channel;

use super::call::{client, req, within};
use super::error::RestError;
use crate::ids::SandboxId;
use crate::sandboxes::{
    Manager, SandboxRecord, SandboxStatus, ANONYMOUS, CONTEXT_OWNER_LABEL as OWNER_LABEL,
};

/// How long discovery waits for one sandbox's contexts.
pub const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);

/// Where a context lives.
#[derive(Clone, Debug)]
pub struct Location {
    /// The sandbox holding it.
    pub sandbox: SandboxId,
    /// Whether REST made that sandbox for this context (and destroys it with the context).
    pub owns_sandbox: bool,
}

/// The REST contexts state: which sandbox holds which context.
pub struct Contexts {
    manager: Arc<Manager>,
    locations: Mutex<HashMap<String, Location>>,
}

impl Contexts {
    /// Empty; locations are learnt on create and rediscovered from the sandboxes when unknown.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self {
            manager,
            locations: Mutex::new(HashMap::new()),
        }
    }

    /// The sandbox manager.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    fn locations(&self) -> MutexGuard<'_, HashMap<String, Location>> {
        self.locations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records where a new context lives.
    pub fn learn(&self, context_id: String, at: Location) {
        self.locations().insert(context_id, at);
    }

    /// Forgets a deleted context.
    pub fn forget(&self, context_id: &str) {
        self.locations().remove(context_id);
    }

    /// A client for `sandbox`'s daemon.
    pub async fn client(&self, sandbox: &SandboxId) -> Result<SandboxClient<Channel>, RestError> {
        client(&self.manager, sandbox).await
    }

    /// The contexts of one sandbox, within `deadline`.
    pub async fn contexts_in(
        &self,
        sandbox: &SandboxId,
        deadline: Duration,
    ) -> Result<Vec<Context>, RestError> {
        let mut client = self.client(sandbox).await?;
        let request = req(sandbox, ListContextsRequest {}, deadline);
        within(deadline, sandbox, client.list_contexts(request))
            .await
            .map(|r| r.contexts)
    }

    /// Asks every candidate sandbox for its contexts at once, each with [`DISCOVERY_DEADLINE`]
    /// (after a host restart the map is empty). Candidates are the sandboxes REST made and those
    /// it put a context into by name; of the latter only the contexts REST created count. A
    /// sandbox that does not answer is skipped and keeps its known locations. Returns what
    /// answered and the sandboxes that answered.
    pub async fn discover(&self) -> (Vec<(Location, Context)>, HashSet<SandboxId>) {
        let (named_sandboxes, ours): (HashSet<SandboxId>, HashSet<String>) = {
            let locations = self.locations();
            (
                locations
                    .values()
                    .filter(|r| !r.owns_sandbox)
                    .map(|r| r.sandbox.clone())
                    .collect(),
                locations.keys().cloned().collect(),
            )
        };
        let candidates: Vec<(SandboxId, bool)> = self
            .manager
            .list()
            .into_iter()
            // A starting sandbox holds no context yet, and a dead one cannot answer.
            .filter(|sb| sb.status == SandboxStatus::Running)
            .filter_map(|sb| {
                let owns = made_by_rest(&sb);
                (owns || named_sandboxes.contains(&sb.id)).then_some((sb.id, owns))
            })
            .collect();
        let answers =
            futures::future::join_all(candidates.into_iter().map(|(id, owns)| async move {
                let r = self.contexts_in(&id, DISCOVERY_DEADLINE).await;
                (id, owns, r)
            }))
            .await;
        let mut found = Vec::new();
        let mut answered = HashSet::new();
        for (id, owns, r) in answers {
            let contexts = match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, error = %e.message(),
                        "skipping a sandbox in context discovery: it did not answer");
                    continue;
                }
            };
            answered.insert(id.clone());
            for c in contexts {
                // In a sandbox REST did not make, only the contexts REST created there.
                if owns || ours.contains(&c.context_id) {
                    let at = Location {
                        sandbox: id.clone(),
                        owns_sandbox: owns,
                    };
                    found.push((at, c));
                }
            }
        }
        let mut locations = self.locations();
        // Locations learnt since the snapshot above (a create meanwhile) stay; of the others,
        // those in sandboxes that answered are replaced by what they said.
        locations.retain(|id, r| {
            (!ours.contains(id) || !answered.contains(&r.sandbox))
                && self.manager.get(&r.sandbox).is_ok()
        });
        for (at, c) in &found {
            locations.insert(c.context_id.clone(), at.clone());
        }
        (found, answered)
    }

    /// Destroys sandboxes made for REST contexts that hold none (left by an earlier host, e.g.
    /// its warm pool), so they do not linger until their lifetime ends. A sandbox that did not
    /// answer is left alone: it may hold contexts.
    pub async fn sweep_orphans(&self) {
        let (found, answered) = self.discover().await;
        let holding: HashSet<SandboxId> = found.into_iter().map(|(r, _)| r.sandbox).collect();
        for sb in self.manager.list() {
            // Only adopted ones: this host's own may be starting (the warm pool) right now.
            if sb.adopted
                && made_by_rest(&sb)
                && answered.contains(&sb.id)
                && !holding.contains(&sb.id)
            {
                tracing::info!(sandbox_id = %sb.id, "removing a context sandbox that holds no context");
                let _ = self.manager.destroy(&sb.id).await;
            }
        }
    }

    /// Where context `id` lives; CONTEXT_NOT_FOUND when REST cannot reach it.
    pub async fn locate(&self, id: &str) -> Result<Location, RestError> {
        if let Some(r) = self.locations().get(id).cloned() {
            return Ok(r);
        }
        self.discover()
            .await
            .0
            .into_iter()
            .find(|(_, c)| c.context_id == id)
            .map(|(r, _)| r)
            .ok_or_else(RestError::context_not_found)
    }
}

/// Whether REST made this sandbox for a context (a token holder's sandbox never counts, whatever
/// its labels say).
pub fn made_by_rest(sb: &SandboxRecord) -> bool {
    sb.owner == ANONYMOUS && sb.labels.get(OWNER_LABEL.0).map(String::as_str) == Some(OWNER_LABEL.1)
}
