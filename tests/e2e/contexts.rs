//! Contexts through the host: real Jupyter kernels in the real image — state kept between runs,
//! rich results, errors, timeouts that keep or lose state, the lifecycle calls and the cap.

use std::time::Duration;

use agent_runtime_e2e::{
    hang_guard, instance_containers, run_code, start_run_code, with_id, ExecOutcome, Host,
};
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    Context, CreateContextRequest, CreateSandboxRequest, DeleteContextRequest, HelloRequest,
    InterruptRequest, ListContextsRequest, RestartContextRequest, RichResult,
};
use tonic::transport::Channel;

/// Runs code that must succeed and returns what it streamed.
async fn ok(
    client: &mut SandboxClient<Channel>,
    sandbox: &str,
    context: &str,
    code: &str,
) -> ExecOutcome {
    let ran = run_code(client, sandbox, context, code, 30.0)
        .await
        .unwrap_or_else(|s| panic!("RunCode {code:?} failed: {s:?}"));
    assert!(ran.outcome.success(), "{code:?} failed: {ran:?}");
    ran
}

async fn create(
    client: &mut SandboxClient<Channel>,
    sandbox: &str,
    name: &str,
    cwd: &str,
) -> Result<Context, tonic::Status> {
    client
        .create_context(with_id(
            sandbox,
            CreateContextRequest {
                language: "python".into(),
                name: name.into(),
                cwd: cwd.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list(client: &mut SandboxClient<Channel>, sandbox: &str) -> Vec<Context> {
    client
        .list_contexts(with_id(sandbox, ListContextsRequest {}))
        .await
        .expect("ListContexts")
        .into_inner()
        .contexts
}

/// A guard against a hung call (not a speed check).
const LONG: Duration = Duration::from_secs(90);

/// Waits until the sandbox runs exactly one kernel besides the one with pid `busy` (the spare
/// started ahead); returns its pid.
async fn spare_kernel(host: &Host, sandbox: &str, busy: &str) -> String {
    loop {
        // `[i]`: the pattern does not match this command's own text.
        let out = host
            .sh(sandbox, "pgrep -f '[i]pykernel_launcher' || true")
            .await;
        let others: Vec<&str> = out.stdout.lines().filter(|p| p.trim() != busy).collect();
        if let [spare] = others.as_slice() {
            return spare.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The command lines of the sandbox's ipykernel processes, and its kernel directories.
async fn kernels(host: &Host, sandbox: &str) -> (Vec<String>, Vec<String>) {
    let out = host
        .sh(
            sandbox,
            "ps -eo args; echo ---; ls /tmp/agent-runtime-kernels",
        )
        .await;
    let (ps, dirs) = out.stdout.split_once("---\n").expect("separator");
    let procs = ps
        .lines()
        .filter(|l| l.contains("ipykernel_launcher"))
        .map(str::to_owned)
        .collect();
    (procs, dirs.lines().map(str::to_owned).collect())
}

/// [`kernels`] once the sandbox runs `want` kernels (the next spare starts a few seconds after a
/// context took the last one); what it runs then, at the deadline.
async fn kernels_settled(host: &Host, sandbox: &str, want: usize) -> (Vec<String>, Vec<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (procs, dirs) = kernels(host, sandbox).await;
        if procs.len() == want || std::time::Instant::now() >= deadline {
            return (procs, dirs);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn contexts_keep_state_stream_rich_results_and_survive_timeouts() {
    let host = Host::start(&[]);
    let sb = host.create().await;
    let mut client = host.sandbox().await;

    let hello = client
        .hello(with_id(&sb, HelloRequest::default()))
        .await
        .expect("hello")
        .into_inner();
    assert!(
        hello.capabilities.iter().any(|c| c == "contexts"),
        "{hello:?}"
    );

    // Bad requests.
    let bad = client
        .create_context(with_id(
            &sb,
            CreateContextRequest {
                language: "ruby".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("ruby is not a context language");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let bad = create(&mut client, &sb, "x", "no/such/dir")
        .await
        .expect_err("missing cwd");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("does not exist"), "{bad:?}");

    // The first create starts its own kernel; from then on a spare waits ahead.
    let ctx = create(&mut client, &sb, "analysis", "")
        .await
        .expect("create");
    let id = ctx.context_id.clone();
    assert!(
        id.len() == 16 && id.starts_with("ctx-") && id[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        (
            ctx.name.as_str(),
            ctx.language.as_str(),
            ctx.cwd.as_str(),
            ctx.status.as_str()
        ),
        ("analysis", "python", "/workspace", "active")
    );
    assert!(
        ctx.created_at.contains('T') && ctx.created_at.ends_with('Z'),
        "{ctx:?}"
    );

    // State survives between calls.
    let ran = ok(&mut client, &sb, &id, "x = 100").await;
    assert_eq!((ran.stdout.as_str(), ran.results.len()), ("", 0));
    let ran = ok(&mut client, &sb, &id, "print(x)").await;
    assert_eq!(ran.stdout, "100\n");
    assert!(!ran.exit.killed && !ran.exit.state_lost);
    let run_id = &ran.events[0].run_id;
    assert!(run_id.starts_with("run-"));
    let mut last = 0;
    for e in &ran.events {
        assert_eq!(&e.run_id, run_id);
        assert!(e.seq > last, "seq {} after {last}", e.seq);
        last = e.seq;
    }
    let ran = ok(&mut client, &sb, &id, "x + 1").await;
    assert_eq!(ran.results.len(), 1, "{ran:?}");
    assert!(ran.results[0].is_main_result);
    assert_eq!(ran.results[0].data["text/plain"], "101");

    // Output streams while the cell runs: the cell waits for a file that the test writes only
    // once it has received the cell's first line.
    let mut run = start_run_code(
        &mut client,
        &sb,
        &id,
        "import os, time, sys\nprint('first', flush=True)\n\
         while not os.path.exists('/workspace/go-1'): time.sleep(0.05)\n\
         print('second')\nprint('err', file=sys.stderr)",
        60.0,
    )
    .await
    .expect("RunCode");
    run.until_stdout("first\n").await;
    host.write_file(&sb, "/workspace/go-1", b"").await;
    let ran = run.finish().await.expect("RunCode");
    assert_eq!(ran.exit.code, 0, "{ran:?}");
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("first\nsecond\n", "err\n")
    );

    // A figure arrives as a PNG display (not the cell's value).
    let ran = ok(
        &mut client,
        &sb,
        &id,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()",
    )
    .await;
    let png = ran
        .results
        .iter()
        .find_map(|r| r.data.get("image/png").map(|p| (p, r.is_main_result)))
        .unwrap_or_else(|| panic!("no image/png result: {ran:?}"));
    // Base64 of the 8-byte PNG signature \x89PNG\r\n\x1a\n.
    assert!(
        png.0.starts_with("iVBORw0KGgo"),
        "{}",
        &png.0[..20.min(png.0.len())]
    );
    assert!(!png.1, "a figure is a display, not the main result");

    // A DataFrame as the last expression is the main result, with HTML.
    let ran = ok(
        &mut client,
        &sb,
        &id,
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
    )
    .await;
    let main: Vec<&RichResult> = ran.results.iter().filter(|r| r.is_main_result).collect();
    assert_eq!(main.len(), 1, "{ran:?}");
    assert!(main[0].data["text/html"].contains("<table"), "{main:?}");
    assert!(main[0].data["text/plain"].contains('a'), "{main:?}");

    // An exception: the error event, a plain traceback, exit code 1.
    let ran = run_code(&mut client, &sb, &id, "1/0", 10.0)
        .await
        .expect("run");
    assert_eq!(ran.exit.code, 1, "{ran:?}");
    assert!(!ran.exit.killed);
    assert_eq!(ran.errors().len(), 1, "{ran:?}");
    let err = &ran.errors()[0];
    assert_eq!(err.name, "ZeroDivisionError");
    assert_eq!(err.value, "division by zero");
    assert!(!err.traceback.is_empty());
    assert!(
        err.traceback.iter().all(|l| !l.contains("\x1b[")),
        "{:?}",
        err.traceback
    );
    assert!(
        err.traceback
            .iter()
            .any(|l| l.contains("ZeroDivisionError")),
        "{:?}",
        err.traceback
    );

    // While a cell runs the context is busy (the cell has printed, and waits for the test).
    let mut other = host.sandbox().await;
    let mut run = start_run_code(
        &mut other,
        &sb,
        &id,
        "import os, time\nprint('running', flush=True)\n\
         while not os.path.exists('/workspace/go-2'): time.sleep(0.05)",
        60.0,
    )
    .await
    .expect("RunCode");
    run.until_stdout("running").await;
    let contexts = list(&mut client, &sb).await;
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].status, "busy", "{contexts:?}");
    host.write_file(&sb, "/workspace/go-2", b"").await;
    let waited = run.finish().await.expect("RunCode");
    assert_eq!(waited.exit.code, 0, "{waited:?}");
    assert_eq!(list(&mut client, &sb).await[0].status, "active");

    // A timeout interrupts the cell (KeyboardInterrupt) and keeps the state.
    let ran = run_code(&mut client, &sb, &id, "while True: pass", 2.0)
        .await
        .expect("run");
    assert_eq!(
        (
            ran.exit.code,
            ran.exit.killed,
            ran.exit.reason.as_str(),
            ran.exit.state_lost
        ),
        (1, true, "timeout", false),
        "{ran:?}"
    );
    // The contract under test: the timeout interrupts the cell; the kernel is not restarted
    // (state_lost false above, and `x` below).
    assert!(
        ran.errors().iter().any(|e| e.name == "KeyboardInterrupt"),
        "{ran:?}"
    );
    let ran = ok(&mut client, &sb, &id, "print(x)").await;
    assert_eq!(ran.stdout, "100\n");

    // Interrupt from another call ends a long cell the same way.
    let mut other = host.sandbox().await;
    let mut run = start_run_code(
        &mut other,
        &sb,
        &id,
        "import time\nprint('sleeping', flush=True)\ntime.sleep(30)",
        60.0,
    )
    .await
    .expect("RunCode");
    run.until_stdout("sleeping").await;
    let interrupted = client
        .interrupt(with_id(
            &sb,
            InterruptRequest {
                context_id: id.clone(),
            },
        ))
        .await
        .expect("interrupt")
        .into_inner();
    assert!(interrupted.success);
    let ran = run.finish().await.expect("RunCode");
    // Ended by the interrupt: not by its own end (exit 0) nor by its timeout.
    assert_eq!((ran.exit.code, ran.exit.state_lost), (1, false), "{ran:?}");
    assert_ne!(ran.exit.reason, "timeout", "{ran:?}");
    assert!(
        ran.errors().iter().any(|e| e.name == "KeyboardInterrupt"),
        "{ran:?}"
    );

    // A cell that ignores SIGINT: the kernel is replaced and the caller is told the state is gone.
    let ran = run_code(
        &mut client,
        &sb,
        &id,
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.1)",
        1.0,
    )
    .await
    .expect("run");
    assert_eq!(
        (
            ran.exit.code,
            ran.exit.killed,
            ran.exit.reason.as_str(),
            ran.exit.state_lost
        ),
        (1, true, "timeout", true),
        "{ran:?}"
    );
    assert!(
        ran.stderr
            .contains("did not respond to the interrupt and was restarted"),
        "{ran:?}"
    );
    let ran = ok(&mut client, &sb, &id, "print('x' in dir())").await;
    assert_eq!(ran.stdout, "False\n");
    let contexts = list(&mut client, &sb).await;
    assert_eq!(contexts.len(), 1);
    assert_eq!(
        (contexts[0].context_id.as_str(), contexts[0].status.as_str()),
        (id.as_str(), "active")
    );

    // The second create takes the spare kernel, moved to the requested directory.
    host.sh(&sb, "mkdir -p /workspace/sub").await;
    let first_pid = ok(&mut client, &sb, &id, "import os; print(os.getpid())")
        .await
        .stdout;
    let spare = hang_guard(
        LONG,
        "the spare kernel",
        spare_kernel(&host, &sb, first_pid.trim()),
    )
    .await;
    let ctx2 = create(&mut client, &sb, "second", "sub")
        .await
        .expect("create with a spare");
    assert_eq!(ctx2.cwd, "/workspace/sub");
    let ran = ok(
        &mut client,
        &sb,
        &ctx2.context_id,
        "import os; print(os.getpid())",
    )
    .await;
    assert_eq!(
        ran.stdout.trim(),
        spare,
        "the second context runs in the spare kernel"
    );
    let ran = ok(
        &mut client,
        &sb,
        &ctx2.context_id,
        "import os; print(os.getcwd())",
    )
    .await;
    assert_eq!(ran.stdout, "/workspace/sub\n");
    let contexts = list(&mut client, &sb).await;
    let ids: Vec<&str> = contexts.iter().map(|c| c.context_id.as_str()).collect();
    assert_eq!(ids, [id.as_str(), ctx2.context_id.as_str()], "oldest first");

    // Restart: same id, fresh state.
    ok(&mut client, &sb, &ctx2.context_id, "y = 1").await;
    let restarted = client
        .restart_context(with_id(
            &sb,
            RestartContextRequest {
                context_id: ctx2.context_id.clone(),
            },
        ))
        .await
        .expect("restart")
        .into_inner();
    assert_eq!(restarted.context_id, ctx2.context_id);
    assert_eq!(restarted.cwd, "/workspace/sub");
    let ran = ok(
        &mut client,
        &sb,
        &ctx2.context_id,
        "import os; print('y' in dir(), os.getcwd())",
    )
    .await;
    assert_eq!(ran.stdout, "False /workspace/sub\n");

    // Delete: gone for RunCode, no kernel process or directory left but the spare's.
    for ctx_id in [&id, &ctx2.context_id] {
        let deleted = client
            .delete_context(with_id(
                &sb,
                DeleteContextRequest {
                    context_id: ctx_id.to_string(),
                },
            ))
            .await
            .expect("delete")
            .into_inner();
        assert!(deleted.success);
    }
    let gone = run_code(&mut client, &sb, &id, "print(x)", 10.0)
        .await
        .expect_err("deleted context");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    assert!(
        gone.message()
            .starts_with(&format!("context {id} not found")),
        "{gone:?}"
    );
    let again = client
        .delete_context(with_id(
            &sb,
            DeleteContextRequest {
                context_id: id.clone(),
            },
        ))
        .await
        .expect_err("deleted twice");
    assert_eq!(again.code(), tonic::Code::NotFound);
    assert!(list(&mut client, &sb).await.is_empty());
    let (procs, dirs) = kernels_settled(&host, &sb, 1).await;
    assert_eq!(
        procs.len(),
        1,
        "only the spare kernel may remain: {procs:?}"
    );
    assert_eq!(
        dirs.len(),
        1,
        "only the spare's directory may remain: {dirs:?}"
    );

    // For the record: kernel start times and create latencies as sandboxd logged them.
    for container in instance_containers(&host.instance) {
        // sandboxd logs to stderr, which `docker logs` replays on its stderr.
        if let Ok(out) = std::process::Command::new("docker")
            .args(["logs", &container])
            .output()
        {
            let logs = String::from_utf8_lossy(&out.stderr);
            for line in logs
                .lines()
                .filter(|l| l.contains("kernel ready") || l.contains("context created"))
            {
                eprintln!("sandboxd: {line}");
            }
        }
    }
}

#[tokio::test]
async fn a_sandbox_has_at_most_sixteen_contexts() {
    let host = Host::start(&[]);
    // 16 kernels plus the spare take about 1 GB: more than the default 512 MiB.
    let sb = host
        .sandboxes()
        .await
        .create(CreateSandboxRequest {
            memory: "2g".into(),
            cpu: 2.0,
            ..Default::default()
        })
        .await
        .expect("create sandbox")
        .into_inner()
        .sandbox_id;
    let mut client = host.sandbox().await;
    let mut ids = Vec::new();
    for i in 0..16 {
        let ctx = create(&mut client, &sb, &format!("c{i}"), "")
            .await
            .unwrap_or_else(|s| panic!("create #{}: {s:?}", i + 1));
        ids.push(ctx.context_id);
    }
    let full = create(&mut client, &sb, "one too many", "")
        .await
        .expect_err("the 17th context");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("delete one"), "{full:?}");
    assert_eq!(list(&mut client, &sb).await.len(), 16);

    // Every kernel is its own: state does not leak between contexts.
    ok(&mut client, &sb, &ids[0], "z = 'first'").await;
    let ran = ok(&mut client, &sb, &ids[15], "print('z' in dir())").await;
    assert_eq!(ran.stdout, "False\n");

    // Deleting one frees a slot.
    client
        .delete_context(with_id(
            &sb,
            DeleteContextRequest {
                context_id: ids[3].clone(),
            },
        ))
        .await
        .expect("delete");
    create(&mut client, &sb, "after delete", "")
        .await
        .expect("a freed slot");
    let (procs, _) = kernels_settled(&host, &sb, 17).await;
    assert_eq!(procs.len(), 17, "16 contexts and the spare: {procs:?}");
}

#[tokio::test]
async fn bad_code_fails_the_cell_and_never_costs_the_context_its_state() {
    let host = Host::start(&[]);
    let sb = host.create().await;
    let mut client = host.sandbox().await;
    let ctx = create(&mut client, &sb, "nul", "").await.expect("create");
    let id = ctx.context_id;
    let pid = ok(
        &mut client,
        &sb,
        &id,
        "import os\nx = 41\nprint(os.getpid())",
    )
    .await
    .stdout;

    // A NUL byte is refused before the kernel sees it: `y` is never set.
    let err = run_code(&mut client, &sb, &id, "y = 1\u{0}", 30.0)
        .await
        .expect_err("code with a NUL byte ran");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("NUL byte") && err.message().contains("line 1"),
        "{err:?}"
    );
    let ran = ok(
        &mut client,
        &sb,
        &id,
        "print(x + 1, os.getpid(), 'y' in dir())",
    )
    .await;
    assert_eq!(ran.stdout, format!("42 {} False\n", pid.trim()));
    assert!(!ran.exit.state_lost, "{ran:?}");

    // A kernel that fails before it replies (its handler raises) goes idle without an
    // execute_reply: the cell is over and failed at once, and the kernel is not touched.
    ok(
        &mut client,
        &sb,
        &id,
        "k = get_ipython().kernel\n_orig = k.do_execute\n\
         def _boom(*a, **kw):\n    k.do_execute = _orig\n    raise ValueError('boom before the reply')\n\
         k.do_execute = _boom",
    )
    .await;
    let ran = run_code(&mut client, &sb, &id, "x = 0", 30.0)
        .await
        .expect("RunCode");
    // Over by itself, not at its 30 s timeout.
    assert_ne!(ran.exit.reason, "timeout", "{ran:?}");
    assert_eq!(
        (ran.exit.code, ran.exit.killed, ran.exit.state_lost),
        (1, false, false),
        "{ran:?}"
    );
    assert_eq!(ran.errors().len(), 1, "{ran:?}");
    assert_eq!(ran.errors()[0].name, "KernelError", "{ran:?}");
    assert!(
        ran.errors()[0]
            .traceback
            .iter()
            .any(|l| l.contains("boom before the reply")),
        "the kernel's log says why: {ran:?}"
    );
    let ran = ok(&mut client, &sb, &id, "print(x + 1, os.getpid())").await;
    assert_eq!(
        ran.stdout,
        format!("42 {pid}"),
        "x = 0 never ran; same kernel"
    );
    let listed = list(&mut client, &sb).await;
    assert_eq!(listed[0].status, "active", "{listed:?}");
}

#[tokio::test]
async fn a_runs_timeout_never_touches_a_context_or_what_its_cells_started() {
    let host = Host::start(&[]);
    let sb = host.create().await;
    let mut client = host.sandbox().await;
    let ctx = create(&mut client, &sb, "spared", "")
        .await
        .expect("create");
    let id = ctx.context_id;
    let pid = ok(
        &mut client,
        &sb,
        &id,
        "import os, subprocess\nx = 5\n\
         p = subprocess.Popen(['sleep', '600'], start_new_session=True)\nprint(os.getpid())",
    )
    .await
    .stdout;

    // A run that daemonises (setsid child, double fork) and a setsid fork bomb, both timing out.
    let escapes = "setsid sleep 600 < /dev/null & echo \"SETSID $!\"\n\
        python3 -c 'import os,sys,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\nprint(\"DAEMON\", os.getpid(), flush=True)\nsys.stdout.close(); time.sleep(600)'\n\
        sleep 600";
    let out = host.exec(&sb, "shell", escapes, 2.0).await.expect("exec");
    assert_eq!(out.exit.reason, "timeout", "{out:?}");
    let bomb = "while true; do setsid sh -c ':' & done";
    let out = host.exec(&sb, "shell", bomb, 2.0).await.expect("exec");
    assert_eq!(out.exit.reason, "timeout", "{out:?}");

    // Everything the runs started is gone; the kernel and its cell's child are not.
    let ps = host.sh(&sb, "ps -eo pid=,args=").await.stdout;
    let pids: Vec<&str> = ps
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!ps.contains("sh -c :"), "{ps}");
    let left: Vec<&str> = ps.lines().filter(|l| l.contains("sleep 600")).collect();
    assert_eq!(left.len(), 1, "only the cell's sleep is left: {ps}");
    assert!(pids.contains(&pid.trim()), "the kernel is gone: {ps}");
    let ran = ok(&mut client, &sb, &id, "print(x, os.getpid(), p.poll())").await;
    assert_eq!(ran.stdout, format!("5 {} None\n", pid.trim()));
}
