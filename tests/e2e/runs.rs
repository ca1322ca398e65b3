//! Runs as objects against real Docker: the fork bomb cured by KillAll through the CLI and by
//! `process_kill all` through the real mcp-bridge (inside the 512-pid limit), a run resumed by a
//! restarted mcp-bridge without gap or duplicate, and `sandbox exec -it`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_e2e::{binary, hang_guard, Host};
use serde_json::{json, Value};

fn cli(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new(binary("agent-runtime"))
        .args(args)
        .env("AGENT_RUNTIME_ADDR", &host.addr)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running agent-runtime")
}

/// The processes in the sandbox other than init, sandboxd and the checking command itself, with
/// their state (`ps` inside): an empty list means no orphan and no zombie is left.
async fn leftovers(host: &Host, id: &str) -> String {
    let out = host
        .exec(
            id,
            "shell",
            // sandboxd itself and its spare Python interpreter (the zygote, started again after
            // a kill-all) are not user processes.
            "ps -eo pid=,ppid=,stat=,args= | awk '$1 != 1 && $4 !~ /sandboxd/ && $0 !~ /agent-runtime-zygote/ && $1 != '$$' && $2 != '$$''",
            30.0,
        )
        .await
        .expect("ps inside");
    out.stdout
}

/// Fails unless the sandbox answers `echo alive` within 2 s of `since` (the bound).
async fn answers_within_2s(host: &Host, id: &str, since: Instant) {
    let out = host
        .exec(id, "shell", "echo alive", 10.0)
        .await
        .expect("echo alive");
    assert_eq!(out.stdout, "alive\n", "{out:?}");
    let took = since.elapsed();
    eprintln!("echo alive answered {took:?} after the kill began");
    assert!(
        took < Duration::from_secs(2),
        "echo alive answered after {took:?}"
    );
}

#[tokio::test]
async fn a_fork_bomb_is_cured_by_kill_all_through_the_cli() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // bash's bomb keeps forking at the pids limit (dash's dies out once forks fail).
    let bomb = cli(
        &host,
        &["sandbox", "exec", &id, "--", "bash", "-c", "f(){ f|f& }; f"],
    );
    // The bomb's first shell returns at once; its children fork on in the background.
    assert!(bomb.status.code().is_some(), "{bomb:?}");
    let ls = cli(&host, &["run", "-s", &id, "ls", "--json"]);
    let runs: Value = serde_json::from_slice(&ls.stdout).unwrap_or_else(|e| {
        panic!(
            "run ls --json: {e}: {}",
            String::from_utf8_lossy(&ls.stderr)
        )
    });
    assert!(
        runs.as_array()
            .is_some_and(|r| r.iter().any(|r| r["command"] == "bash -c 'f(){ f|f& }; f'")),
        "{runs}"
    );

    let since = Instant::now();
    let killed = cli(&host, &["run", "-s", &id, "kill-all"]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let said = String::from_utf8_lossy(&killed.stderr).trim().to_owned();
    eprintln!("kill-all: {said}");
    let count: u64 = said
        .strip_prefix("killed ")
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        count > 10,
        "the bomb was not running when kill-all came: {said}"
    );
    answers_within_2s(&host, &id, since).await;
    assert_eq!(
        leftovers(&host, &id).await,
        "",
        "processes left after kill-all"
    );
}

/// A line-based MCP client of the real mcp-bridge over stdio.
struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Bridge {
    fn start(host: &Host, sandbox: &str) -> Self {
        let mut child = Command::new(binary("mcp-bridge"))
            .args(["--no-spawn-host", "--sandbox", sandbox])
            .env("AGENT_RUNTIME_ADDR", &host.addr)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting mcp-bridge");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut bridge = Self {
            child,
            stdin,
            stdout,
            next_id: 1,
        };
        bridge.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "e2e", "version": "0"}}),
        );
        bridge.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        bridge
    }

    fn send(&mut self, msg: Value) {
        writeln!(self.stdin, "{msg}").expect("writing to mcp-bridge");
        self.stdin.flush().expect("flush");
    }

    /// Sends a request and reads lines until its response (notifications skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("reading mcp-bridge");
            assert!(n > 0, "mcp-bridge closed its stdout during {method}");
            let msg: Value = serde_json::from_str(&line).expect("a JSON-RPC line");
            if msg["id"] == json!(id) {
                assert!(msg.get("error").is_none(), "{method}: {msg}");
                return msg["result"].clone();
            }
        }
    }

    /// Calls a tool that must succeed; its structured result.
    fn tool(&mut self, name: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        assert_ne!(r["isError"], true, "{name}: {r}");
        r["structuredContent"].clone()
    }

    /// Kills the bridge process outright (no orderly shutdown).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_fork_bomb_is_cured_by_process_kill_all_through_mcp() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut bridge = Bridge::start(&host, &id);
    let bomb = bridge.tool(
        "code_run",
        json!({"language": "shell", "code": "f(){ f|f& }; f", "timeout": 60}),
    );
    assert!(bomb.get("exitCode").is_some(), "{bomb}");
    let since = Instant::now();
    let all = bridge.tool("process_kill", json!({"all": true}));
    assert_eq!(all["success"], true, "{all}");
    assert!(all["killed"].as_u64() > Some(10), "{all}");
    eprintln!("process_kill all: {all}");
    answers_within_2s(&host, &id, since).await;
    assert_eq!(
        leftovers(&host, &id).await,
        "",
        "processes left after process_kill all"
    );
    bridge.kill();
}

#[tokio::test]
async fn a_restarted_bridge_resumes_a_run_without_gap_or_duplicate() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let code = "import time\nfor i in range(500):\n    print(f'line {i}', flush=True)\n    time.sleep(0.01)\n";
    let want: String = (0..500).map(|i| format!("line {i}\n")).collect();
    let mut bridge = Bridge::start(&host, &id);
    let started = bridge.tool(
        "code_run",
        json!({"language": "python", "code": code, "background": true}),
    );
    let run_id = started["run_id"].as_str().expect("run_id").to_owned();
    let mut text = String::new();
    let mut seq = 0;
    let mut restarted = false;
    hang_guard(Duration::from_secs(120), "reading the run", async {
        while text.len() < want.len() {
            let page = bridge.tool(
                "process_output",
                json!({"run_id": run_id, "from_seq": seq, "max_bytes": 2000}),
            );
            assert!(page.get("dropped_bytes").is_none(), "{page}");
            text.push_str(page["stdout"].as_str().unwrap_or_default());
            seq = page["next_seq"].as_u64().expect("next_seq");
            if !restarted && text.len() > 1000 {
                assert_eq!(page["state"], "running", "the restart must come mid-run");
                // The bridge dies mid-run; a new one carries on from the seq the last page gave.
                let old = std::mem::replace(&mut bridge, Bridge::start(&host, &id));
                old.kill();
                restarted = true;
            }
            if page["more"] != true {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    assert!(restarted);
    assert_eq!(text, want, "nothing missing, nothing twice");
    bridge.kill();
}

#[tokio::test]
async fn exec_it_gives_a_terminal_and_detach_returns_a_run_id() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut child = Command::new(binary("agent-runtime"))
        .args(["sandbox", "exec", "-it", &id, "--", "bash"])
        .env("AGENT_RUNTIME_ADDR", &host.addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-runtime sandbox exec -it");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"tty; stty size; exit 5\n")
        .expect("typing");
    let out = child.wait_with_output().expect("exec -it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("24 80"), "{text}");

    let detached = cli(
        &host,
        &["sandbox", "exec", "--detach", &id, "--", "echo", "later"],
    );
    let run_id = String::from_utf8_lossy(&detached.stdout).trim().to_owned();
    assert!(run_id.starts_with("run-"), "{run_id:?}");
    let attached = cli(&host, &["run", "-s", &id, "attach", &run_id]);
    assert_eq!(String::from_utf8_lossy(&attached.stdout), "later\n");
}
