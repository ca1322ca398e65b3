//! The middle tier: the sandbox `Manager` and the host's gRPC surface in-process, over the local
//! backend (real sandboxd processes on temporary unix sockets, authenticated as in Docker). No
//! Docker; needs `cargo build -p sandboxd`. Assertions are about behaviour and order, never
//! about elapsed time; the only clocks are generous deadlines that turn a hang into a failure.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::auth::Tokens;
use agent_runtime::backend::local::LocalBackend;
use agent_runtime::backend::Backend;
use agent_runtime::error::HostError;
use agent_runtime::ids::SandboxId;
use agent_runtime::limits::Caps;
use agent_runtime::sandboxes::{CreateSpec, Manager, ManagerConfig, SandboxStatus};
use agent_runtime::serve::{InProcessHost, InProcessOptions};
use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, GetSandboxRequest, HelloRequest,
    ListSandboxesRequest, WriteFileRequest,
};
use agent_runtime_proto::SANDBOX_ID_HEADER;
use tonic::transport::Channel;
use tonic::Code;

/// Longest any awaited condition may take before the test fails (a hang guard, not a measure).
const PATIENCE: Duration = Duration::from_secs(30);

fn backend() -> Arc<LocalBackend> {
    Arc::new(LocalBackend::new().unwrap_or_else(|e| panic!("{e}")))
}

fn config(key: &Secret) -> ManagerConfig {
    ManagerConfig {
        image: "local-sandboxd".into(),
        max_sandboxes: 8,
        caps: Caps::default(),
        ready_timeout: PATIENCE,
        pools: Vec::new(),
        memory_budget: 64 << 30,
        host_key: key.clone(),
        egress: agent_runtime::serve::EgressOptions::default()
            .build(std::env::temp_dir().join(format!(
                "agent-runtime-manager-test-{}-{}",
                std::process::id(),
                hex_id()
            )))
            .expect("egress directory"),
    }
}

fn hex_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn key() -> Secret {
    Secret::generate().expect("randomness")
}

fn manager(backend: &Arc<LocalBackend>, config: ManagerConfig) -> Arc<Manager> {
    let backend: Arc<dyn Backend> = backend.clone();
    Arc::new(Manager::new(backend, config))
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
    assert!(waited.is_ok(), "still waiting for: {what}");
}

fn status(m: &Manager, id: &SandboxId) -> Option<SandboxStatus> {
    m.get(id).ok().map(|r| r.status)
}

/// The id the daemon behind `channel` says it serves (Hello).
async fn hello_id(channel: Channel) -> Result<String, tonic::Status> {
    let reply = SandboxClient::new(channel)
        .hello(HelloRequest { nonce: vec![7; 32] })
        .await?;
    Ok(reply.into_inner().sandbox_id)
}

#[tokio::test]
async fn concurrent_creates_never_overshoot_the_cap() {
    let backend = backend();
    let m = manager(
        &backend,
        ManagerConfig {
            max_sandboxes: 3,
            ..config(&key())
        },
    );
    // Hold the backend so all eight creates are in flight at once.
    backend.hold_creates(true);
    let creates: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.create(CreateSpec::default()).await })
        })
        .collect();
    backend.wait_creates(3).await;
    until("five creates refused", || async {
        creates.iter().filter(|c| c.is_finished()).count() == 5
    })
    .await;
    assert_eq!(
        backend.creates(),
        3,
        "refused creates never reach the backend"
    );
    backend.hold_creates(false);
    let mut made = Vec::new();
    for c in creates {
        match c.await.expect("create task") {
            Ok(record) => made.push(record),
            Err(HostError::TooManySandboxes(n)) => assert_eq!(n, 3),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(made.len(), 3);
    assert!(made.iter().all(|r| r.status == SandboxStatus::Running));
    assert_eq!(backend.running().len(), 3);
    assert_eq!(m.free_slots(), 0);
    let refused = m.create(CreateSpec::default()).await.expect_err("full");
    assert_eq!(tonic::Status::from(refused).code(), Code::ResourceExhausted);
    m.destroy(&made[0].id).await.expect("destroy");
    m.create(CreateSpec::default())
        .await
        .expect("a destroy frees a slot");
    m.destroy_all().await;
    assert!(backend.running().is_empty());
}

#[tokio::test]
async fn the_memory_budget_refuses_creates_beyond_it_until_a_destroy() {
    let backend = backend();
    let m = manager(
        &backend,
        ManagerConfig {
            memory_budget: 1 << 30,
            ..config(&key())
        },
    );
    let half = || CreateSpec {
        memory: "512m".into(),
        ..CreateSpec::default()
    };
    let first = m.create(half()).await.expect("first 512m");
    m.create(half()).await.expect("second 512m");
    let err = m.create(half()).await.expect_err("over budget");
    assert!(matches!(err, HostError::MemoryBudget { .. }), "{err}");
    assert!(err.to_string().contains("memory budget"), "{err}");
    assert_eq!(backend.creates(), 2, "the refused create started nothing");
    m.destroy(&first.id).await.expect("destroy");
    m.create(half()).await.expect("fits again after a destroy");
    m.destroy_all().await;
}

#[tokio::test]
async fn bad_requests_start_nothing() {
    let backend = backend();
    let m = manager(&backend, config(&key()));
    for spec in [
        CreateSpec {
            memory: "1k".into(),
            ..CreateSpec::default()
        },
        CreateSpec {
            cpu: -1.0,
            ..CreateSpec::default()
        },
        CreateSpec {
            labels: HashMap::from([("bad key".into(), "v".into())]),
            ..CreateSpec::default()
        },
    ] {
        let err = m.create(spec).await.expect_err("refused");
        assert_eq!(tonic::Status::from(err).code(), Code::InvalidArgument);
    }
    assert_eq!(backend.creates(), 0);
    assert!(m.list().is_empty());
}

#[tokio::test]
async fn the_reaper_destroys_expired_sandboxes_only() {
    let backend = backend();
    let m = manager(&backend, config(&key()));
    let short = m.create(CreateSpec::default()).await.expect("create");
    let long = m.create(CreateSpec::default()).await.expect("create");
    let extended = m.extend(&short.id, 1).await.expect("extend");
    assert!(extended.expires_at < long.expires_at);
    until("the short-lived sandbox reaped", || async {
        m.reap_expired().await;
        m.get(&short.id).is_err()
    })
    .await;
    assert_eq!(status(&m, &long.id), Some(SandboxStatus::Running));
    assert_eq!(backend.running(), vec![long.id.clone()]);
    assert!(!backend.workspace(&short.id).exists(), "its files are gone");
    m.destroy_all().await;
}

#[tokio::test]
async fn reconcile_marks_a_sandbox_whose_daemon_vanished_dead() {
    let backend = backend();
    let m = manager(
        &backend,
        ManagerConfig {
            max_sandboxes: 1,
            ..config(&key())
        },
    );
    let a = m.create(CreateSpec::default()).await.expect("create");
    assert!(backend.kill_daemon(&a.id));
    until("the backend sees the daemon gone", || async {
        backend.running().is_empty()
    })
    .await;
    // No exit watch runs here: the reaper's reconciliation must notice on its own.
    assert_eq!(status(&m, &a.id), Some(SandboxStatus::Running));
    m.reconcile().await;
    let record = m.get(&a.id).expect("the record stays");
    assert_eq!(record.status, SandboxStatus::Dead);
    assert!(matches!(m.channel(&a.id), Err(HostError::Dead { .. })));
    assert_eq!(m.free_slots(), 1, "a dead sandbox holds no slot");
    let b = m
        .create(CreateSpec::default())
        .await
        .expect("the slot is free");
    m.destroy(&a.id)
        .await
        .expect("a dead sandbox can be destroyed");
    m.destroy(&b.id).await.expect("destroy");
}

#[tokio::test]
async fn a_create_whose_caller_went_away_leaves_nothing() {
    let backend = backend();
    let m = manager(&backend, config(&key()));
    backend.hold_creates(true);
    let caller = tokio::spawn({
        let m = m.clone();
        async move { m.create(CreateSpec::default()).await }
    });
    backend.wait_creates(1).await;
    let pending = m.list();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, SandboxStatus::Creating);
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    // The create finishes in its own task, then destroys what nobody took.
    backend.hold_creates(false);
    until(
        "the unclaimed sandbox destroyed, files included",
        || async {
            m.list().is_empty()
                && backend.list().await.is_ok_and(|l| l.is_empty())
                && !backend.workspace(&pending[0].id).exists()
        },
    )
    .await;
    assert_eq!(backend.creates(), 1);
}

#[tokio::test]
async fn a_restarted_manager_adopts_live_daemons_and_refuses_a_planted_socket() {
    let backend = backend();
    let key = key();
    let first = manager(&backend, config(&key));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            first
                .create(CreateSpec::owned_by("alice"))
                .await
                .expect("create")
                .id,
        );
    }
    drop(first);
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    // Plant B's socket (a hard link: the same daemon) where C's belongs.
    let socket = |id: &SandboxId| match backend.endpoint(id) {
        agent_runtime::backend::Endpoint::Unix(path) => path,
        other => panic!("unexpected endpoint {other:?}"),
    };
    std::fs::remove_file(socket(c)).expect("remove C's socket");
    std::fs::hard_link(socket(b), socket(c)).expect("plant B's socket");

    let second = manager(&backend, config(&key));
    let (adopted, removed) = second.adopt().await.expect("adopt");
    assert_eq!((adopted.len(), removed), (3, 0));
    assert!(ids
        .iter()
        .all(|id| status(&second, id) == Some(SandboxStatus::Creating)));
    second.probe_adopted(adopted).await;
    for id in [a, b] {
        let record = second.get(id).expect("adopted");
        assert_eq!(record.status, SandboxStatus::Running);
        assert!(record.adopted);
        assert_eq!(record.owner, "alice", "ownership survives the restart");
        let channel = second.channel(id).expect("channel");
        assert_eq!(hello_id(channel).await.expect("hello"), id.as_str());
    }
    let planted = second.get(c).expect("recorded");
    assert_eq!(planted.status, SandboxStatus::Dead);
    assert!(matches!(second.channel(c), Err(HostError::Dead { .. })));
    assert!(
        !backend.running().contains(c),
        "the refused sandbox is removed"
    );
    second.destroy_all().await;
}

#[tokio::test]
async fn daemons_that_cannot_prove_their_secret_are_not_adopted() {
    let backend = backend();
    let first = manager(&backend, config(&key()));
    let a = first
        .create(CreateSpec::default())
        .await
        .expect("create")
        .id;
    drop(first);
    // Another host key: the daemon's secret is not the one this host derives.
    let stranger = manager(&backend, config(&key()));
    let (adopted, _) = stranger.adopt().await.expect("adopt");
    stranger.probe_adopted(adopted).await;
    assert_eq!(status(&stranger, &a), Some(SandboxStatus::Dead));
    let reason = stranger
        .get(&a)
        .expect("record")
        .dead_reason
        .unwrap_or_default();
    assert!(reason.contains("did not answer"), "{reason}");
    assert!(backend.running().is_empty());
}

// ---- through the in-process host's gRPC ----

async fn host(backend: &Arc<LocalBackend>, opts: InProcessOptions) -> InProcessHost {
    let backend: Arc<dyn Backend> = backend.clone();
    InProcessHost::start(backend, opts)
        .await
        .expect("in-process host")
}

async fn channel(host: &InProcessHost) -> Channel {
    Channel::from_shared(host.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn to<T>(message: T, sandbox: &str, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if !sandbox.is_empty() {
        req.metadata_mut()
            .insert(SANDBOX_ID_HEADER, sandbox.parse().expect("ascii"));
    }
    if let Some(token) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    req
}

async fn forwarded_hello(
    channel: &Channel,
    sandbox: &str,
    token: Option<&str>,
) -> Result<String, tonic::Status> {
    let reply = SandboxClient::new(channel.clone())
        .hello(to(HelloRequest { nonce: vec![1; 32] }, sandbox, token))
        .await?;
    Ok(reply.into_inner().sandbox_id)
}

#[tokio::test]
async fn forwarded_calls_reach_the_sandbox_they_name() {
    let (host, backend) = InProcessHost::local(InProcessOptions::default())
        .await
        .expect("in-process host");
    let ch = channel(&host).await;
    let mut sandboxes = SandboxesClient::new(ch.clone());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let info = sandboxes
            .create(CreateSandboxRequest::default())
            .await
            .expect("create")
            .into_inner();
        assert_eq!(info.status, "running");
        ids.push(info.sandbox_id);
    }
    for id in &ids {
        assert_eq!(forwarded_hello(&ch, id, None).await.expect("hello"), *id);
        SandboxClient::new(ch.clone())
            .write_file(to(
                WriteFileRequest {
                    path: "whoami.txt".into(),
                    content: id.clone().into_bytes(),
                    ..WriteFileRequest::default()
                },
                id,
                None,
            ))
            .await
            .expect("write");
    }
    for id in &ids {
        let sid = SandboxId::parse(id).expect("id");
        let written = std::fs::read_to_string(backend.workspace(&sid).join("whoami.txt"))
            .expect("written into its own workspace");
        assert_eq!(&written, id);
    }
    let unknown = forwarded_hello(&ch, "sb-000000000000", None)
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let missing = forwarded_hello(&ch, "", None).await.expect_err("no id");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    host.manager.destroy_all().await;
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_killed_daemon_is_dead_over_grpc_and_frees_its_slot() {
    let backend = backend();
    let host = host(
        &backend,
        InProcessOptions {
            max_sandboxes: 1,
            rest: false,
            ..InProcessOptions::default()
        },
    )
    .await;
    let ch = channel(&host).await;
    let mut sandboxes = SandboxesClient::new(ch.clone());
    let id = sandboxes
        .create(CreateSandboxRequest::default())
        .await
        .expect("create")
        .into_inner()
        .sandbox_id;
    assert!(backend.kill_daemon(&SandboxId::parse(&id).expect("id")));
    // The exit watch reports it; no reconciliation is needed.
    until("the sandbox reported dead", || {
        let mut sandboxes = sandboxes.clone();
        let id = id.clone();
        async move {
            sandboxes
                .get(GetSandboxRequest { sandbox_id: id })
                .await
                .is_ok_and(|r| r.into_inner().status == "dead")
        }
    })
    .await;
    let err = forwarded_hello(&ch, &id, None).await.expect_err("dead");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("is dead"), "{}", err.message());
    let other = sandboxes
        .create(CreateSandboxRequest::default())
        .await
        .expect("the dead sandbox's slot is free")
        .into_inner()
        .sandbox_id;
    sandboxes
        .destroy(DestroySandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .expect("destroy the dead one");
    let listed: Vec<String> = sandboxes
        .list(ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|s| s.sandbox_id)
        .collect();
    assert_eq!(listed, vec![other]);
    host.manager.destroy_all().await;
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_paused_daemon_meets_its_deadline_blocks_no_one_else_and_recovers() {
    let (host, backend) = InProcessHost::local(InProcessOptions {
        rest: false,
        ..InProcessOptions::default()
    })
    .await
    .expect("in-process host");
    let ch = channel(&host).await;
    let mut sandboxes = SandboxesClient::new(ch.clone());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let info = sandboxes
            .create(CreateSandboxRequest::default())
            .await
            .expect("create");
        ids.push(info.into_inner().sandbox_id);
    }
    let (stuck, fine) = (ids[0].clone(), ids[1].clone());
    assert!(
        backend
            .pause_daemon(&SandboxId::parse(&stuck).expect("id"))
            .await
    );
    let stuck_call = tokio::spawn({
        let ch = ch.clone();
        let stuck = stuck.clone();
        async move {
            let mut req = to(HelloRequest { nonce: vec![1; 32] }, &stuck, None);
            // Long enough that the other sandbox's answer comes first even on a loaded machine:
            // the check is the order, not the time.
            req.set_timeout(Duration::from_secs(8));
            SandboxClient::new(ch).hello(req).await
        }
    });
    assert_eq!(
        forwarded_hello(&ch, &fine, None).await.expect("the other"),
        fine
    );
    if stuck_call.is_finished() {
        panic!(
            "the call to the paused sandbox ended before the other sandbox answered: {:?}",
            stuck_call.await
        );
    }
    let err = stuck_call.await.expect("task").expect_err("stuck");
    // The host answers DEADLINE_EXCEEDED at the client's grpc-timeout; tonic's client enforces
    // the same deadline itself (CANCELLED "Timeout expired"), and either may be first.
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    assert!(backend.resume_daemon(&SandboxId::parse(&stuck).expect("id")));
    assert_eq!(
        forwarded_hello(&ch, &stuck, None).await.expect("resumed"),
        stuck
    );
    let record = host
        .manager
        .get(&SandboxId::parse(&stuck).expect("id"))
        .expect("record");
    assert_eq!(
        record.status,
        SandboxStatus::Running,
        "a paused daemon is not dead"
    );
    host.manager.destroy_all().await;
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn tokens_authenticate_every_call_and_own_their_sandboxes() {
    const ALICE: &str = "alice-token-0123456789";
    const BOB: &str = "bob-token-0123456789ab";
    let backend = backend();
    let tokens = Tokens::parse(&format!("alice:{ALICE}\nbob:{BOB}\n")).expect("tokens");
    let host = host(
        &backend,
        InProcessOptions {
            tokens: Some(tokens),
            rest: false,
            ..InProcessOptions::default()
        },
    )
    .await;
    let ch = channel(&host).await;
    let mut sandboxes = SandboxesClient::new(ch.clone());

    for token in [None, Some("not-a-valid-token-at-all")] {
        let err = sandboxes
            .create(to(CreateSandboxRequest::default(), "", token))
            .await
            .expect_err("no valid token");
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    assert_eq!(backend.creates(), 0, "nothing made without a token");

    let id = sandboxes
        .create(to(CreateSandboxRequest::default(), "", Some(ALICE)))
        .await
        .expect("alice creates")
        .into_inner()
        .sandbox_id;
    assert_eq!(
        host.manager
            .get(&SandboxId::parse(&id).expect("id"))
            .expect("record")
            .owner,
        "alice"
    );
    assert_eq!(
        forwarded_hello(&ch, &id, Some(ALICE))
            .await
            .expect("alice's call"),
        id
    );

    let unauthenticated = forwarded_hello(&ch, &id, None).await.expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let bobs = sandboxes
        .list(to(ListSandboxesRequest::default(), "", Some(BOB)))
        .await
        .expect("bob lists")
        .into_inner()
        .sandboxes;
    assert!(bobs.is_empty(), "bob sees none of alice's");
    let get = sandboxes
        .get(to(
            GetSandboxRequest {
                sandbox_id: id.clone(),
            },
            "",
            Some(BOB),
        ))
        .await
        .expect_err("bob's get");
    assert_eq!(get.code(), Code::NotFound);
    let destroy = sandboxes
        .destroy(to(
            DestroySandboxRequest {
                sandbox_id: id.clone(),
            },
            "",
            Some(BOB),
        ))
        .await
        .expect_err("bob's destroy");
    assert_eq!(destroy.code(), Code::NotFound);
    let call = forwarded_hello(&ch, &id, Some(BOB))
        .await
        .expect_err("bob's call");
    assert_eq!(call.code(), Code::NotFound);
    assert_eq!(
        forwarded_hello(&ch, &id, Some(ALICE))
            .await
            .expect("still alice's"),
        id
    );
    host.manager.destroy_all().await;
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_restarted_in_process_host_adopts_what_the_first_left() {
    let backend = backend();
    let first = host(&backend, InProcessOptions::default()).await;
    let id = {
        let mut sandboxes = SandboxesClient::new(channel(&first).await);
        sandboxes
            .create(CreateSandboxRequest::default())
            .await
            .expect("create")
            .into_inner()
            .sandbox_id
    };
    let key = first.host_key.clone();
    first.shutdown().await.expect("shutdown");
    assert_eq!(
        backend.running().len(),
        1,
        "a host's shutdown leaves its sandboxes"
    );

    let second = host(
        &backend,
        InProcessOptions {
            host_key: Some(key),
            ..InProcessOptions::default()
        },
    )
    .await;
    let ch = channel(&second).await;
    let sid = SandboxId::parse(&id).expect("id");
    until("the sandbox adopted", || async {
        status(&second.manager, &sid) == Some(SandboxStatus::Running)
    })
    .await;
    assert_eq!(forwarded_hello(&ch, &id, None).await.expect("hello"), id);
    second.manager.destroy_all().await;
    second.shutdown().await.expect("shutdown");
}
