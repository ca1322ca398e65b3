//! Sandbox lifecycle: destroy, restart adoption, caps, the reaper, concurrency, errors.

use agent_runtime_e2e::{
    instance_containers, sandbox_dir, unique_instance, wait_no_containers, with_id, Host,
};
use agent_runtime_proto::v1::{
    CreateSandboxRequest, ExecRequest, ExtendTimeoutRequest, GetSandboxRequest, HelloRequest,
    ListSandboxesRequest,
};
use tonic::Code;

#[tokio::test]
async fn destroy_leaves_no_container_and_no_directory() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let dir = sandbox_dir(&host.instance, &id);
    assert!(
        dir.is_dir(),
        "{} missing while the sandbox runs",
        dir.display()
    );
    assert_eq!(instance_containers(&host.instance).len(), 1);
    host.sh(&id, "echo data > /workspace/f").await;
    host.destroy(&id).await;
    assert!(instance_containers(&host.instance).is_empty());
    assert!(!dir.exists(), "{} left behind", dir.display());
    let err = host
        .sandbox()
        .await
        .hello(with_id(&id, HelloRequest::default()))
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let err = host
        .sandboxes()
        .await
        .destroy(agent_runtime_proto::v1::DestroySandboxRequest { sandbox_id: id })
        .await
        .expect_err("twice");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_restarted_host_finds_its_sandboxes() {
    let instance = unique_instance();
    let mut first = Host::start_instance(&instance, false, &[]);
    let id = first.create().await;
    first.sh(&id, "echo kept > /workspace/state").await;
    first
        .sandboxes()
        .await
        .extend_timeout(ExtendTimeoutRequest {
            sandbox_id: id.clone(),
            timeout_seconds: 7000,
        })
        .await
        .expect("extend");
    first.stop();
    assert_eq!(
        instance_containers(&instance).len(),
        1,
        "the sandbox must outlive its host"
    );

    let second = Host::start_instance(&instance, true, &[]);
    // The new host opens its ports at once and checks adopted sandboxes in the background:
    // `creating` until the daemon has proved who it is, then `running`.
    second
        .wait_status(&id, "past creating (adopted)", |s| {
            s.as_deref() != Ok("creating")
        })
        .await;
    let info = second
        .sandboxes()
        .await
        .get(GetSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .expect("adopted")
        .into_inner();
    assert_eq!(info.status, "running");
    let expires = info.expires_at.clone();
    assert!(expires > info.created_at);
    let out = second.sh(&id, "cat /workspace/state").await;
    assert_eq!(out.stdout, "kept\n");
    drop(second);
    assert!(
        instance_containers(&instance).is_empty(),
        "cleanup-on-exit left containers"
    );
}

#[tokio::test]
async fn cap_reaper_and_bad_requests() {
    let host = Host::start(&["--max-sandboxes", "1"]);
    let mut sb = host.sandboxes().await;
    let short = sb
        .create(CreateSandboxRequest {
            timeout_seconds: 2,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let err = sb
        .create(CreateSandboxRequest::default())
        .await
        .expect_err("over the cap");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("--max-sandboxes"),
        "{}",
        err.message()
    );

    // The reaper destroys it after its 2 s lifetime, with no call from anyone.
    host.wait_status(
        &short.sandbox_id,
        "reaped at the end of its lifetime",
        |s| s == &Err(Code::NotFound),
    )
    .await;
    let listed = sb
        .list(ListSandboxesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.sandboxes.is_empty(), "{listed:?}");
    wait_no_containers(&host.instance, "the reaped sandbox's container to go");

    for bad in [
        CreateSandboxRequest {
            memory: "lots".into(),
            ..Default::default()
        },
        CreateSandboxRequest {
            memory: "16m".into(),
            ..Default::default()
        },
        CreateSandboxRequest {
            cpu: 1000.0,
            ..Default::default()
        },
    ] {
        let err = sb.create(bad).await.expect_err("bad limits");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = sb
        .get(GetSandboxRequest {
            sandbox_id: "sb-0000".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    // Sandbox-service calls without `sandbox-id` say what is missing.
    let err = host
        .sandbox()
        .await
        .hello(HelloRequest::default())
        .await
        .expect_err("no id");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("sandbox-id"), "{}", err.message());
}

#[tokio::test]
async fn twenty_concurrent_cycles_leak_nothing() {
    let host = Host::start(&[]);
    let cycles = (0..20).map(|i| {
        let host = &host;
        async move {
            let id = host.create().await;
            let mut client = host.sandbox().await;
            let req = ExecRequest {
                language: "shell".into(),
                code: format!("echo cycle-{i}"),
                ..Default::default()
            };
            let out = agent_runtime_e2e::exec_with(&mut client, &id, req)
                .await
                .expect("exec");
            assert_eq!(out.stdout, format!("cycle-{i}\n"));
            host.destroy(&id).await;
            id
        }
    });
    let ids = futures::future::join_all(cycles).await;
    assert_eq!(ids.len(), 20);
    assert!(
        instance_containers(&host.instance).is_empty(),
        "containers leaked"
    );
    for id in &ids {
        assert!(
            !sandbox_dir(&host.instance, id).exists(),
            "directory of {id} leaked"
        );
    }
    let left = host
        .sandboxes()
        .await
        .list(ListSandboxesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(left.sandboxes.is_empty());
}

/// A paused pool in Docker: members wait frozen (`docker pause`), a claim unpauses one and it
/// answers with the caller's env.
#[tokio::test]
async fn a_browser_and_kernel_pool_member_is_ready_only_once_they_run() {
    let host = Host::start(&[
        "--pool",
        "name=warm,size=1,memory=1g,browser,kernel",
        "--warm-contexts",
        "0",
    ]);
    let mut lifecycle = host.sandboxes().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let status = lifecycle
            .pool_status(agent_runtime_proto::v1::PoolStatusRequest {})
            .await
            .expect("pool status")
            .into_inner();
        if status
            .pools
            .iter()
            .any(|p| p.shape.as_ref().is_some_and(|s| s.name == "warm") && p.ready == 1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hung: the pool never filled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let info = lifecycle
        .create(CreateSandboxRequest {
            memory: "1g".into(),
            ..Default::default()
        })
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(info.pool, "warm");
    // At once, no waiting: Chromium has a page (a renderer process) and the spare kernel runs.
    let out = host
        .sh(
            &info.sandbox_id,
            "pgrep -c -f -- '--type=renderer' ; pgrep -c -f ipykernel_launcher",
        )
        .await;
    let counts: Vec<u32> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect();
    assert!(
        counts.len() == 2 && counts[0] >= 1 && counts[1] >= 1,
        "renderer and kernel processes at claim: {counts:?} ({})",
        out.stderr
    );
    host.destroy(&info.sandbox_id).await;
}

#[tokio::test]
async fn a_paused_pool_keeps_its_first_member_thawed_and_hands_that_one_out() {
    let host = Host::start(&["--pool", "name=frozen,size=3,paused"]);
    let mut lifecycle = host.sandboxes().await;
    // (running, paused) members of this host: the pool's alone, nothing else is created here.
    let states = |instance: String| {
        let ids = |status: &str| -> Vec<String> {
            agent_runtime_e2e::docker(&[
                "ps",
                "--format",
                "{{.Label \"agent-runtime.sandbox-id\"}}",
                "--filter",
                &format!("label=agent-runtime.instance={instance}"),
                "--filter",
                &format!("status={status}"),
            ])
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
        };
        (ids("running"), ids("paused"))
    };
    let watcher = lifecycle.clone();
    let settled = |want_paused: usize| {
        let instance = host.instance.clone();
        let mut lifecycle = watcher.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                // Full and idle first: a member being created runs until it is paused.
                let pool = lifecycle
                    .pool_status(agent_runtime_proto::v1::PoolStatusRequest {})
                    .await
                    .expect("pool status")
                    .into_inner()
                    .pools
                    .into_iter()
                    .next();
                let idle = pool.is_some_and(|p| p.ready == 3 && p.starting == 0);
                let (running, paused) = states(instance.clone());
                if idle && running.len() == 1 && paused.len() == want_paused {
                    return running[0].clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "hung: want 1 running and {want_paused} paused members, have {running:?} running, {paused:?} paused"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let head = settled(2).await;
    let info = lifecycle
        .create(CreateSandboxRequest {
            env: std::collections::HashMap::from([("FROM_POOL".into(), "yes".into())]),
            ..Default::default()
        })
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(info.pool, "frozen");
    assert_eq!(
        info.sandbox_id, head,
        "the thawed member is handed out first"
    );
    let out = host.sh(&info.sandbox_id, "echo $FROM_POOL").await;
    assert_eq!(out.stdout, "yes\n");
    host.destroy(&info.sandbox_id).await;
    // The pool refills and thaws its next member; two wait frozen.
    let next = settled(2).await;
    assert_ne!(next, info.sandbox_id);
}

#[tokio::test]
async fn a_paused_pool_member_is_unpaused_on_claim_and_answers() {
    let host = Host::start(&["--pool", "name=frozen,size=1,paused"]);
    let mut lifecycle = host.sandboxes().await;
    let frozen = |lifecycle: agent_runtime_proto::v1::sandboxes_client::SandboxesClient<_>| async move {
        let mut lifecycle = lifecycle;
        let status = lifecycle
            .pool_status(agent_runtime_proto::v1::PoolStatusRequest {})
            .await
            .expect("pool status")
            .into_inner();
        status.pools.first().map_or(0, |p| p.ready)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while frozen(lifecycle.clone()).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "hung: the pool never filled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let paused: Vec<String> = agent_runtime_e2e::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=agent-runtime.instance={}", host.instance),
        "--filter",
        "status=paused",
    ])
    .map(|s| s.lines().map(str::to_owned).collect())
    .unwrap_or_default();
    assert_eq!(paused.len(), 1, "the member waits paused");
    let info = lifecycle
        .create(CreateSandboxRequest {
            env: std::collections::HashMap::from([("FROM_POOL".into(), "yes".into())]),
            ..Default::default()
        })
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(info.pool, "frozen");
    let out = host.sh(&info.sandbox_id, "echo $FROM_POOL").await;
    assert_eq!(out.stdout, "yes\n");
    host.destroy(&info.sandbox_id).await;
}
