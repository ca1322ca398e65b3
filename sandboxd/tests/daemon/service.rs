//! Hello, health, reflection, and browser calls where no browser can start.

use agent_runtime_proto::v1::{
    BrowserClickRequest, BrowserSnapshotRequest, BrowserTarget, BrowserTypeRequest, HelloRequest,
    ListContextsRequest, RunCodeRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    ServerReflectionRequest,
};

use std::time::Duration;

use agent_runtime_proto::v1::exec_event::Event;

use crate::support::{request, session_members, Daemon};

#[tokio::test]
async fn hello_reports_protocol_version_and_capabilities() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let hello = client.hello(HelloRequest::default()).await?.into_inner();
    assert_eq!(hello.protocol, agent_runtime_proto::PROTOCOL);
    assert_eq!(hello.daemon_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        hello.capabilities,
        ["exec", "files", "contexts", "browser", "runs"]
    );

    // Contexts are served; without kernels there is nothing to list or run.
    let listed = client
        .list_contexts(ListContextsRequest {})
        .await?
        .into_inner();
    assert!(listed.contexts.is_empty());
    let err = client
        .run_code(RunCodeRequest {
            context_id: "ctx-000000000000".into(),
            code: "1".into(),
            timeout_seconds: 0.0,
        })
        .await
        .err();
    assert_eq!(err.as_ref().map(|e| e.code()), Some(Code::NotFound));
    assert!(err.is_some_and(|e| e
        .message()
        .starts_with("context ctx-000000000000 not found")));
    // Outside the image there is no driver: the caller is told, and the daemon keeps serving.
    let err = client
        .browser_snapshot(BrowserSnapshotRequest::default())
        .await
        .err();
    assert_eq!(err.as_ref().map(|e| e.code()), Some(Code::Unavailable));
    assert!(
        err.is_some_and(|e| e.message().starts_with("the browser did not start")),
        "a clear launch error"
    );
    assert!(client.hello(HelloRequest::default()).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn click_and_type_name_their_element_by_target_or_by_the_flat_fields() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let target = |selector: &str, ref_id: &str| {
        Some(BrowserTarget {
            selector: selector.into(),
            ref_id: ref_id.into(),
        })
    };
    // A request that names its element gets as far as the browser, which cannot start here.
    let accepted = [
        BrowserClickRequest {
            target: target("#go", ""),
            ..Default::default()
        },
        BrowserClickRequest {
            ref_id: "ref_1".into(),
            ..Default::default()
        },
        BrowserClickRequest {
            ref_id: "1".into(),
            target: target("", "ref_1"),
            ..Default::default()
        },
    ];
    for req in accepted {
        let err = client.browser_click(req.clone()).await.err();
        assert_eq!(err.map(|e| e.code()), Some(Code::Unavailable), "{req:?}");
    }
    let typed = BrowserTypeRequest {
        text: "Ada".into(),
        target: target("input[name=name]", ""),
        ..Default::default()
    };
    let err = client.browser_type(typed).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::Unavailable));

    // One that names none, or two different ones, is refused before the browser is involved.
    let refused = [
        (BrowserClickRequest::default(), "give a ref_id"),
        (
            BrowserClickRequest {
                target: target("", ""),
                ..Default::default()
            },
            "give a ref_id",
        ),
        (
            BrowserClickRequest {
                selector: "#a".into(),
                target: target("", "ref_2"),
                ..Default::default()
            },
            "name different elements",
        ),
    ];
    for (req, says) in refused {
        let err = client.browser_click(req.clone()).await.err();
        assert_eq!(
            err.as_ref().map(|e| e.code()),
            Some(Code::InvalidArgument),
            "{req:?}"
        );
        assert!(err.is_some_and(|e| e.message().contains(says)), "{req:?}");
    }
    let typed = BrowserTypeRequest {
        text: "Ada".into(),
        ref_id: "ref_1".into(),
        target: target("#b", ""),
        ..Default::default()
    };
    let err = client.browser_type(typed).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    Ok(())
}

#[tokio::test]
async fn health_and_reflection_answer() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut health = HealthClient::new(daemon.channel().await?);
    for service in ["", "agent_runtime.v1.Sandbox"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(daemon.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let reply = replies
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no reflection reply"))??;
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        anyhow::bail!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "agent_runtime.v1.Sandbox"),
        "{names:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_kills_running_code_and_removes_the_socket() -> anyhow::Result<()> {
    let mut daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut stream = client
        .exec(request("shell", "echo $$; trap '' TERM; sleep 100"))
        .await?
        .into_inner();
    let sid = match stream.next().await {
        Some(Ok(event)) => match event.event {
            Some(Event::Stdout(bytes)) => String::from_utf8(bytes)?.trim().parse::<i32>()?,
            other => anyhow::bail!("expected the pid first, got {other:?}"),
        },
        other => anyhow::bail!("expected the pid first, got {other:?}"),
    };

    // The run ignores SIGTERM and sleeps 100 s: a daemon that waited for it instead of killing
    // it would still be running when the guard gives up.
    let status = daemon.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "sandboxd hung at shutdown, or did not stop cleanly: {status:?}"
    );
    assert!(
        session_members(sid).is_empty(),
        "the run outlived the daemon"
    );
    // The call still ended properly, with an exit event saying why.
    let mut exit = None;
    while let Some(Ok(event)) = stream.next().await {
        if let Some(Event::Exit(e)) = event.event {
            exit = Some(e);
        }
    }
    let exit = exit.ok_or_else(|| anyhow::anyhow!("no exit event"))?;
    assert!(exit.killed, "{exit:?}");
    assert_eq!(exit.reason, "cancelled");
    assert!(!daemon.socket().exists(), "the socket file was left behind");
    Ok(())
}
