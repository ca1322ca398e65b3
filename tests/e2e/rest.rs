//! The REST API of DESIGN.md §3.2, with plain HTTP requests as curl would send them.

use std::time::Duration;

use agent_runtime_e2e::{binary, daemon_host_pid, hang_guard, wait_no_containers, Host, Stopped};
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

/// How long a REST call may go unanswered before a test calls it hung (a guard, not a speed
/// check).
const HUNG: Duration = Duration::from_secs(100);

/// An NDJSON execute being read: wait for text that proves the cell reached a point, act, then
/// [`Streamed::finish`].
struct Streamed {
    resp: reqwest::Response,
    text: String,
}

impl Streamed {
    /// Starts a streaming execute of `code` in `ctx`.
    async fn start(host: &Host, ctx: &str, code: &str) -> Self {
        let resp = client()
            .post(format!("{}/api/v1/contexts/{ctx}/execute", host.rest))
            .header("Accept", "application/x-ndjson")
            .json(&json!({ "code": code }))
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.status(), StatusCode::OK);
        Self {
            resp,
            text: String::new(),
        }
    }

    /// Reads until the stream so far contains `needle`; fails when the stream ends (or hangs)
    /// first.
    async fn until(&mut self, needle: &str) {
        let read = async {
            while !self.text.contains(needle) {
                match self.resp.chunk().await.expect("chunk") {
                    Some(c) => self.text.push_str(&String::from_utf8_lossy(&c)),
                    None => panic!("the stream ended without {needle:?}: {}", self.text),
                }
            }
        };
        hang_guard(HUNG, &format!("waiting for {needle:?}"), read).await;
    }

    /// Reads the rest of the stream; returns every NDJSON line and the whole text.
    async fn finish(mut self) -> (Vec<Value>, String) {
        let read = async {
            while let Some(c) = self.resp.chunk().await.expect("chunk") {
                self.text.push_str(&String::from_utf8_lossy(&c));
            }
        };
        hang_guard(HUNG, "the rest of the stream", read).await;
        let lines = self
            .text
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect();
        (lines, self.text)
    }
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
    wait_no_containers(&host.instance, "the deleted context's sandbox to go");
}

#[tokio::test]
async fn rich_results_errors_and_timeouts() {
    let host = Host::start(&[]);
    let (status, created) = post(&format!("{}/api/v1/contexts", host.rest), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ctx = created["context_id"]
        .as_str()
        .expect("context_id")
        .to_owned();

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

    // A cell that never ends is stopped at its timeout: TIMEOUT, and the kernel, interrupted,
    // answers the next cell with its state (the guard only stops a timeout that never fires).
    let spin = execute(&host, &ctx, "while True: pass", Some(2.0));
    let (status, v) = hang_guard(HUNG, "a cell past its 2 s timeout", spin).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(v["code"], "TIMEOUT");
    let (_, v) = execute(&host, &ctx, "print(x)", None).await;
    assert_eq!(
        v["output"]["stdout"], "1\n",
        "state lost after the timeout: {v}"
    );

    // Streaming execute: the first line arrives before the cell ends. The cell cannot end until
    // the test, having received that line, writes the file it waits for.
    let sandbox = created["sandbox_id"].as_str().expect("sandbox_id");
    let mut run = Streamed::start(
        &host,
        &ctx,
        "import os, time\nprint('first', flush=True)\n\
         while not os.path.exists('/workspace/go-stream'): time.sleep(0.05)\n\
         print('second')",
    )
    .await;
    run.until("first").await;
    assert!(!run.text.contains("second"), "{}", run.text);
    host.write_file(sandbox, "/workspace/go-stream", b"").await;
    let (lines, text) = run.finish().await;
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
    assert!(text.contains("second"), "{text}");
}

#[tokio::test]
async fn ten_contexts_at_once() {
    let host = Host::start(&[]);
    // Created two at a time (ten Python kernels booting at once on a 2-core machine only measure
    // the machine), then all ten execute at the same moment.
    let made: Vec<(String, String)> = futures::stream::iter(0..10)
        .map(|i| {
            let url = format!("{}/api/v1/contexts", host.rest);
            async move {
                let (status, v) = post(&url, json!({"session_name": format!("c{i}")})).await;
                assert_eq!(status, StatusCode::CREATED, "{v}");
                let id = |k: &str| v[k].as_str().expect(k).to_owned();
                (id("context_id"), id("sandbox_id"))
            }
        })
        .buffered(2)
        .collect()
        .await;
    let ctxs: Vec<String> = made.iter().map(|(c, _)| c.clone()).collect();
    // Every cell says it is running, then waits for a file the test writes only once all ten
    // have said so: cells that queued behind one another would never all be running (the
    // guard in `until` then fails the test as hung).
    let codes: Vec<String> = (0..made.len())
        .map(|i| {
            format!(
                "import os, time\nprint('running', flush=True)\n\
                 while not os.path.exists('/workspace/go-ten'): time.sleep(0.05)\n\
                 print({i} * 2)"
            )
        })
        .collect();
    let starts = made
        .iter()
        .zip(&codes)
        .map(|((ctx, _), code)| Streamed::start(&host, ctx, code));
    let starting = futures::future::join_all(starts);
    let mut runs = hang_guard(HUNG, "starting ten streaming executes", starting).await;
    for run in &mut runs {
        run.until("running").await;
    }
    for (_, sandbox) in &made {
        host.write_file(sandbox, "/workspace/go-ten", b"").await;
    }
    for (i, run) in runs.into_iter().enumerate() {
        let (lines, text) = run.finish().await;
        let stdout: String = lines
            .iter()
            .filter(|l| l["type"] == "stdout")
            .filter_map(|l| l["data"].as_str())
            .collect();
        assert_eq!(stdout, format!("running\n{}\n", i * 2), "{text}");
        assert_eq!(
            lines.last().map(|l| l["type"].clone()),
            Some(json!("done")),
            "{text}"
        );
    }
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
    // Polled for up to two minutes: a guard against a pool that never fills, not a speed check.
    for _ in 0..480 {
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
    assert_eq!(warm(&status), (1, 1), "hung waiting for the pool to fill");
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
    for _ in 0..480 {
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
    assert!(refilled, "hung waiting for the pool to refill");
}

async fn get(url: &str) -> (StatusCode, Value) {
    let resp = client().get(url).send().await.expect("GET");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Whether process `pid` is stopped (state `T` in /proc): a check that a call was answered while
/// the daemon it could have waited for was still stopped.
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "T"))
        })
        .unwrap_or(false)
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

    let (status, _) = get(&format!("{base}/contexts")).await;
    assert_eq!(status, StatusCode::OK);

    let frozen_pid = daemon_host_pid(frozen_sandbox);
    let _stopped = Stopped::new(frozen_sandbox);
    // SIGSTOP takes effect asynchronously: wait until /proc shows it (a guard, never a number).
    let stopping = async {
        while !is_stopped(frozen_pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    hang_guard(HUNG, "the frozen sandbox's daemon to stop", stopping).await;

    // The list answers (without the frozen sandbox's context) while that daemon is still
    // stopped: it skips the sandbox at its deadline instead of waiting for it to come back.
    let (status, list) = hang_guard(HUNG, "GET /contexts", get(&format!("{base}/contexts"))).await;
    assert!(
        is_stopped(frozen_pid),
        "answered only after the daemon came back"
    );
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["context_id"].as_str())
        .collect();
    assert_eq!(ids, [healthy_id.as_str()], "{list}");

    // Two lists at once: both answer, without the frozen context, while its daemon is still
    // stopped (no lock held across the stuck call that the second list would queue behind).
    let url = format!("{base}/contexts");
    let both = async { tokio::join!(get(&url), get(&url)) };
    let (a, b) = hang_guard(HUNG, "two concurrent GET /contexts", both).await;
    assert!(
        is_stopped(frozen_pid),
        "answered only after the daemon came back"
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
    assert_eq!(a.1, list);
    assert_eq!(b.1, list);

    // The healthy context works while the frozen one is stopped.
    let run = execute(&host, &healthy_id, "print(6 * 7)", None);
    let (status, v) = hang_guard(HUNG, "execute in the healthy context", run).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["output"]["stdout"], "42\n", "{v}");
    assert!(
        is_stopped(frozen_pid),
        "answered only after the daemon came back"
    );

    // An id in no cache (as every id is after a restart) is looked up without hanging.
    let (status, v) = execute(&host, "ctx-000000000000", "1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "CONTEXT_NOT_FOUND");

    // The frozen context fails by its deadline (timeout 1 s + a 10 s margin), not never:
    // TIMEOUT, or the host's "dead" once it has noticed the daemon no longer answers.
    let stuck = execute(&host, &frozen_id, "print(1)", Some(1.0));
    let (status, v) = hang_guard(HUNG, "execute in the frozen context", stuck).await;
    let dead = v["error"].as_str().is_some_and(|e| e.contains("dead"));
    assert!(v["code"] == "TIMEOUT" || dead, "{status} {v}");
    assert!(
        is_stopped(frozen_pid),
        "failed only after the daemon came back"
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
