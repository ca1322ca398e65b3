//! Exec through the host: streaming, exit codes, timeouts, a daemon that stays in control.

use agent_runtime_e2e::{exec_with, start_exec, Host};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::ExecRequest;

#[tokio::test]
async fn output_streams_before_the_run_ends() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // The run prints, then waits for a file that the test writes only once it has received the
    // print: the run can finish only if its output reached the client while it ran.
    let code = "import os, time\nprint('first', flush=True)\n\
                while not os.path.exists('/workspace/go'):\n    time.sleep(0.05)\n\
                print('second')\n";
    let mut client = host.sandbox().await;
    let req = ExecRequest {
        language: "python".into(),
        code: code.into(),
        timeout_seconds: 60.0,
        ..Default::default()
    };
    let mut run = start_exec(&mut client, &id, req).await.expect("exec");
    run.until_stdout("first\n").await;
    assert!(
        run.so_far().exit.is_none(),
        "the run ended before its first output arrived: not streamed"
    );
    host.write_file(&id, "/workspace/go", b"").await;
    let out = run.finish().await.expect("exec");
    assert_eq!(out.stdout, "first\nsecond\n");
    assert!(out.outcome.success(), "{:?}", out.exit);
    // Sequence numbers strictly increase and one run id covers all events.
    let run_id = &out.events[0].run_id;
    assert!(!run_id.is_empty());
    let mut last = 0;
    for e in &out.events {
        assert_eq!(&e.run_id, run_id);
        assert!(e.seq > last, "seq {} after {last}", e.seq);
        last = e.seq;
    }
    assert!(matches!(
        out.events.last().and_then(|e| e.event.as_ref()),
        Some(Event::Exit(_))
    ));
}

#[tokio::test]
async fn exit_codes_stderr_stdin_env_and_languages() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let out = host.sh(&id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(
        (
            out.stdout.as_str(),
            out.stderr.as_str(),
            out.exit.code,
            out.exit.killed
        ),
        ("out\n", "err\n", 3, false)
    );

    let out = host
        .exec(&id, "python", "import sys; sys.exit(7)", 10.0)
        .await
        .expect("exec");
    assert_eq!(out.exit.code, 7);
    let out = host
        .exec(&id, "python", "raise ValueError('boom')", 10.0)
        .await
        .expect("exec");
    assert_eq!(out.exit.code, 1);
    assert!(out.stderr.contains("ValueError: boom"), "{}", out.stderr);

    let out = host
        .exec(
            &id,
            "node",
            "console.log(process.version.split('.')[0])",
            10.0,
        )
        .await
        .expect("exec");
    assert_eq!(out.exit.code, 0, "{}", out.stderr);
    let major: u32 = out
        .stdout
        .trim()
        .trim_start_matches('v')
        .parse()
        .expect("node version");
    assert!(major >= 20, "node {major} is too old for playwright-core");

    let mut client = host.sandbox().await;
    let req = ExecRequest {
        language: "shell".into(),
        code: "cat; echo \"$GREETING from $(pwd)\"".into(),
        stdin: b"piped in\n".to_vec(),
        env: [("GREETING".to_owned(), "hello".to_owned())].into(),
        cwd: "sub".into(),
        ..Default::default()
    };
    let err = exec_with(&mut client, &id, req.clone())
        .await
        .expect_err("cwd does not exist yet");
    assert!(err.to_string().contains("InvalidArgument"), "{err}");
    host.sh(&id, "mkdir -p /workspace/sub").await;
    let out = exec_with(&mut client, &id, req).await.expect("exec");
    assert_eq!(out.stdout, "piped in\nhello from /workspace/sub\n");

    let bad = ExecRequest {
        language: "cobol".into(),
        code: "x".into(),
        ..Default::default()
    };
    let err = exec_with(&mut client, &id, bad)
        .await
        .expect_err("unknown language");
    assert!(err.to_string().contains("InvalidArgument"), "{err}");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // A child that ignores SIGTERM, a background sleeper, and a foreground sleep.
    let code = "trap '' TERM\nsleep 100 &\n(trap '' TERM; sleep 200) &\necho started\nsleep 300\n";
    let out = host.exec(&id, "shell", code, 2.0).await.expect("exec");
    assert_eq!(out.stdout, "started\n");
    assert!(out.exit.killed, "{:?}", out.exit);
    assert_eq!(out.exit.reason, "timeout");
    // The foreground `sleep 300` never finished: the run's end was the timeout's kill.
    assert_eq!(out.exit.code, 128 + 9, "{:?}", out.exit);
    let left = host
        .sh(&id, "ps -eo comm= | grep -c '^sleep$' || true")
        .await;
    assert_eq!(
        left.stdout.trim(),
        "0",
        "sleep processes survived the timeout"
    );
}

#[tokio::test]
async fn daemon_answers_while_user_code_hogs_cpu_and_memory() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // Two CPU burners and a process that keeps touching ~400 MiB, all in the background.
    let hog = "for i in 1 2; do python3 -c 'while True: pass' cpu-hog & done\n\
               python3 -c \"import time\nb=bytearray(400*1024*1024)\nwhile True:\n  for i in range(0,len(b),4096): b[i]=1\n  time.sleep(0.01)\" mem-hog &\n\
               echo started";
    let out = host.sh(&id, hog).await;
    assert_eq!(out.stdout, "started\n");
    // Each answer comes while the hogs still run (the same call sees them), and none hangs.
    for round in 0..5 {
        // `[g]`: the pattern does not match this command's own text.
        let out = host
            .sh(&id, "echo hi; pgrep -fc 'cpu-ho[g]'; pgrep -fc 'mem-ho[g]'")
            .await;
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines,
            ["hi", "2", "1"],
            "round {round}: the answer, with the hogs still running"
        );
    }
}

#[tokio::test]
async fn output_cap_truncates_without_hurting_the_daemon() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut client = host.sandbox().await;
    let req = ExecRequest {
        language: "python".into(),
        code: "import sys\nsys.stdout.write('x' * (20 * 1024 * 1024))\n".into(),
        max_output_bytes: 1 << 20,
        ..Default::default()
    };
    let out = exec_with(&mut client, &id, req).await.expect("exec");
    assert_eq!(out.exit.code, 0);
    assert!(out.exit.stdout_truncated);
    assert_eq!(out.exit.stdout_bytes, 20 << 20);
    assert_eq!(out.stdout.len(), 1 << 20);
}
