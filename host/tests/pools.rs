//! Warm pools over the local backend (real sandboxd processes, no Docker): a claim gets the
//! caller's env, egress policy, lifetime, owner and labels; a member is handed out once; an empty
//! pool falls back to a cold start; paused members are unpaused on claim and answer; pools stay
//! under the cap, and a cold create at the cap evicts an idle member. Functional checks only; the
//! only clocks are hang guards.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::backend::local::LocalBackend;
use agent_runtime::backend::Backend;
use agent_runtime::egress::Policy;
use agent_runtime::ids::SandboxId;
use agent_runtime::limits::Caps;
use agent_runtime::sandboxes::{CreateSpec, Manager, ManagerConfig, PoolChoice, PoolShape};
use agent_runtime::serve::{InProcessHost, InProcessOptions};
use agent_runtime_client::RunOutcome;
use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{CreateSandboxRequest, ExecRequest, HelloRequest, PoolStatusRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Longest any awaited condition may take before the test fails (a hang guard, not a measure).
const PATIENCE: Duration = Duration::from_secs(60);

fn backend() -> Arc<LocalBackend> {
    Arc::new(LocalBackend::new().unwrap_or_else(|e| panic!("{e}")))
}

fn manager(backend: &Arc<LocalBackend>, max: usize, pools: Vec<PoolShape>) -> Arc<Manager> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let backend: Arc<dyn Backend> = backend.clone();
    Arc::new(Manager::new(
        backend,
        ManagerConfig {
            image: "local-sandboxd".into(),
            max_sandboxes: max,
            caps: Caps::default(),
            ready_timeout: PATIENCE,
            pools,
            memory_budget: 64 << 30,
            host_key: Secret::generate().expect("randomness"),
            egress: agent_runtime::serve::EgressOptions::default()
                .build(std::env::temp_dir().join(format!(
                    "agent-runtime-pools-test-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )))
                .expect("egress directory"),
        },
    ))
}

/// Waits until `cond` holds, failing the test after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(PATIENCE, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "hung waiting for {what}");
}

fn ready(m: &Manager, pool: &str) -> usize {
    m.pool_status()
        .iter()
        .find(|p| p.shape.name == pool)
        .map_or(0, |p| p.ready)
}

/// Runs `code` in bash in the sandbox behind `channel`; its stdout.
async fn shell(channel: Channel, code: &str) -> String {
    let stream = SandboxClient::new(channel)
        .exec(ExecRequest {
            language: "shell".into(),
            code: code.into(),
            ..ExecRequest::default()
        })
        .await
        .expect("exec")
        .into_inner();
    RunOutcome::collect(stream, usize::MAX)
        .await
        .expect("exec stream")
        .stdout
}

/// Whether the daemon process `pid` is stopped (SIGSTOP: state T).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].to_owned();
            rest.split_whitespace().next().map(|st| st == "T")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_claim_gets_the_callers_settings_once_and_the_pool_refills_under_the_cap() {
    let backend = backend();
    let m = manager(&backend, 4, vec![PoolShape::new("default", 2)]);
    let stop = CancellationToken::new();
    let filler = tokio::spawn(m.clone().run_pools(stop.clone()));
    until("the pool filled", || async { ready(&m, "default") == 2 }).await;
    assert!(
        m.list().is_empty(),
        "members waiting in a pool are not listed"
    );

    let spec = CreateSpec {
        owner: "alice".into(),
        timeout_s: 120,
        labels: HashMap::from([("team".into(), "blue".into())]),
        env: HashMap::from([("GREETING".into(), "hello from the claim".into())]),
        egress: Policy::from_parts("allowlist", &["example.com".into()], &[]).expect("policy"),
        ..CreateSpec::default()
    };
    let claimed = m.create(spec.clone()).await.expect("claim");
    assert_eq!(claimed.pool.as_deref(), Some("default"), "from the pool");
    assert_eq!(claimed.owner, "alice");
    assert_eq!(claimed.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(claimed.egress, spec.egress);
    let left = claimed.expires_at - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(120) && left > chrono::Duration::seconds(60),
        "the caller's lifetime, not the pool's: {left}"
    );
    assert_eq!(
        m.egress()
            .status(&claimed.id, 0)
            .ok()
            .and_then(|s| s.egress)
            .map(|e| e.network),
        Some("allowlist".into())
    );
    // The backend keeps who it went to (a restarted host adopts it with them).
    let kept = backend.list().await.expect("list");
    let kept = kept
        .iter()
        .find(|b| b.id == claimed.id)
        .expect("in the backend");
    assert!(kept.claimed && kept.owner == "alice" && kept.labels.contains_key("team"));
    let channel = m.channel(&claimed.id).expect("channel");
    assert_eq!(
        shell(channel, "echo $GREETING").await,
        "hello from the claim\n"
    );
    assert_eq!(m.list().len(), 1, "a claimed sandbox is listed");

    until("the pool refilled", || async { ready(&m, "default") == 2 }).await;
    // Both members and the claimed one hold slots; the filler leaves the last one free.
    let second = m.create(CreateSpec::default()).await.expect("second claim");
    assert_eq!(second.pool.as_deref(), Some("default"));
    assert_ne!(second.id, claimed.id, "a member is handed out once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        m.free_slots() >= 1,
        "the pool never takes the last free slot"
    );
    assert!(backend.running().len() <= 4, "never over the cap");
    stop.cancel();
    filler.await.expect("filler");
    m.destroy_all().await;
    assert!(backend.running().is_empty());
}

#[tokio::test]
async fn concurrent_claims_never_share_a_member_and_an_empty_pool_starts_cold() {
    let backend = backend();
    let m = manager(&backend, 8, vec![PoolShape::new("default", 3)]);
    let stop = CancellationToken::new();
    let filler = tokio::spawn(m.clone().run_pools(stop.clone()));
    until("the pool filled", || async { ready(&m, "default") == 3 }).await;
    // No refill from here: the claims below find the pool empty after three.
    stop.cancel();
    filler.await.expect("filler");
    let claims = (0..5).map(|_| {
        let m = m.clone();
        async move { m.create(CreateSpec::default()).await.expect("create") }
    });
    let made = futures::future::join_all(claims).await;
    let mut ids: Vec<&SandboxId> = made.iter().map(|r| &r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every caller got a sandbox of its own");
    let pooled = made.iter().filter(|r| r.pool.is_some()).count();
    assert_eq!(pooled, 3, "three from the pool, two cold: {made:?}");
    let status = m.pool_status();
    assert_eq!((status[0].claims, status[0].misses), (3, 2));
    for r in &made {
        let channel = m.channel(&r.id).expect("channel");
        let hello = SandboxClient::new(channel)
            .hello(HelloRequest { nonce: vec![3; 32] })
            .await
            .expect("hello");
        assert_eq!(hello.into_inner().sandbox_id, r.id.as_str());
    }
    // Asked for cold, or for a pool that does not fit: a cold start, never a failure.
    let cold = m
        .create(CreateSpec {
            pool: PoolChoice::Cold,
            ..CreateSpec::default()
        })
        .await
        .expect("cold");
    assert_eq!(cold.pool, None);
    let unknown = m
        .create(CreateSpec {
            pool: PoolChoice::Named("nope".into()),
            ..CreateSpec::default()
        })
        .await;
    assert!(unknown.is_err(), "an unknown pool is a bad request");
    m.destroy_all().await;
}

#[tokio::test]
async fn paused_members_are_unpaused_on_claim_and_answer() {
    let backend = backend();
    let m = manager(
        &backend,
        4,
        vec![PoolShape {
            paused: true,
            ..PoolShape::new("frozen", 1)
        }],
    );
    let stop = CancellationToken::new();
    let filler = tokio::spawn(m.clone().run_pools(stop.clone()));
    until("the pool filled", || async { ready(&m, "frozen") == 1 }).await;
    let member = backend.running().pop().expect("a member");
    let pid = backend.pid(&member).expect("pid");
    assert!(
        stopped(pid),
        "a paused member's daemon is stopped while it waits"
    );
    let claimed = m
        .create(CreateSpec {
            env: HashMap::from([("X".into(), "1".into())]),
            ..CreateSpec::default()
        })
        .await
        .expect("claim");
    assert_eq!(claimed.id, member);
    assert!(!stopped(pid), "unpaused on claim");
    let channel = m.channel(&claimed.id).expect("channel");
    assert_eq!(shell(channel, "echo $X").await, "1\n");
    stop.cancel();
    filler.await.expect("filler");
    m.destroy_all().await;
}

#[tokio::test]
async fn a_cold_create_at_the_cap_evicts_an_idle_member() {
    let backend = backend();
    let m = manager(&backend, 3, vec![PoolShape::new("default", 5)]);
    let stop = CancellationToken::new();
    let filler = tokio::spawn(m.clone().run_pools(stop.clone()));
    // The pool takes all but one slot, whatever its size.
    until("the pool filled up to the cap", || async {
        ready(&m, "default") == 2
    })
    .await;
    stop.cancel();
    filler.await.expect("filler");
    let cold = |_| {
        let m = m.clone();
        async move {
            m.create(CreateSpec {
                pool: PoolChoice::Cold,
                ..CreateSpec::default()
            })
            .await
        }
    };
    cold(0).await.expect("the free slot");
    cold(1).await.expect("room made by evicting an idle member");
    assert_eq!(ready(&m, "default"), 1);
    assert!(backend.running().len() <= 3, "never over the cap");
    cold(2).await.expect("room made again");
    assert_eq!(ready(&m, "default"), 0);
    assert!(
        cold(3).await.is_err(),
        "with no idle member left the cap holds"
    );
    m.destroy_all().await;
}

#[tokio::test]
async fn grpc_create_takes_from_a_pool_and_pool_status_shows_it() {
    let backend = backend();
    let dynamic: Arc<dyn Backend> = backend.clone();
    let host = InProcessHost::start(
        dynamic,
        InProcessOptions {
            rest: false,
            pools: vec![PoolShape::new("grpc", 1)],
            ..InProcessOptions::default()
        },
    )
    .await
    .expect("host");
    let channel = Channel::from_shared(host.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut lifecycle = SandboxesClient::new(channel.clone());
    until("the pool filled", || {
        let mut lifecycle = lifecycle.clone();
        async move {
            let status = lifecycle
                .pool_status(PoolStatusRequest {})
                .await
                .expect("status");
            status
                .into_inner()
                .pools
                .first()
                .is_some_and(|p| p.ready == 1)
        }
    })
    .await;
    let info = lifecycle
        .create(CreateSandboxRequest {
            env: HashMap::from([("FROM".into(), "grpc".into())]),
            timeout_seconds: 300,
            ..CreateSandboxRequest::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(info.pool, "grpc");
    let status = lifecycle
        .pool_status(PoolStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.pools[0].claims, 1);
    assert_eq!(status.running, 1);
    let id = SandboxId::parse(&info.sandbox_id).expect("id");
    let out = shell(host.manager.channel(&id).expect("channel"), "echo $FROM").await;
    assert_eq!(out, "grpc\n");
    // A pool can be resized and removed at run time.
    let status = lifecycle
        .set_pool(PoolShape::new("grpc", 0).to_proto())
        .await
        .expect("set pool")
        .into_inner();
    assert!(status.pools.is_empty());
    host.manager.destroy_all().await;
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_tenant_token_cannot_resize_the_hosts_pools() {
    let backend = backend();
    let dynamic: Arc<dyn Backend> = backend.clone();
    let tokens = agent_runtime::auth::Tokens::parse("alice:alice-secret-token-0123456789\n")
        .expect("tokens");
    let host = InProcessHost::start(
        dynamic,
        InProcessOptions {
            rest: false,
            tokens: Some(tokens),
            ..InProcessOptions::default()
        },
    )
    .await
    .expect("host");
    let channel = Channel::from_shared(host.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut req = tonic::Request::new(PoolShape::new("big", 8).to_proto());
    req.metadata_mut().insert(
        "authorization",
        "Bearer alice-secret-token-0123456789"
            .parse()
            .expect("ascii"),
    );
    let err = SandboxesClient::new(channel)
        .set_pool(req)
        .await
        .expect_err("a tenant resized the pools");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("serve --pool"), "{err:?}");
    assert!(backend.running().is_empty(), "no pool member was started");
    host.shutdown().await.expect("shutdown");
}
