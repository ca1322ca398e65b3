//! Traces under Docker (issue 13): a sandbox has no network, yet sandboxd's spans reach the
//! collector — the host carries them over the sandbox's socket and forwards them. A real
//! `agent-runtime serve` exports to a real OTLP/gRPC receiver on loopback; an Exec sent with a
//! `traceparent` is one trace down to sandboxd's `process.spawn`, and user code sees no
//! `OTEL_*` or `SANDBOXD_TRACES`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_runtime_e2e::{with_id, Host};
use agent_runtime_proto::v1::ExecRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// (service, name, trace id, span id, parent id) of every span received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<[String; 5]>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                all.push([
                    service.clone(),
                    span.name,
                    hex::encode(span.trace_id),
                    hex::encode(span.span_id),
                    hex::encode(span.parent_span_id),
                ]);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Received {
    /// Waits up to 30 s for a span matching `check`.
    async fn until(&self, what: &str, check: impl Fn(&[String; 5]) -> bool) -> [String; 5] {
        for _ in 0..300 {
            let found = self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|s| check(s))
                .cloned();
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        panic!("never received {what}; received:\n{all:#?}");
    }
}

#[tokio::test]
async fn sandboxd_spans_reach_the_collector_through_the_host() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let endpoint = format!("http://{addr}");
    let host = Host::start_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let id = host.create().await;

    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let mut request = with_id(
        &id,
        ExecRequest {
            language: "shell".into(),
            code: "env | grep -E '^(OTEL_|SANDBOXD_TRACES)' || echo clean".into(),
            timeout_seconds: 30.0,
            ..Default::default()
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .expect("ascii"),
    );
    let mut stream = host
        .sandbox()
        .await
        .exec(request)
        .await
        .unwrap_or_else(|s| panic!("exec: {s:?}\nhost log:\n{}", host.log()))
        .into_inner();
    let mut stdout = Vec::new();
    while let Some(event) = stream.message().await.expect("exec stream") {
        if let Some(agent_runtime_proto::v1::exec_event::Event::Stdout(chunk)) = event.event {
            stdout.extend_from_slice(&chunk);
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&stdout).trim(),
        "clean",
        "user code sees the collector's variables"
    );

    let host_exec = received
        .until("the host's Exec span in the caller's trace", |s| {
            s[0] == "agent-runtime"
                && s[1] == "agent_runtime.v1.Sandbox/Exec"
                && s[2] == caller_trace
                && s[4] == caller_span
        })
        .await;
    let daemon_exec = received
        .until("sandboxd's Exec span under the host's", |s| {
            s[0] == "sandboxd" && s[1] == "agent_runtime.v1.Sandbox/Exec" && s[4] == host_exec[3]
        })
        .await;
    assert_eq!(daemon_exec[2], caller_trace);
    received
        .until("sandboxd's process.spawn under its Exec span", |s| {
            s[0] == "sandboxd" && s[1] == "process.spawn" && s[4] == daemon_exec[3]
        })
        .await;
    host.destroy(&id).await;
}

/// Prometheus text → (series with its labels, value).
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// Under Docker, with no collector: a run the kernel OOM-kills and one its timeout kills are
/// counted by reason in `/metrics` (an Exec on a sandbox that does not exist under its error
/// code), the audit log holds them (exit code and reason, the code's hash, never the code) and
/// `agent-runtime audit --sandbox` reads them back, and the log rotates within
/// `--audit-max-bytes`.
#[tokio::test]
async fn kills_are_counted_and_audited_and_the_log_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let host = Host::start(&["--audit-log", &log_arg, "--audit-max-bytes", "8k"]);
    let id = host.create().await;

    let hog = "b = bytearray(1024 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n";
    let oom = host.exec(&id, "python", hog, 60.0).await.expect("exec");
    assert_eq!(
        oom.exit.reason, "oom",
        "{:?} stderr={}",
        oom.exit, oom.stderr
    );
    let slow = host
        .exec(&id, "shell", "sleep 30", 1.0)
        .await
        .expect("exec");
    assert_eq!(slow.exit.reason, "timeout", "{:?}", slow.exit);
    let gone = host.create().await;
    host.destroy(&gone).await;
    let request = with_id(
        &gone,
        ExecRequest {
            language: "shell".into(),
            code: "true".into(),
            ..Default::default()
        },
    );
    let code = match host.sandbox().await.exec(request).await {
        Err(status) => status.code(),
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Err(status) => break status.code(),
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("an Exec on a destroyed sandbox succeeded"),
                }
            }
        }
    };
    assert_eq!(code, tonic::Code::NotFound);

    let metrics = samples(
        &reqwest::get(format!("{}/metrics", host.rest))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text"),
    );
    for (series, want) in [
        (r#"agent_runtime_run_kills_total{reason="oom"}"#, 1.0),
        (r#"agent_runtime_run_kills_total{reason="timeout"}"#, 1.0),
        (
            r#"agent_runtime_rpc_errors_total{method="Sandbox/Exec",code="NOT_FOUND"}"#,
            1.0,
        ),
        (
            r#"agent_runtime_rpc_calls_total{method="Sandbox/Exec",code="OK"}"#,
            2.0,
        ),
        ("agent_runtime_sandbox_creates_total", 2.0),
        ("agent_runtime_sandbox_destroys_total", 1.0),
    ] {
        assert_eq!(
            metrics.get(series).copied(),
            Some(want),
            "{series} in {metrics:#?}"
        );
    }

    // The CLI reads the log back, filtered to the sandbox.
    let out = std::process::Command::new(agent_runtime_e2e::binary("agent-runtime"))
        .args([
            "audit",
            "--json",
            "--since",
            "1h",
            "--sandbox",
            &id,
            "--file",
            &log_arg,
        ])
        .output()
        .expect("running agent-runtime audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("bytearray") && !text.contains("sleep 30"),
        "the audit log holds code:\n{text}"
    );
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        records.iter().all(|r| r["sandbox"] == id.as_str()),
        "{text}"
    );
    let execs: Vec<_> = records
        .iter()
        .filter(|r| r["operation"] == "Sandbox/Exec")
        .collect();
    assert_eq!(execs.len(), 2, "one line per Exec call:\n{text}");
    assert_eq!(execs[0]["exit_reason"], "oom", "{text}");
    assert_eq!(
        execs[0]["code_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hog.as_bytes()))
    );
    assert_eq!(execs[1]["exit_reason"], "timeout", "{text}");
    assert!(
        records.iter().any(|r| r["operation"] == "Sandboxes/Create"),
        "{text}"
    );

    // Rotation: the current file and the one rotated file each stay within the cap.
    for _ in 0..60 {
        assert_eq!(host.sh(&id, "true").await.exit.code, 0);
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let rotated = dir.path().join("audit.jsonl.1");
    assert!(
        size(&rotated) > 0,
        "60 calls past an 8 KiB cap did not rotate the log"
    );
    assert!(
        size(&rotated) <= 8192,
        "rotated file: {} bytes",
        size(&rotated)
    );
    assert!(size(&log) <= 8192, "current file: {} bytes", size(&log));
    host.destroy(&id).await;
}
