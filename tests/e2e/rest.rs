//! The REST API of DESIGN.md §3.2, with plain HTTP requests as curl would send them.

use std::time::{Duration, Instant};

use agent_runtime_e2e::{binary, instance_containers, Host};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    let resp = client().post(url).json(&body).send().await.expect("POST");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_context(host: &Host, body: Value) -> String {
    let (status, v) = post(&format!("{}/api/v1/contexts", host.rest), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["context_id"].as_str().expect("context_id").to_owned()
}

async fn execute(host: &Host, ctx: &str, code: &str, timeout: Option<f64>) -> (StatusCode, Value) {
    let mut body = json!({ "code": code });
    if let Some(t) = timeout {
        body["timeout"] = json!(t);
    }
    post(
        &format!("{}/api/v1/contexts/{ctx}/execute", host.rest),
        body,
    )
    .await
}

#[tokio::test]
async fn the_specification_flow() {
    let host = Host::start(&[]);
    let base = format!("{}/api/v1", host.rest);
    let health = client()
        .get(format!("{}/health", host.rest))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("body"), "OK");

    let (status, created) = post(
        &format!("{base}/contexts"),
        json!({"type": "jupyter", "language": "python", "session_name": "spec", "working_dir": "/workspace"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ctx = created["context_id"].as_str().expect("id").to_owned();
    assert!(ctx.starts_with("ctx-"), "{ctx}");
    assert_eq!(created["type"], "jupyter");
    assert_eq!(created["status"], "active");
    let created_at = created["created_at"].as_str().expect("created_at");
    assert!(
        created_at.contains('T') && (created_at.ends_with('Z') || created_at.contains('+')),
        "{created_at}"
    );

    let (status, v) = execute(&host, &ctx, "print(\"Hello from Local Sandbox\")", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["output"]["stdout"], "Hello from Local Sandbox\n");
    assert_eq!(v["output"]["stderr"], "");
    assert_eq!(v["success"], true);
    assert!(v["execution_time"].as_f64().expect("seconds") >= 0.0);

    let (_, v) = execute(&host, &ctx, "x = 100", None).await;
    assert_eq!(v["success"], true, "{v}");
    let (_, v) = execute(&host, &ctx, "print(x)", None).await;
    assert_eq!(v["output"]["stdout"], "100\n", "{v}");

    let list: Value = client()
        .get(format!("{base}/contexts"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        list.as_array()
            .expect("array")
            .iter()
            .any(|c| c["context_id"] == ctx.as_str()),
        "{list}"
    );

    let del = client()
        .delete(format!("{base}/contexts/{ctx}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), StatusCode::OK);
    let (status, v) = execute(&host, &ctx, "print(x)", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"error": "Context not found", "code": "CONTEXT_NOT_FOUND"})
    );
    // The context's own sandbox (and so its kernel) is gone with it.
    let mut gone = false;
    for _ in 0..20 {
        if instance_containers(&host.instance).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "the context's sandbox outlived the context");
}

#[tokio::test]
async fn rich_results_errors_and_timeouts() {
    let host = Host::start(&[]);
    let ctx = create_context(&host, json!({})).await;

    let (_, v) = execute(
        &host,
        &ctx,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()",
        Some(60.0),
    )
    .await;
    let png = v["results"]
        .as_array()
        .and_then(|r| r.iter().find_map(|r| r["data"]["image/png"].as_str()))
        .unwrap_or_else(|| panic!("no image/png in {v}"));
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.trim())
        .expect("base64 PNG");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let (_, v) = execute(
        &host,
        &ctx,
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
        Some(60.0),
    )
    .await;
    let html = v["results"]
        .as_array()
        .and_then(|r| r.iter().find_map(|r| r["data"]["text/html"].as_str()))
        .unwrap_or_else(|| panic!("no text/html in {v}"));
    assert!(html.contains("<table"), "{html}");

    let (status, v) = execute(&host, &ctx, "x = 1\n1/0", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["name"], "ZeroDivisionError");
    let tb = v["output"]["stderr"].as_str().expect("stderr");
    assert!(
        tb.contains("ZeroDivisionError") && !tb.contains('\u{1b}'),
        "{tb:?}"
    );

    let started = Instant::now();
    let (status, v) = execute(&host, &ctx, "while True: pass", Some(2.0)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(v["code"], "TIMEOUT");
    assert!(took < Duration::from_secs(3), "TIMEOUT after {took:?}");
    let (_, v) = execute(&host, &ctx, "print(x)", None).await;
    assert_eq!(
        v["output"]["stdout"], "1\n",
        "state lost after the timeout: {v}"
    );

    // Streaming execute: the first line arrives before the cell ends.
    let started = Instant::now();
    let resp = client()
        .post(format!("{}/api/v1/contexts/{ctx}/execute", host.rest))
        .header("Accept", "application/x-ndjson")
        .json(&json!({"code": "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"}))
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut first_at = None;
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        if first_at.is_none() && text.contains("first") {
            first_at = Some(started.elapsed());
        }
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    assert_eq!(
        lines.first().map(|l| l["type"].clone()),
        Some(json!("stdout")),
        "{text}"
    );
    assert_eq!(
        lines.last().map(|l| l["type"].clone()),
        Some(json!("done")),
        "{text}"
    );
    let first_at = first_at.expect("saw 'first'");
    assert!(
        first_at + Duration::from_millis(1000) < started.elapsed(),
        "not streamed: first at {first_at:?}"
    );
}

#[tokio::test]
async fn ten_contexts_at_once() {
    let host = Host::start(&[]);
    // Created two at a time (ten Python kernels booting at once on a 2-core machine only measure
    // the machine), then all ten execute at the same moment.
    let ctxs: Vec<String> = futures::stream::iter(0..10)
        .map(|i| {
            let host = &host;
            async move { create_context(host, json!({"session_name": format!("c{i}")})).await }
        })
        .buffered(2)
        .collect()
        .await;
    let started = Instant::now();
    let runs = ctxs.iter().enumerate().map(|(i, ctx)| {
        let host = &host;
        async move {
            let (_, v) = execute(
                host,
                ctx,
                &format!("import time\ntime.sleep(2)\nprint({i} * 2)"),
                None,
            )
            .await;
            assert_eq!(v["output"]["stdout"], format!("{}\n", i * 2), "{v}");
        }
    });
    futures::future::join_all(runs).await;
    // Ten 2-second cells in well under 10 x 2 s: they ran at the same time.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    let list: Value = client()
        .get(format!("{}/api/v1/contexts", host.rest))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(10));
    for ctx in ctxs {
        let del = client()
            .delete(format!("{}/api/v1/contexts/{ctx}", host.rest))
            .send()
            .await
            .expect("delete");
        assert_eq!(del.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn bad_requests_and_credentials() {
    let host = Host::start(&["--basic-auth", "ann:s3cret"]);
    let base = format!("{}/api/v1", host.rest);
    let http = client();
    // No or wrong credentials.
    let r = http
        .get(format!("{base}/contexts"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = http
        .get(format!("{base}/contexts"))
        .basic_auth("ann", Some("wrong"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Health stays open for probes.
    let r = http
        .get(format!("{}/health", host.rest))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);

    let authed = |b: reqwest::RequestBuilder| b.basic_auth("ann", Some("s3cret"));
    let cases: [(&str, &str, &str); 5] = [
        ("contexts", "{not json", "as JSON"),
        (
            "contexts",
            r#"{"type": "jupyter", "colour": "blue"}"#,
            "unknown field `colour`",
        ),
        ("contexts", r#"{"language": 42}"#, "invalid type"),
        ("contexts", r#"{"language": "cobol"}"#, "python"),
        (
            "contexts/ctx-000000000000/execute",
            r#"{"code": 1}"#,
            "invalid type",
        ),
    ];
    for (path, body, hint) in cases {
        let r = authed(http.post(format!("{base}/{path}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let v: Value = r.json().await.expect("json error");
        assert_eq!(v["code"], "BAD_REQUEST");
        assert!(
            v["error"].as_str().unwrap_or("").contains(hint),
            "{body}: {v}"
        );
    }
    let r = authed(http.post(format!("{base}/contexts/ctx-000000000000/execute")))
        .json(&json!({"code": "1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["code"], "CONTEXT_NOT_FOUND");

    let spec: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(spec["paths"]["/api/v1/contexts/{id}/execute"]["post"].is_object());

    // Off loopback without credentials the host refuses to start.
    let out = std::process::Command::new(binary("agent-runtime"))
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "0.0.0.0:0",
            "--instance",
            "e2e-refuse",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--basic-auth"));
}

#[tokio::test]
async fn the_warm_pool_hands_out_ready_kernels_and_refills() {
    use agent_runtime_proto::v1::PoolStatusRequest;
    let host = Host::start(&["--warm-contexts", "1"]);
    let mut sb = host.sandboxes().await;
    let warm = |s: &agent_runtime_proto::v1::PoolStatusResponse| (s.warm, s.warm_target);
    let mut status = sb
        .pool_status(PoolStatusRequest {})
        .await
        .expect("pool")
        .into_inner();
    for _ in 0..120 {
        if status.warm == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = sb
            .pool_status(PoolStatusRequest {})
            .await
            .expect("pool")
            .into_inner();
    }
    assert_eq!(warm(&status), (1, 1), "the pool never filled");
    // Warm sandboxes are not listed as the user's.
    let listed = sb
        .list(agent_runtime_proto::v1::ListSandboxesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.sandboxes.is_empty(), "{listed:?}");

    let ctx = create_context(&host, json!({})).await;
    let (_, v) = execute(&host, &ctx, "print(1 + 1)", None).await;
    assert_eq!(v["output"]["stdout"], "2\n", "{v}");
    let listed = sb
        .list(agent_runtime_proto::v1::ListSandboxesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        listed.sandboxes.len(),
        1,
        "the taken sandbox is now the context's"
    );
    let mut refilled = false;
    for _ in 0..120 {
        if sb
            .pool_status(PoolStatusRequest {})
            .await
            .expect("pool")
            .into_inner()
            .warm
            == 1
        {
            refilled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(refilled, "the pool did not refill");
}

async fn get(url: &str) -> (StatusCode, Value) {
    let resp = client().get(url).send().await.expect("GET");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A sandbox whose daemon is stopped (SIGSTOP from the host, as user code could once do from
/// inside): Docker sees a running container, the daemon answers nothing. Continued on drop.
pub(crate) struct Stopped(i32);

impl Stopped {
    /// Stops the daemon of sandbox `container`.
    pub(crate) fn new(container: &str) -> Self {
        let init = agent_runtime_e2e::docker(&["inspect", "-f", "{{.State.Pid}}", container])
            .expect("docker inspect");
        let init = init.trim();
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
            .expect("children of the container's init");
        let pid = children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sandboxd")
            })
            .unwrap_or_else(|| panic!("no sandboxd under {container}'s init ({children})"));
        // SAFETY: plain kill(2) on a pid read from /proc a moment ago.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: plain kill(2), continuing the process stopped above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// One sandbox whose daemon is stopped: the REST API keeps answering for everyone else
/// (DESIGN.md §2.1); calls into the stopped one fail at their deadline instead of hanging.
#[tokio::test]
async fn a_stopped_sandbox_does_not_hang_the_rest_api() {
    let host = Host::start(&[]);
    let base = format!("{}/api/v1", host.rest);
    let (status, healthy) = post(&format!("{base}/contexts"), json!({"session_name": "ok"})).await;
    assert_eq!(status, StatusCode::CREATED, "{healthy}");
    let (status, frozen) = post(
        &format!("{base}/contexts"),
        json!({"session_name": "stuck"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{frozen}");
    let healthy_id = healthy["context_id"].as_str().expect("id").to_owned();
    let frozen_id = frozen["context_id"].as_str().expect("id").to_owned();
    let frozen_sandbox = frozen["sandbox_id"].as_str().expect("sandbox_id");
    assert_ne!(healthy["sandbox_id"], frozen["sandbox_id"]);

    // A baseline for "answers promptly": the same list with both sandboxes answering.
    let started = Instant::now();
    let (status, _) = get(&format!("{base}/contexts")).await;
    let baseline = started.elapsed();
    assert_eq!(status, StatusCode::OK);

    let _stopped = Stopped::new(frozen_sandbox);

    // The list answers (without the frozen sandbox's context) after at most the discovery
    // deadline, not never.
    let started = Instant::now();
    let (status, list) = get(&format!("{base}/contexts")).await;
    let listed_in = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["context_id"].as_str())
        .collect();
    eprintln!("GET /contexts: {baseline:?} with both answering, {listed_in:?} with one stopped");
    assert_eq!(ids, [healthy_id.as_str()], "{list}");

    // Two lists at once: neither waits for the other (no lock held across the stuck call).
    let started = Instant::now();
    let url = format!("{base}/contexts");
    let (a, b) = tokio::join!(get(&url), get(&url));
    let both_in = started.elapsed();
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert!(
        both_in < listed_in * 2 + Duration::from_secs(1),
        "two concurrent lists took {both_in:?}, one took {listed_in:?}: they queued"
    );

    // The healthy context works, and is not slowed by the frozen one.
    let started = Instant::now();
    let (status, v) = execute(&host, &healthy_id, "print(6 * 7)", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["output"]["stdout"], "42\n", "{v}");
    eprintln!("execute in the healthy context: {:?}", started.elapsed());

    // An id in no cache (as every id is after a restart) is looked up without hanging.
    let (status, v) = execute(&host, "ctx-000000000000", "1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "CONTEXT_NOT_FOUND");

    // The frozen context fails by its deadline (timeout 1 s + a 10 s margin), not never:
    // TIMEOUT, or the host's "dead" once it has noticed the daemon no longer answers.
    let started = Instant::now();
    let (status, v) = execute(&host, &frozen_id, "print(1)", Some(1.0)).await;
    let failed_in = started.elapsed();
    let dead = v["error"].as_str().is_some_and(|e| e.contains("dead"));
    assert!(v["code"] == "TIMEOUT" || dead, "{status} {v}");
    eprintln!(
        "execute in the frozen context: {status} {} after {failed_in:?}",
        v["code"]
    );

    // The healthy one still works after all that.
    let (_, v) = execute(&host, &healthy_id, "print('still')", None).await;
    assert_eq!(v["output"]["stdout"], "still\n", "{v}");
}

/// REST credentials reach only REST's contexts: a context made over gRPC, in a sandbox made over
/// gRPC, is CONTEXT_NOT_FOUND to REST even when its id is known.
#[tokio::test]
async fn rest_cannot_reach_contexts_made_over_grpc() {
    use agent_runtime_proto::v1::CreateContextRequest;
    let host = Host::start(&[]);
    let sandbox = host.create().await;
    let ctx = host
        .sandbox()
        .await
        .create_context(agent_runtime_e2e::with_id(
            &sandbox,
            CreateContextRequest {
                language: "python".into(),
                name: "grpc".into(),
                cwd: String::new(),
            },
        ))
        .await
        .expect("CreateContext over gRPC")
        .into_inner()
        .context_id;
    let base = format!("{}/api/v1", host.rest);

    let (status, v) = execute(&host, &ctx, "print('reached')", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        v,
        json!({"error": "Context not found", "code": "CONTEXT_NOT_FOUND"})
    );
    let (status, v) = get(&format!("{base}/contexts/{ctx}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, list) = get(&format!("{base}/contexts")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]), "REST lists a gRPC context");
    let del = client()
        .delete(format!("{base}/contexts/{ctx}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), StatusCode::NOT_FOUND);

    // Naming the sandbox explicitly is consent: REST may put its own context there, and reaches
    // that one only.
    let (status, mine) = post(
        &format!("{base}/contexts"),
        json!({"sandbox_id": sandbox, "session_name": "rest"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let mine = mine["context_id"].as_str().expect("id").to_owned();
    let (_, v) = execute(&host, &mine, "print('mine')", None).await;
    assert_eq!(v["output"]["stdout"], "mine\n", "{v}");
    let (_, list) = get(&format!("{base}/contexts")).await;
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["context_id"].as_str())
        .collect();
    assert_eq!(ids, [mine.as_str()], "{list}");
    let (status, _) = execute(&host, &ctx, "print('reached')", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
