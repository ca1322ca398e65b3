//! The Python zygote: a run handed to the spare interpreter behaves as a fresh `python3 -u FILE`
//! — argv, `__main__`, globals, env, cwd, stdin, signals, session, exit codes, tracebacks, output
//! order, timeout and kill of the whole session, terminals — and a spare that crashed is replaced
//! while the run still succeeds. Each check runs the same program from the spare and cold (a
//! `PYTHON…` variable in the run's env forces a cold start) and compares what a user sees.

use std::time::{Duration, Instant};

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{ExecRequest, TerminalSize};
use tonic::transport::Channel;

use crate::support::{request, run, session_members, Daemon, Outcome, HUNG};

/// First line of every program: says on stderr whether the spare ran it.
const ORIGIN: &str = "import sys as _zs; _zs.stderr.write('ZYGOTE=%s\\n' % (b'agent-runtime-zygote' in open('/proc/self/cmdline', 'rb').read())); _zs.stderr.flush(); del _zs\n";
/// A variable that changes nothing but, being `PYTHON…`, makes a run start cold.
const COLD: &str = "PYTHON_AGENT_RUNTIME_TEST_COLD";

/// Which interpreter ran a program, from its first stderr line.
fn origin(out: &Outcome) -> Option<bool> {
    let line = out.stderr().lines().next().map(str::to_owned)?;
    match line.as_str() {
        "ZYGOTE=True" => Some(true),
        "ZYGOTE=False" => Some(false),
        _ => None,
    }
}

/// What a user sees of a run, with the origin line dropped and the run's own file name (which
/// differs between two runs) replaced by `SCRIPT`.
fn seen(out: &Outcome) -> anyhow::Result<(i32, bool, String, String, String)> {
    let exit = out.exit()?;
    let stderr = out.stderr();
    let stderr = stderr
        .strip_prefix("ZYGOTE=True\n")
        .or_else(|| stderr.strip_prefix("ZYGOTE=False\n"))
        .unwrap_or(&stderr);
    Ok((
        exit.code,
        exit.killed,
        exit.reason.clone(),
        normalize(&out.stdout()),
        normalize(stderr),
    ))
}

fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("agent-runtime-run-") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(".py").map_or(tail.len(), |e| e + 3);
        out.push_str("SCRIPT");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Runs `req` cold.
async fn cold(
    client: &mut SandboxClient<Channel>,
    mut req: ExecRequest,
) -> anyhow::Result<Outcome> {
    req.env.insert(COLD.into(), "1".into());
    let out = run(client, req).await?;
    anyhow::ensure!(
        origin(&out) != Some(true),
        "a {COLD} run came from the spare: {out:?}"
    );
    Ok(out)
}

/// Runs `req` until the spare ran it (a spare is starting after the previous run took one).
async fn warm(client: &mut SandboxClient<Channel>, req: ExecRequest) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + HUNG;
    loop {
        let out = run(client, req.clone()).await?;
        if origin(&out) == Some(true) {
            return Ok(out);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "hung: no run came from the spare interpreter (last: {out:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a terminal request (whose first event says it started) and folds its events.
async fn run_terminal(
    client: &mut SandboxClient<Channel>,
    req: ExecRequest,
) -> anyhow::Result<Outcome> {
    use tokio_stream::StreamExt;
    let mut stream = client.exec(req).await?.into_inner();
    let mut out = Outcome::default();
    while let Some(event) = stream.next().await {
        out.fold.add(&event?);
    }
    Ok(out)
}

fn python(code: &str) -> ExecRequest {
    request("python", &format!("{ORIGIN}{code}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_from_the_spare_sees_what_a_fresh_interpreter_sees() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    std::fs::create_dir(daemon.workspace().join("sub"))?;
    let code = format!(
        r#"g = sorted(globals())
import os, signal, sys
print(g)
print(len(sys.argv), sys.argv[0] == __file__, sys.argv[0].endswith(".py"))
print(sys.path[0] == os.path.dirname(os.path.realpath(__file__)))
print(__name__, __package__, __spec__, __cached__, type(__loader__).__name__, __doc__)
print(os.getcwd())
print(os.environ.get("MY_VAR"), os.environ.get("PYTHONUNBUFFERED"))
print(sorted(k for k in os.environ if k != "{COLD}"))
print(repr(sys.stdin.read()))
print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stdout.write_through)
print(os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid(), os.getppid() > 1)
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGPIPE), signal.getsignal(signal.SIGTERM))
print(os.nice(0), open("/proc/self/oom_score_adj").read().strip())
print(sorted(os.listdir("/proc/self/fd")))
print(os.getuid(), os.getgid())
print(hash("zygote") != 0)
"#
    );
    let mut req = python(&code);
    req.env.insert("MY_VAR".into(), "from the request".into());
    req.stdin = b"line one\nline two\n".to_vec();
    req.cwd = "sub".into();
    let from_spare = warm(&mut client, req.clone()).await?;
    let fresh = cold(&mut client, req).await?;
    assert_eq!(seen(&from_spare)?, seen(&fresh)?);
    let stdout = from_spare.stdout();
    assert!(
        stdout.contains("1 True True\nTrue\n__main__ None None None SourceFileLoader None\n"),
        "{stdout}"
    );
    assert!(stdout.contains("/sub\nfrom the request 1\n"), "{stdout}");
    assert!(stdout.contains("'line one\\nline two\\n'"), "{stdout}");
    assert!(
        stdout.contains("False False True\nTrue True True\nTrue 1 0\n10 1000\n"),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tracebacks_and_signals_are_a_fresh_interpreters() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    for code in [
        "print('fine')",
        "import sys\nsys.exit(3)",
        "import sys\nsys.exit('a message')",
        "def f():\n    raise ValueError('boom')\nf()",
        "raise KeyboardInterrupt",
        "import atexit\natexit.register(lambda: print('atexit ran', flush=True))\nraise SystemExit(4)",
        "import os, signal\nprint('before', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)",
        "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\nprint('main done')",
        "import sys\nsys.excepthook = lambda t, v, tb: print('hooked', t.__name__, v, file=sys.stderr)\nraise OSError('x')",
    ] {
        let from_spare = warm(&mut client, python(code)).await?;
        let fresh = cold(&mut client, python(code)).await?;
        assert_eq!(seen(&from_spare)?, seen(&fresh)?, "program {code:?}");
    }
    // The syntax error stops the program before its first line says where it ran: it ran
    // somewhere, and both say the same.
    let bad = request("python", "print('x'\n");
    let either = run(&mut client, bad.clone()).await?;
    let fresh = cold(&mut client, bad).await?;
    assert_eq!(seen(&either)?, seen(&fresh)?);
    assert_eq!(either.exit()?.code, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn output_order_is_kept() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let code = "import sys\nfor i in range(3000):\n    print(i)\n    if i % 500 == 0:\n        sys.stdout.flush()\nsys.stdout.write('x' * 200000)\n";
    let from_spare = warm(&mut client, python(code)).await?;
    let expected: String =
        (0..3000).map(|i| format!("{i}\n")).collect::<String>() + &"x".repeat(200_000);
    assert_eq!(from_spare.stdout(), expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_whole_session_of_a_run_from_the_spare() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let code = "import os, subprocess, time\nprint(os.getpid(), flush=True)\nsubprocess.Popen(['sleep', '100'])\ntime.sleep(100)\n";
    let mut req = python(code);
    req.timeout_seconds = 2.0;
    let out = warm(&mut client, req).await?;
    let exit = out.exit()?;
    assert!(exit.killed && exit.reason == "timeout", "{exit:?}");
    assert_eq!(exit.code, 128 + 9);
    let sid: i32 = out.stdout().trim().parse()?;
    assert_eq!(session_members(sid), Vec::<i32>::new(), "survivors");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_run_from_the_spare_has_its_terminal() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let code = "import os, sys\nprint(sys.stdin.isatty(), sys.stdout.isatty(), os.environ['TERM'], os.ttyname(0).startswith('/dev/pts/'))\n";
    let mut req = python(code);
    req.pty = Some(TerminalSize { rows: 20, cols: 70 });
    // The origin line went to the same terminal: it is the first line of the output there.
    let deadline = Instant::now() + HUNG;
    let out = loop {
        let out = run_terminal(&mut client, req.clone()).await?;
        if out.stdout().starts_with("ZYGOTE=True") {
            break out;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "hung: no terminal run came from the spare"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        out.stdout().contains("True True xterm-256color True"),
        "{:?}",
        out.stdout()
    );
    assert_eq!(out.exit()?.code, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_spare_is_replaced_and_the_run_still_succeeds() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    // A spare is there (the previous one ran this), and the next is starting.
    warm(&mut client, python("print('warm')")).await?;
    let kill_spares = format!(
        "for p in $(pgrep -f agent-runtime-zygote); do \
           [ \"$(ps -o ppid= -p $p | tr -d ' ')\" = {} ] && kill -KILL $p && echo killed; \
         done; true",
        daemon.pid()
    );
    let deadline = Instant::now() + HUNG;
    loop {
        let out = run(&mut client, request("shell", &kill_spares)).await?;
        if out.stdout().contains("killed") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "hung: no spare to kill appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Right after the crash: the run succeeds (cold), and later runs come from a new spare.
    let out = run(&mut client, python("print(6 * 7)")).await?;
    assert_eq!(
        (out.stdout().as_str(), out.exit()?.code),
        ("42\n", 0),
        "{out:?}"
    );
    let out = warm(&mut client, python("print(6 * 7)")).await?;
    assert_eq!(out.stdout(), "42\n");
    Ok(())
}

/// Sends `CODE` to every exit-notice listener (`/proc/net/unix` lists the abstract sockets; in a
/// test several daemons may listen).
const NOTIFY_ALL: &str = r#"
import socket
def notify_all(code):
    names = [l.split()[-1][1:] for l in open('/proc/net/unix') if '@agent-runtime-exit-' in l]
    for name in set(names):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect('\0' + name)
            s.sendall(str(code).encode())
            s.close()
        except OSError:
            pass
    return len(names)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_notice_counts_only_from_the_runs_own_interpreter() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    // Another process of the run (a forked child) says "exit 9": ignored, the run goes on and
    // ends with its own status.
    let forked = format!(
        "{NOTIFY_ALL}\nimport os, sys\npid = os.fork()\nif pid == 0:\n    print('listeners', notify_all(9) > 0, flush=True)\n    os._exit(0)\nos.waitpid(pid, 0)\nprint('after', flush=True)\nsys.exit(3)\n"
    );
    let out = warm(&mut client, python(&forked)).await?;
    assert_eq!(out.stdout(), "listeners True\nafter\n", "{out:?}");
    assert_eq!(out.exit()?.code, 3, "{out:?}");
    // The run's own interpreter says "exit 7" and goes on sleeping: its run is over (as if it
    // had forked and exited), not held to the timeout.
    let own = format!("{NOTIFY_ALL}\nimport time\nnotify_all(7)\ntime.sleep(60)\n");
    let mut req = python(&own);
    // Without the notice the run would be killed at its timeout (a cold try is, and is retried).
    req.timeout_seconds = 3.0;
    let out = warm(&mut client, req).await?;
    let exit = out.exit()?;
    assert_eq!((exit.code, exit.killed), (7, false), "{out:?}");
    Ok(())
}
