//! The `Sandboxes` service: create (from a warm pool when one fits), get, list, destroy, extend,
//! egress policy, pool status and pool settings.

use std::sync::Arc;

use agent_runtime_proto::v1::sandboxes_server::Sandboxes;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, DestroySandboxResponse, EgressStatus,
    ExtendTimeoutRequest, GetEgressPolicyRequest, GetSandboxRequest, ListSandboxesRequest,
    ListSandboxesResponse, PoolInfo, PoolShape as PoolShapeProto, PoolStatusRequest,
    PoolStatusResponse, SandboxInfo, SetEgressPolicyRequest,
};
use chrono::SecondsFormat;
use tonic::{Request, Response, Status};

use crate::auth::{caller_of, Caller, Gate};
use crate::egress::Policy;
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::observe::CallNote;
use crate::sandboxes::{CreateSpec, Manager, PoolChoice, PoolShape, SandboxRecord};

/// Implements `agent_runtime.v1.Sandboxes` on top of the manager. Every call sees only the
/// caller's own sandboxes when the host has tokens (`crate::auth`).
pub struct Lifecycle {
    manager: Arc<Manager>,
    gate: Gate,
}

impl Lifecycle {
    /// The pools' state as `PoolStatus` answers it.
    fn status(&self) -> PoolStatusResponse {
        let pools = self.manager.pool_status();
        PoolStatusResponse {
            running: self.manager.list().len() as u32,
            max_sandboxes: self.manager.max_sandboxes() as u32,
            warm: pools.iter().map(|p| p.ready as u32).sum(),
            warm_target: pools.iter().map(|p| p.shape.size as u32).sum(),
            image: self.manager.image().to_owned(),
            pools: pools
                .iter()
                .map(|p| PoolInfo {
                    shape: Some(p.shape.to_proto()),
                    ready: p.ready as u32,
                    starting: p.starting as u32,
                    claims: p.claims,
                    misses: p.misses,
                    memory_bytes: p.memory_bytes,
                })
                .collect(),
        }
    }

    /// The preamble of every call that names one sandbox: the caller, the request's body, and
    /// the sandbox named by `id_of(body)` if the caller may see it (the id is noted for the
    /// audit first, so a refused call is audited with it).
    fn target<T>(
        &self,
        req: Request<T>,
        id_of: impl FnOnce(&T) -> &str,
    ) -> Result<(T, SandboxId, SandboxRecord), Status> {
        let caller = caller_of(&req);
        let note = req.extensions().get::<CallNote>().cloned();
        let body = req.into_inner();
        let id = parse_id(id_of(&body))?;
        noted(&note, &id);
        let record = self.owned(&caller, &id)?;
        Ok((body, id, record))
    }

    /// Wraps a manager; `gate` is the one whose interceptor authenticates the calls.
    pub fn new(manager: Arc<Manager>, gate: Gate) -> Self {
        Self { manager, gate }
    }

    /// The record of `id` if `caller` may see it; another token's sandbox is "not found".
    fn owned(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxRecord, HostError> {
        let record = self.manager.get(id)?;
        if !self.gate.may_use(caller, &record.owner) {
            return Err(HostError::SandboxNotFound(id.to_string()));
        }
        Ok(record)
    }
}

/// Tells the call's audit record which sandbox it was about.
fn noted(note: &Option<CallNote>, id: &SandboxId) {
    if let Some(note) = note {
        note.sandbox(id.as_str());
    }
}

/// Parses an id from a request field.
pub fn parse_id(s: &str) -> Result<SandboxId, HostError> {
    if s.is_empty() {
        return Err(HostError::InvalidArgument("sandbox_id is required".into()));
    }
    SandboxId::parse(s).ok_or_else(|| HostError::SandboxNotFound(s.to_owned()))
}

/// The wire form of a record.
pub fn to_info(r: &SandboxRecord) -> SandboxInfo {
    SandboxInfo {
        sandbox_id: r.id.to_string(),
        status: r.status.as_str().to_owned(),
        image: r.image.clone(),
        memory_bytes: r.limits.memory_bytes,
        cpu: r.limits.cpu,
        created_at: r.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        expires_at: r.expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        labels: r.labels.clone(),
        container_id: r.container_id.clone(),
        startup_ms: r.startup_ms,
        egress: Some(r.egress.to_proto()),
        pool: r.pool.clone().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Sandboxes for Lifecycle {
    async fn create(
        &self,
        req: Request<CreateSandboxRequest>,
    ) -> Result<Response<SandboxInfo>, Status> {
        let caller = caller_of(&req);
        let note = req.extensions().get::<CallNote>().cloned();
        let r = req.into_inner();
        let record = self
            .manager
            .create(CreateSpec {
                owner: caller.0,
                memory: r.memory,
                cpu: r.cpu,
                timeout_s: r.timeout_seconds,
                labels: r.labels,
                prewarm_kernel: false,
                egress: Policy::from_proto(r.egress.as_ref())?,
                env: r.env,
                browser: false,
                pool: PoolChoice::parse(&r.pool),
            })
            .await?;
        noted(&note, &record.id);
        Ok(Response::new(to_info(&record)))
    }

    async fn get(&self, req: Request<GetSandboxRequest>) -> Result<Response<SandboxInfo>, Status> {
        let (_, _, record) = self.target(req, |r| &r.sandbox_id)?;
        Ok(Response::new(to_info(&record)))
    }

    async fn list(
        &self,
        req: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        let caller = caller_of(&req);
        let sandboxes = self
            .manager
            .list()
            .iter()
            .filter(|r| self.gate.may_use(&caller, &r.owner))
            .map(to_info)
            .collect();
        Ok(Response::new(ListSandboxesResponse { sandboxes }))
    }

    async fn destroy(
        &self,
        req: Request<DestroySandboxRequest>,
    ) -> Result<Response<DestroySandboxResponse>, Status> {
        let (_, id, _) = self.target(req, |r| &r.sandbox_id)?;
        self.manager.destroy(&id).await?;
        Ok(Response::new(DestroySandboxResponse { success: true }))
    }

    async fn extend_timeout(
        &self,
        req: Request<ExtendTimeoutRequest>,
    ) -> Result<Response<SandboxInfo>, Status> {
        let (r, id, _) = self.target(req, |r| &r.sandbox_id)?;
        let record = self.manager.extend(&id, r.timeout_seconds).await?;
        Ok(Response::new(to_info(&record)))
    }

    async fn set_egress_policy(
        &self,
        req: Request<SetEgressPolicyRequest>,
    ) -> Result<Response<EgressStatus>, Status> {
        let (r, id, _) = self.target(req, |r| &r.sandbox_id)?;
        let policy = Policy::from_proto(Some(&r.egress.unwrap_or_default()))?;
        self.manager.set_egress(&id, policy).await?;
        Ok(Response::new(self.manager.egress().status(&id, 0)?))
    }

    async fn get_egress_policy(
        &self,
        req: Request<GetEgressPolicyRequest>,
    ) -> Result<Response<EgressStatus>, Status> {
        let (r, id, _) = self.target(req, |r| &r.sandbox_id)?;
        Ok(Response::new(
            self.manager.egress().status(&id, r.log_lines as usize)?,
        ))
    }

    async fn pool_status(
        &self,
        _req: Request<PoolStatusRequest>,
    ) -> Result<Response<PoolStatusResponse>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn set_pool(
        &self,
        req: Request<PoolShapeProto>,
    ) -> Result<Response<PoolStatusResponse>, Status> {
        // Pools are the host's, shared by every tenant: with tokens, no tenant may resize them
        // (one could fill the host with warm sandboxes the others then cannot create).
        if self.gate.enforced() {
            return Err(Status::permission_denied(
                "pools are host-wide: on a host with --token-file they are set when it starts \
                 (serve --pool), not by a caller's token",
            ));
        }
        let shape = PoolShape::from_proto(req.get_ref())?;
        self.manager.set_pool(shape).await?;
        Ok(Response::new(self.status()))
    }
}
