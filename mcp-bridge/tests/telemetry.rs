//! Issue 13, end to end in the middle tier (no Docker): one MCP `code_run` through a real
//! `mcp-bridge` process, an in-process host and a real `sandboxd` process is ONE trace —
//! bridge span → host span → sandboxd span → the run's spans — received by real OTLP receivers
//! on loopback (the host exports over gRPC, the bridge over http/protobuf). sandboxd gets no
//! collector address: as under Docker, whose sandboxes have no network, its spans reach the host
//! over `Telemetry.Spans` and the host forwards them to its collector. A tool call whose MCP
//! `_meta` carries a `traceparent`, and a REST execute with a `traceparent` header, continue the
//! caller's trace. `/metrics` parses as
//! Prometheus text and moves with the calls; the audit log has the calls, a hash of the code and
//! never the code.
//!
//! Its own test binary: the process's tracing subscriber (the host's) is global.

mod otlp;

use std::collections::HashMap;

use agent_runtime::serve::{InProcessHost, InProcessOptions};
use otlp::{grpc_receiver, http_receiver, span_in, until, Received};
use rmcp::model::CallToolRequestParams;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Prometheus text → (series with labels, value); panics on a line that is not the format.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "not a metric name: {line}"
        );
        out.insert(series.to_owned(), value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tool_call_is_one_trace_across_three_processes() -> anyhow::Result<()> {
    let via_grpc = Received::default();
    let via_http = Received::default();
    let grpc = grpc_receiver(via_grpc.clone()).await;
    let http = http_receiver(via_http.clone()).await;

    // The host (this process) exports over gRPC; the sandboxd processes it starts hand it their
    // spans (LocalBackend gives them no OTEL_* variables, only SANDBOXD_TRACES=host).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{grpc}"));
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    std::env::remove_var("OTEL_SERVICE_NAME");
    let telemetry = agent_runtime_telemetry::init(
        "agent-runtime",
        agent_runtime_telemetry::LogFormat::Text,
        "info",
        &agent_runtime_telemetry::OtelEnv::from_env(),
    )?;
    assert!(telemetry.exporting());

    let audit_path =
        std::env::temp_dir().join(format!("telemetry-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit_path);
    let (host, _backend) = InProcessHost::local(InProcessOptions {
        audit_log: Some(audit_path.clone()),
        ..InProcessOptions::default()
    })
    .await?;
    let rest = host.rest_url().expect("REST is on");
    let metrics_before = parse_prometheus(
        &reqwest::get(format!("{rest}/metrics"))
            .await?
            .text()
            .await?,
    );

    // The bridge: a real process, exporting over http/protobuf.
    let mut bridge = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("--addr")
        .arg(host.grpc_url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{http}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = bridge.stdout.take().expect("piped");
    let stdin = bridge.stdin.take().expect("piped");
    let client = ().serve((stdout, stdin)).await?;
    let code = concat!(
        "import os; print(6 * 7, [k for k in os.environ",
        " if k.startswith('OTEL_') or k == 'SANDBOXD_TRACES'])"
    );
    let mut params = CallToolRequestParams::new("code_run");
    params.arguments = json!({"language": "python", "code": code})
        .as_object()
        .cloned();
    let result = client.call_tool(params).await?;
    let text = serde_json::to_string(&result.structured_content)?;
    assert!(
        text.contains("42 []"),
        "code_run answered {text}: user code must see neither OTEL_* nor SANDBOXD_TRACES"
    );

    // bridge span → host span → sandboxd span → the run.
    let tool = until(&via_http, "the bridge's code_run span", |spans| {
        spans
            .iter()
            .find(|g| g.service == "mcp-bridge" && g.name == "tools/call code_run")
            .cloned()
    })
    .await;
    assert_eq!(
        tool.parent, "",
        "a tool call without _meta.traceparent starts its trace"
    );
    let host_exec = span_in(
        &via_grpc,
        "agent-runtime",
        "agent_runtime.v1.Sandbox/Exec",
        &tool.trace,
    )
    .await;
    assert_eq!(
        host_exec.parent, tool.id,
        "the host's span is the bridge span's child"
    );
    let daemon_exec = span_in(
        &via_grpc,
        "sandboxd",
        "agent_runtime.v1.Sandbox/Exec",
        &tool.trace,
    )
    .await;
    assert_eq!(
        daemon_exec.parent, host_exec.id,
        "sandboxd's span is the host span's child"
    );
    assert_eq!(
        daemon_exec
            .attrs
            .get("rpc.grpc.status_code")
            .map(String::as_str),
        Some("0")
    );
    let spawn = until(&via_grpc, "sandboxd's process.spawn span", |spans| {
        spans
            .iter()
            .find(|g| g.name == "process.spawn" && g.parent == daemon_exec.id)
            .cloned()
    })
    .await;
    assert_eq!(
        spawn.attrs.get("language").map(String::as_str),
        Some("python")
    );
    let run = until(&via_grpc, "sandboxd's process.run span", |spans| {
        spans
            .iter()
            .find(|g| g.name == "process.run" && g.trace == tool.trace)
            .cloned()
    })
    .await;
    assert_eq!(run.attrs.get("exit_code").map(String::as_str), Some("0"));
    // No code in any span.
    for g in via_grpc.spans().iter().chain(via_http.spans().iter()) {
        assert!(
            g.attrs.values().all(|v| !v.contains("6 * 7")),
            "span {} carries the code: {:?}",
            g.name,
            g.attrs
        );
    }

    // An MCP client's `_meta.traceparent` makes the tool call a child of the client's span.
    let mcp_trace = "5b8efff798038103d269b633813fc60c";
    let mcp_span = "eee19b7ec3c1b174";
    let params: CallToolRequestParams = serde_json::from_value(json!({
        "name": "code_run",
        "arguments": {"language": "shell", "code": "echo traced"},
        "_meta": {"traceparent": format!("00-{mcp_trace}-{mcp_span}-01")},
    }))?;
    let result = client.call_tool(params).await?;
    let text = serde_json::to_string(&result.structured_content)?;
    assert!(text.contains("traced"), "code_run answered {text}");
    let continued = until(
        &via_http,
        "the bridge's span in the client's trace",
        |spans| {
            spans
                .iter()
                .find(|g| g.service == "mcp-bridge" && g.trace == mcp_trace)
                .cloned()
        },
    )
    .await;
    assert_eq!(continued.name, "tools/call code_run");
    assert_eq!(
        continued.parent, mcp_span,
        "the tool call's span is the client's span's child"
    );
    let continued_host = span_in(
        &via_grpc,
        "agent-runtime",
        "agent_runtime.v1.Sandbox/Exec",
        mcp_trace,
    )
    .await;
    assert_eq!(continued_host.parent, continued.id);

    // REST with a traceparent continues the caller's trace.
    let http_client = reqwest::Client::new();
    let ctx: Value = http_client
        .post(format!("{rest}/api/v1/contexts"))
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let ctx_id = ctx["context_id"]
        .as_str()
        .unwrap_or_else(|| panic!("context: {ctx}"))
        .to_owned();
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer: Value = http_client
        .post(format!("{rest}/api/v1/contexts/{ctx_id}/execute"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"code": "1 + 1"}))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        answer.to_string().contains('2'),
        "execute answered {answer}"
    );
    let rest_span = until(
        &via_grpc,
        "the host's REST span in the caller's trace",
        |spans| {
            spans
                .iter()
                .find(|g| {
                    g.service == "agent-runtime"
                        && g.trace == caller_trace
                        && g.parent == caller_span
                })
                .cloned()
        },
    )
    .await;
    until(
        &via_grpc,
        "sandboxd's RunCode span under the REST span",
        |spans| {
            spans
                .iter()
                .find(|g| {
                    g.service == "sandboxd"
                        && g.name == "agent_runtime.v1.Sandbox/RunCode"
                        && g.parent == rest_span.id
                })
                .cloned()
        },
    )
    .await;
    until(
        &via_grpc,
        "the kernel.execute span in the caller's trace",
        |spans| {
            spans
                .iter()
                .find(|g| g.name == "kernel.execute" && g.trace == caller_trace)
                .cloned()
        },
    )
    .await;

    // /metrics: Prometheus text, and the counters moved.
    let after = parse_prometheus(
        &reqwest::get(format!("{rest}/metrics"))
            .await?
            .text()
            .await?,
    );
    let exec_ok = r#"agent_runtime_rpc_calls_total{method="Sandbox/Exec",code="OK"}"#;
    assert_eq!(metrics_before.get(exec_ok).copied().unwrap_or(0.0), 0.0);
    assert_eq!(after.get(exec_ok).copied(), Some(2.0), "metrics: {after:?}");
    assert_eq!(
        after.get("agent_runtime_sandbox_creates_total").copied(),
        Some(1.0)
    );
    assert!(
        after
            .get(r#"agent_runtime_rpc_response_bytes_total{method="Sandbox/Exec"}"#)
            .copied()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        after
            .get(r#"agent_runtime_rpc_duration_seconds_count{method="Sandbox/Exec"}"#)
            .copied()
            == Some(2.0)
    );
    assert!(
        after
            .get(r#"agent_runtime_sandboxes{state="running"}"#)
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    );

    // The audit log: the calls, the code's hash, never the code.
    let log = std::fs::read_to_string(&audit_path)?;
    assert!(
        !log.contains("6 * 7") && !log.contains("1 + 1") && !log.contains("echo traced"),
        "the audit log holds code:\n{log}"
    );
    let records: Vec<Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let execs: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "Sandbox/Exec")
        .collect();
    assert_eq!(execs.len(), 2, "one line per Exec call:\n{log}");
    let exec = execs[0];
    assert_eq!(execs[1]["trace_id"], mcp_trace);
    assert_eq!(exec["outcome"], "OK");
    assert_eq!(exec["caller"], "anonymous");
    assert_eq!(exec["exit_code"], 0);
    assert_eq!(
        exec["code_sha256"],
        hex::encode(Sha256::digest(code.as_bytes()))
    );
    assert_eq!(exec["trace_id"], tool.trace.as_str());
    assert!(
        exec["sandbox"]
            .as_str()
            .is_some_and(|s| s.starts_with("sb-")),
        "{exec}"
    );
    let create = records
        .iter()
        .find(|r| r["operation"] == "Sandboxes/Create")
        .unwrap_or_else(|| panic!("no Create record in\n{log}"));
    assert_eq!(create["sandbox"], exec["sandbox"]);
    assert!(records.iter().any(|r| r["operation"]
        .as_str()
        .is_some_and(|o| o == "REST POST /api/v1/contexts/{context_id}/execute")));

    client.cancel().await?;
    let _ = bridge.wait().await;
    host.shutdown().await?;
    telemetry.shutdown().await;
    Ok(())
}
