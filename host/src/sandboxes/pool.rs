//! Warm pools: for each configured shape (limits; optionally a started kernel, a launched
//! browser; optionally frozen), sandboxes started ahead of time wait unlisted until a create
//! that fits takes one.
//!
//! - **Claim.** A create (gRPC `Create`, MCP `sandbox_create`, a REST context) whose memory and
//!   CPU match a shape's takes a ready member, and what differs per caller is applied as it is
//!   handed out: owner, labels, lifetime (persisted through the backend, so a restarted host
//!   knows), egress policy, the sandbox environment (sandboxd's `Configure`). A paused member is
//!   unpaused and must answer health first; the filler keeps the first member in line of each
//!   paused pool of two or more thawed ahead (the others stay frozen), so a claim spaced from the last one
//!   costs what a running pool's does. A member that fails any of that is destroyed and the
//!   next one tried; with none left the create starts cold — it never fails for the pool's sake.
//! - **One caller.** A member is popped under the pool's lock, so it is handed out once; it is
//!   destroyed when its caller is done with it, never returned to a pool.
//! - **Refill.** One task keeps every shape at its size, one create at a time, after claims and
//!   every few seconds; it never takes the last free slot under the cap, and stops filling while
//!   the host's available memory is under [`LOW_MEMORY`]. A cold create that finds the cap or the
//!   memory budget full destroys an idle member to make room, and so does the filler when the
//!   host's available memory falls under half of that: pools shrink under pressure.
//! - **Restart.** Members carry the label `agent-runtime.pool`; one not yet handed out when the
//!   host stopped is destroyed on adoption (the pool makes a fresh one).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::create::CreateSpec;
use super::manager::Manager;
use super::record::SandboxRecord;
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::Limits;

/// How long the filler waits between passes when nothing wakes it.
const REFILL_EVERY: Duration = Duration::from_secs(5);
/// Host memory available below which pools stop filling; below half of it they shrink.
pub const LOW_MEMORY: u64 = 1024 * 1024 * 1024;
/// Smallest paused pool whose first member in line is kept thawed (a pool of one stays frozen:
/// thawing its only member would make it a running pool).
const THAW_AHEAD_FROM: usize = 2;
/// Longest a new member's browser or kernel may take to start before it counts as ready anyway.
const WARM_WAIT: Duration = Duration::from_secs(60);
/// How long a claimed member (or an unpaused one) has to answer health.
const CLAIM_PROBE: Duration = Duration::from_secs(3);

/// One kind of warm sandbox (`serve --pool`).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolShape {
    /// Its name (letters, digits, `-`, `_`).
    pub name: String,
    /// Members kept ready.
    pub size: usize,
    /// Memory limit as users write it (`"512m"`); empty = 512 MiB.
    pub memory: String,
    /// CPU cores; 0 = one.
    pub cpu: f64,
    /// A Python kernel already started in each member.
    pub kernel: bool,
    /// Chromium already launched in each member.
    pub browser: bool,
    /// Members frozen once ready (`docker pause`), unfrozen on claim.
    pub paused: bool,
}

impl PoolShape {
    /// A shape of `size` default sandboxes named `name`.
    pub fn new(name: &str, size: usize) -> Self {
        Self {
            name: name.to_owned(),
            size,
            memory: String::new(),
            cpu: 0.0,
            kernel: false,
            browser: false,
            paused: false,
        }
    }

    /// Parses `--pool` values: `NAME=SIZE` or comma-separated `name=N,size=N,memory=M,cpu=C`
    /// and the flags `kernel`, `browser`, `paused` (e.g. `py=4,kernel` or
    /// `name=idle,size=50,paused`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut shape = Self::new("", 1);
        for (i, part) in spec.split(',').map(str::trim).enumerate() {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            let number = |v: Option<&str>| -> Result<usize, String> {
                v.and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("pool {spec:?}: {key} takes a whole number"))
            };
            match (key, value) {
                ("name", Some(v)) => shape.name = v.to_owned(),
                ("size", v) => shape.size = number(v)?,
                ("memory", Some(v)) => shape.memory = v.to_owned(),
                ("cpu", Some(v)) => {
                    shape.cpu = v
                        .parse()
                        .map_err(|_| format!("pool {spec:?}: cpu takes a number"))?
                }
                ("kernel", None) => shape.kernel = true,
                ("browser", None) => shape.browser = true,
                ("paused", None) => shape.paused = true,
                (name, Some(v)) if i == 0 => {
                    shape.name = name.to_owned();
                    shape.size = number(Some(v))?;
                }
                _ => {
                    return Err(format!(
                        "pool {spec:?}: unknown part {part:?}; use NAME=SIZE or \
                         name=N,size=N,memory=512m,cpu=1 with the flags kernel, browser, paused"
                    ))
                }
            }
        }
        shape.check()?;
        Ok(shape)
    }

    fn check(&self) -> Result<(), String> {
        let valid = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || self.name == "none" {
            return Err(format!(
                "pool name {:?}: use letters, digits, '-' and '_' (and not \"none\")",
                self.name
            ));
        }
        Ok(())
    }

    /// The shape from its wire form.
    pub fn from_proto(p: &agent_runtime_proto::v1::PoolShape) -> Result<Self, HostError> {
        let shape = Self {
            name: p.name.clone(),
            size: p.size as usize,
            memory: p.memory.clone(),
            cpu: p.cpu,
            kernel: p.kernel,
            browser: p.browser,
            paused: p.paused,
        };
        shape.check().map_err(HostError::InvalidArgument)?;
        Ok(shape)
    }

    /// Its wire form.
    pub fn to_proto(&self) -> agent_runtime_proto::v1::PoolShape {
        agent_runtime_proto::v1::PoolShape {
            name: self.name.clone(),
            size: self.size as u32,
            memory: self.memory.clone(),
            cpu: self.cpu,
            kernel: self.kernel,
            browser: self.browser,
            paused: self.paused,
        }
    }
}

/// Which pool a create may take from (`CreateSandboxRequest.pool`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PoolChoice {
    /// Any pool whose shape fits; cold when none has a member.
    #[default]
    Any,
    /// This pool only; cold when it has no member.
    Named(String),
    /// Always cold.
    Cold,
}

impl PoolChoice {
    /// From the request field: empty = any, `none` = cold, else a pool's name.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "" => Self::Any,
            "none" => Self::Cold,
            name => Self::Named(name.to_owned()),
        }
    }
}

/// One shape and its members.
pub(super) struct Pool {
    pub(super) shape: PoolShape,
    pub(super) limits: Limits,
    /// Ready members, oldest first.
    pub(super) ready: VecDeque<SandboxId>,
    /// Members being started (or thawed ahead).
    pub(super) starting: usize,
    /// Members of a paused pool thawed ahead of a claim (first in `ready`): the next claim finds
    /// one running, the others stay frozen.
    awake: Vec<SandboxId>,
    claims: u64,
    misses: u64,
}

/// A pool as `PoolStatus` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolReport {
    /// Its shape.
    pub shape: PoolShape,
    /// Members ready.
    pub ready: usize,
    /// Members starting.
    pub starting: usize,
    /// Members handed out since the host started.
    pub claims: u64,
    /// Fitting creates that found it empty.
    pub misses: u64,
    /// Memory limit of its members, in bytes.
    pub memory_bytes: u64,
}

impl Manager {
    /// Pools from the configuration; shapes whose limits the caps refuse are an error.
    pub(super) fn pools_from(
        shapes: &[PoolShape],
        caps: &crate::limits::Caps,
    ) -> Result<Vec<Pool>, HostError> {
        shapes
            .iter()
            .map(|shape| {
                Ok(Pool {
                    limits: Limits::from_request(&shape.memory, shape.cpu, 0, caps)?,
                    shape: shape.clone(),
                    ready: VecDeque::new(),
                    starting: 0,
                    awake: Vec::new(),
                    claims: 0,
                    misses: 0,
                })
            })
            .collect()
    }

    /// Every pool's state.
    pub fn pool_status(&self) -> Vec<PoolReport> {
        self.pools_lock()
            .iter()
            .map(|p| PoolReport {
                shape: p.shape.clone(),
                ready: p.ready.len(),
                starting: p.starting,
                claims: p.claims,
                misses: p.misses,
                memory_bytes: p.limits.memory_bytes,
            })
            .collect()
    }

    /// Adds or changes a pool (by name); size 0 removes it. Idle members beyond the new size,
    /// or of a changed shape, are destroyed.
    pub async fn set_pool(&self, shape: PoolShape) -> Result<(), HostError> {
        let limits = Limits::from_request(&shape.memory, shape.cpu, 0, &self.config.caps)?;
        let dropped: Vec<SandboxId> = {
            let mut pools = self.pools_lock();
            match pools.iter_mut().position(|p| p.shape.name == shape.name) {
                Some(i) if shape.size == 0 => pools.remove(i).ready.into_iter().collect(),
                Some(i) => {
                    let pool = &mut pools[i];
                    let same = PoolShape {
                        size: pool.shape.size,
                        ..shape.clone()
                    } == pool.shape;
                    pool.shape = shape;
                    pool.limits = limits;
                    let dropped: Vec<SandboxId> = if same {
                        let keep = pool.shape.size.min(pool.ready.len());
                        pool.ready.split_off(keep).into_iter().collect()
                    } else {
                        pool.ready.drain(..).collect()
                    };
                    let ready = &pool.ready;
                    pool.awake.retain(|m| ready.contains(m));
                    if !pool.shape.paused {
                        pool.awake.clear();
                    }
                    dropped
                }
                None if shape.size == 0 => Vec::new(),
                None => {
                    pools.push(Pool {
                        shape,
                        limits,
                        ready: VecDeque::new(),
                        starting: 0,
                        awake: Vec::new(),
                        claims: 0,
                        misses: 0,
                    });
                    Vec::new()
                }
            }
        };
        for id in dropped {
            let _ = self.destroy(&id).await;
        }
        self.pool_wake.notify_one();
        Ok(())
    }

    /// Whether `id` waits in a pool (not handed out yet).
    pub fn is_pooled(&self, id: &SandboxId) -> bool {
        self.pools_lock().iter().any(|p| p.ready.contains(id))
    }

    /// Forgets `id` as a pool member (it was destroyed or died).
    pub(super) fn unpool(&self, id: &SandboxId) {
        for pool in self.pools_lock().iter_mut() {
            pool.ready.retain(|m| m != id);
            pool.awake.retain(|m| m != id);
        }
    }

    /// Hands out a ready member that fits `spec`, with the caller's settings applied; `None`
    /// when no pool fits or the fitting ones are empty (the caller starts one cold).
    pub(super) async fn claim(&self, spec: &CreateSpec) -> Option<SandboxRecord> {
        if spec.pool == PoolChoice::Cold {
            return None;
        }
        let limits =
            Limits::from_request(&spec.memory, spec.cpu, spec.timeout_s, &self.config.caps).ok()?;
        loop {
            let (id, paused, pool_name) = {
                let mut pools = self.pools_lock();
                let mut fitting: Vec<&mut Pool> = pools
                    .iter_mut()
                    .filter(|p| match &spec.pool {
                        PoolChoice::Named(name) => &p.shape.name == name,
                        _ => true,
                    })
                    .filter(|p| {
                        p.limits.memory_bytes == limits.memory_bytes
                            && p.limits.cpu == limits.cpu
                            && (p.shape.kernel || !spec.prewarm_kernel)
                            && (p.shape.browser || !spec.browser)
                    })
                    .collect();
                if fitting.is_empty() {
                    return None;
                }
                // Fewest extras first (a plain create leaves kernels and browsers to those who
                // asked), running before paused.
                fitting.sort_by_key(|p| {
                    (
                        p.ready.is_empty(),
                        u8::from(p.shape.kernel && !spec.prewarm_kernel)
                            + u8::from(p.shape.browser && !spec.browser),
                        p.shape.paused,
                    )
                });
                let pool = fitting.into_iter().next()?;
                match pool.ready.pop_front() {
                    Some(id) => {
                        pool.claims += 1;
                        let thawed = match pool.awake.iter().position(|m| *m == id) {
                            Some(i) => {
                                pool.awake.swap_remove(i);
                                true
                            }
                            None => false,
                        };
                        (id, pool.shape.paused && !thawed, pool.shape.name.clone())
                    }
                    None => {
                        pool.misses += 1;
                        self.pool_wake.notify_one();
                        return None;
                    }
                }
            };
            self.pool_wake.notify_one();
            match self.hand_out(&id, spec, &limits, paused).await {
                Ok(record) => {
                    tracing::info!(sandbox_id = %id, pool = %pool_name, owner = %record.owner, "handed out a pooled sandbox");
                    return Some(record);
                }
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, pool = %pool_name, error = %e, "a pooled sandbox could not be handed out; destroying it");
                    let _ = self.destroy(&id).await;
                }
            }
        }
    }

    /// Applies a caller's settings to a member just taken from its pool.
    async fn hand_out(
        &self,
        id: &SandboxId,
        spec: &CreateSpec,
        limits: &Limits,
        paused: bool,
    ) -> Result<SandboxRecord, HostError> {
        if paused {
            self.thaw(id).await?;
        }
        let channel = self.channel(id)?;
        if !spec.env.is_empty() {
            super::create::configure(id, channel, &spec.env).await?;
        }
        let expires_at =
            chrono::Utc::now() + chrono::Duration::from_std(limits.timeout).unwrap_or_default();
        self.backend
            .claim(id, &spec.owner, &spec.labels, expires_at)
            .await?;
        {
            let mut entries = self.lock();
            let entry = entries
                .get_mut(id)
                .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))?;
            entry.record.owner = spec.owner.clone();
            entry.record.labels = spec.labels.clone();
            entry.record.expires_at = expires_at;
            entry.record.limits.timeout = limits.timeout;
            entry.record.startup_ms = 0;
            entry.record.pooled = false;
        }
        if spec.egress != crate::egress::Policy::default() {
            self.set_egress(id, spec.egress.clone()).await?;
        }
        self.get(id)
    }

    /// Unpauses a member and returns once its daemon has answered health. The health call goes
    /// out together with the unpause, not after it: it waits in the socket while the daemon is
    /// frozen and is answered the moment it thaws, and Docker's own reply to the unpause (which
    /// on a busy host comes tens of milliseconds after the thaw) is not waited for once the
    /// daemon has answered — its processes run, which is all the unpause is for. A member whose
    /// unpause fails, or that does not answer within [`CLAIM_PROBE`], is an error (the caller
    /// destroys it and tries the next), never handed out.
    async fn thaw(&self, id: &SandboxId) -> Result<(), HostError> {
        let channel = self.channel(id)?;
        let unpause = {
            let (backend, id) = (self.backend.clone(), id.clone());
            // Left to finish on its own when the daemon answers first: one Docker API call.
            tokio::spawn(async move {
                let unpaused = backend.unpause(&id).await;
                if let Err(e) = &unpaused {
                    tracing::warn!(sandbox_id = %id, error = %e, "docker unpause failed");
                }
                unpaused
            })
        };
        tokio::pin!(unpause);
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let probe = tokio::time::timeout(
            CLAIM_PROBE,
            health.check(tonic_health::pb::HealthCheckRequest::default()),
        );
        tokio::pin!(probe);
        let mut unpaused = false;
        loop {
            tokio::select! {
                answered = &mut probe => {
                    return match answered {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(HostError::NotReady {
                            id: id.to_string(),
                            reason: format!("health after unpause: {}", e.message()),
                        }),
                        Err(_) => Err(HostError::NotReady {
                            id: id.to_string(),
                            reason: "it did not answer after being unpaused".into(),
                        }),
                    };
                }
                done = &mut unpause, if !unpaused => match done {
                    Ok(Ok(())) => unpaused = true,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(HostError::Backend(format!("unpausing {id}: {e}"))),
                },
            }
        }
    }

    /// Waits (at most [`WARM_WAIT`]) until a new member's daemon says that its browser or spare
    /// kernel has started. One that never says so is kept: it starts them on first use.
    async fn wait_warm(&self, id: &SandboxId) {
        let Ok(channel) = self.channel(id) else {
            return;
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let deadline = tokio::time::Instant::now() + WARM_WAIT;
        loop {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: agent_runtime_proto::WARM_HEALTH_SERVICE.into(),
                })
                .await;
            match answer {
                Ok(reply)
                    if reply.get_ref().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving
                            as i32 =>
                {
                    return
                }
                // An older sandboxd without the service: nothing to wait for.
                Err(status) if status.code() == tonic::Code::NotFound => return,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(sandbox_id = %id, "a pool member's browser or kernel did not start within {} s; kept, it starts them on first use", WARM_WAIT.as_secs());
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Destroys one idle member (the newest of the pool with most ready), to make room under
    /// pressure; false when there is none.
    pub(super) async fn evict_one(&self) -> bool {
        let victim = {
            let mut pools = self.pools_lock();
            let Some(pool) = pools.iter_mut().max_by_key(|p| p.ready.len()) else {
                return false;
            };
            let victim = pool.ready.pop_back();
            if let Some(id) = &victim {
                pool.awake.retain(|m| m != id);
            }
            victim
        };
        match victim {
            Some(id) => {
                tracing::info!(sandbox_id = %id, "evicting an idle pooled sandbox to make room");
                let _ = self.destroy(&id).await;
                true
            }
            None => false,
        }
    }

    /// Keeps every pool at its size until `stop` is cancelled (see the module doc).
    pub async fn run_pools(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Some(available) = available_memory() {
                if available < LOW_MEMORY / 2 && self.evict_one().await {
                    continue;
                }
            }
            self.thaw_heads().await;
            while !stop.is_cancelled() {
                let Some(i) = self.next_to_fill() else { break };
                if self.free_slots() < 2 || available_memory().is_some_and(|a| a < LOW_MEMORY) {
                    break;
                }
                if !self.fill(i).await {
                    break;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.pool_wake.notified() => {}
                () = tokio::time::sleep(REFILL_EVERY) => {}
            }
        }
    }

    /// Thaws the member first in line of every paused pool that has none running, so that a
    /// claim costs what a running pool's does (Docker's unpause took 15-35 ms of every paused
    /// claim here); the rest of the pool stays frozen. A member that does not thaw is destroyed.
    async fn thaw_heads(&self) {
        loop {
            let next = {
                let mut pools = self.pools_lock();
                pools
                    .iter_mut()
                    .find(|p| {
                        p.shape.paused
                            && p.shape.size >= THAW_AHEAD_FROM
                            && p.awake.is_empty()
                            && !p.ready.is_empty()
                    })
                    .and_then(|p| {
                        let id = p.ready.pop_front()?;
                        p.starting += 1;
                        Some((id, p.shape.clone()))
                    })
            };
            let Some((id, shape)) = next else { return };
            let thawed = self.thaw(&id).await;
            let kept = {
                let mut pools = self.pools_lock();
                let pool = pools.iter_mut().find(|p| p.shape.name == shape.name);
                match pool {
                    Some(pool) => {
                        pool.starting = pool.starting.saturating_sub(1);
                        if thawed.is_ok() && pool.shape == shape {
                            pool.ready.push_front(id.clone());
                            pool.awake.push(id.clone());
                            true
                        } else {
                            false
                        }
                    }
                    None => false,
                }
            };
            if !kept {
                if let Err(e) = thawed {
                    tracing::warn!(sandbox_id = %id, pool = %shape.name, error = %e, "a paused pool member did not thaw; destroying it");
                }
                let _ = self.destroy(&id).await;
            }
        }
    }

    /// The first pool short of members, if any.
    fn next_to_fill(&self) -> Option<usize> {
        self.pools_lock()
            .iter()
            .position(|p| p.ready.len() + p.starting < p.shape.size)
    }

    /// Starts one member of pool `i`; false when it failed (the filler then waits).
    async fn fill(self: &Arc<Self>, i: usize) -> bool {
        let shape = {
            let mut pools = self.pools_lock();
            let Some(pool) = pools.get_mut(i) else {
                return false;
            };
            pool.starting += 1;
            pool.shape.clone()
        };
        let spec = CreateSpec {
            memory: shape.memory.clone(),
            cpu: shape.cpu,
            // Waiting costs nothing but its slot: the caller's lifetime is set on claim.
            timeout_s: self.config.caps.max_timeout.as_secs(),
            prewarm_kernel: shape.kernel,
            browser: shape.browser,
            pool: PoolChoice::Cold,
            ..CreateSpec::default()
        };
        let made = self.create_member(spec, &shape.name).await;
        if let (Ok(record), true) = (&made, shape.kernel || shape.browser) {
            // Ready means what the shape promises is up: a claim must not pay the launch.
            self.wait_warm(&record.id).await;
        }
        let made = match made {
            Ok(record) if shape.paused => match self.backend.pause(&record.id).await {
                Ok(()) => Ok(record),
                Err(e) => {
                    let _ = self.destroy(&record.id).await;
                    Err(e)
                }
            },
            other => other,
        };
        let mut pools = self.pools_lock();
        let pool = pools.iter_mut().find(|p| p.shape.name == shape.name);
        match (made, pool) {
            (Ok(record), Some(pool)) if pool.shape == shape => {
                pool.starting = pool.starting.saturating_sub(1);
                pool.ready.push_back(record.id);
                true
            }
            (Ok(record), pool) => {
                // The pool was removed or changed meanwhile.
                if let Some(pool) = pool {
                    pool.starting = pool.starting.saturating_sub(1);
                }
                drop(pools);
                let this = self.clone();
                tokio::spawn(async move { this.destroy(&record.id).await });
                true
            }
            (Err(e), pool) => {
                if let Some(pool) = pool {
                    pool.starting = pool.starting.saturating_sub(1);
                }
                tracing::warn!(pool = %shape.name, error = %e, "cannot start a pooled sandbox; retrying in a few seconds");
                false
            }
        }
    }
}

/// The host's available memory (`MemAvailable`), when known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Turns `--warm-contexts N` into its pool: N sandboxes with a started kernel.
pub fn contexts_pool(n: usize) -> Option<PoolShape> {
    (n > 0).then(|| PoolShape {
        kernel: true,
        ..PoolShape::new("contexts", n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_from_flags() {
        assert_eq!(
            PoolShape::parse("default=4"),
            Ok(PoolShape::new("default", 4))
        );
        let s = PoolShape::parse("name=big,size=2,memory=1g,cpu=2,kernel,browser,paused")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.name.as_str(), s.size, s.memory.as_str(), s.cpu),
            ("big", 2, "1g", 2.0)
        );
        assert!(s.kernel && s.browser && s.paused);
        assert!(PoolShape::parse("py=4,kernel").is_ok_and(|s| s.kernel && s.size == 4));
        assert!(PoolShape::parse("size=2").is_err(), "a name is required");
        assert!(PoolShape::parse("none=2").is_err());
        assert!(PoolShape::parse("a=2,bogus").is_err());
        assert!(PoolShape::parse("a=x").is_err());
    }

    #[test]
    fn choices_parse() {
        assert_eq!(PoolChoice::parse(""), PoolChoice::Any);
        assert_eq!(PoolChoice::parse("none"), PoolChoice::Cold);
        assert_eq!(PoolChoice::parse("py"), PoolChoice::Named("py".into()));
    }
}
