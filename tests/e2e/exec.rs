//! Exec through the host: streaming, exit codes, timeouts, a daemon that stays in control.

use std::time::Duration;

use agent_runtime_e2e::{exec_with, Host};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::ExecRequest;

#[tokio::test]
async fn output_streams_before_the_run_ends() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')\n";
    let out = host.exec(&id, "python", code, 10.0).await.expect("exec");
    assert_eq!(out.stdout, "first\nsecond\n");
    let (first_at, _) = out
        .events
        .iter()
        .find(|(_, e)| matches!(&e.event, Some(Event::Stdout(b)) if b.starts_with(b"first")))
        .expect("a stdout event with 'first'");
    assert!(out.elapsed >= Duration::from_secs(1), "the run sleeps 1 s");
    assert!(
        *first_at + Duration::from_millis(500) < out.elapsed,
        "'first' arrived at {first_at:?}, the run ended at {:?}: output was not streamed",
        out.elapsed
    );
    // Sequence numbers strictly increase and one run id covers all events.
    let run_id = &out.events[0].1.run_id;
    assert!(!run_id.is_empty());
    let mut last = 0;
    for (_, e) in &out.events {
        assert_eq!(&e.run_id, run_id);
        assert!(e.seq > last, "seq {} after {last}", e.seq);
        last = e.seq;
    }
    assert!(matches!(
        out.events.last().and_then(|(_, e)| e.event.as_ref()),
        Some(Event::Exit(_))
    ));
}

#[tokio::test]
async fn exit_codes_stderr_stdin_env_and_languages() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let out = host
        .exec(&id, "shell", "echo out; echo err >&2; exit 3", 10.0)
        .await
        .expect("exec");
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
    host.exec(&id, "shell", "mkdir -p /workspace/sub", 10.0)
        .await
        .expect("mkdir");
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
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "returned early: {:?}",
        out.elapsed
    );
    assert!(
        out.elapsed < Duration::from_secs(3),
        "timeout fired {:?} after the call, asked 2 s",
        out.elapsed
    );
    let left = host
        .exec(
            &id,
            "shell",
            "ps -eo comm= | grep -c '^sleep$' || true",
            10.0,
        )
        .await
        .expect("ps");
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
    let hog = "for i in 1 2; do (while :; do :; done) & done\n\
               python3 -c \"import time\nb=bytearray(400*1024*1024)\nwhile True:\n  for i in range(0,len(b),4096): b[i]=1\n  time.sleep(0.01)\" &\n\
               echo started";
    let out = host
        .exec(&id, "shell", hog, 10.0)
        .await
        .expect("start hogs");
    assert_eq!(out.stdout, "started\n");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let out = host
            .exec(&id, "shell", "echo hi", 10.0)
            .await
            .expect("echo");
        assert_eq!(out.stdout, "hi\n");
        worst = worst.max(out.elapsed);
    }
    assert!(
        worst < Duration::from_secs(1),
        "echo took {worst:?} while the box was busy"
    );
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
