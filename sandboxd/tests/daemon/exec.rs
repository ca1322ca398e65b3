//! Exec: streaming, exit codes, stdin/env/cwd, timeouts, background processes, output caps.

use std::collections::HashMap;

use agent_runtime_proto::v1::exec_event::Event;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::support::{request, run, session_members, wait_none, Daemon, HUNG};

#[tokio::test(flavor = "multi_thread")]
async fn output_streams_while_the_program_runs() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    // The program waits after 'a' for a file the test makes only once 'a' has arrived: it can
    // end only if its output was streamed while it ran.
    let go = daemon.workspace().join("go");
    let code = format!(
        "import os, time\nprint('a', flush=True)\n\
         while not os.path.exists({:?}): time.sleep(0.05)\nprint('b')\n",
        go.display().to_string()
    );
    let mut stream = client.exec(request("python", &code)).await?.into_inner();
    let mut stdout = Vec::new();
    let mut exited = false;
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(Event::Stdout(bytes)) => {
                assert!(!exited, "output after the exit event");
                stdout.extend(bytes);
                if stdout == b"a\n" {
                    std::fs::write(&go, b"")?;
                }
            }
            Some(Event::Exit(_)) => exited = true,
            _ => {}
        }
    }
    assert!(exited, "no exit event");
    assert_eq!(String::from_utf8_lossy(&stdout), "a\nb\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_numbered_in_order_with_one_run_id() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let out = run(
        &mut client,
        request(
            "shell",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done",
        ),
    )
    .await?;
    assert_eq!(out.stdout(), "out1\nout2\nout3\n");
    assert_eq!(out.stderr(), "err1\nerr2\nerr3\n");
    let run_id = &out.events[0].run_id;
    assert!(run_id.starts_with("run-"), "{run_id}");
    for (i, event) in out.events.iter().enumerate() {
        assert_eq!(&event.run_id, run_id);
        assert_eq!(event.seq, i as u64 + 1);
    }
    assert!(matches!(
        out.events.last().and_then(|e| e.event.as_ref()),
        Some(Event::Exit(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_stderr_are_reported() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let out = run(&mut client, request("shell", "echo oops >&2; exit 3")).await?;
    let exit = out.exit()?;
    assert_eq!(
        (exit.code, exit.killed, exit.reason.as_str()),
        (3, false, "")
    );
    assert_eq!(out.stderr(), "oops\n");
    assert!(out.stdout.is_empty());
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (0, 5));

    let out = run(&mut client, request("python", "raise SystemExit(7)")).await?;
    assert_eq!(out.exit()?.code, 7);

    let out = run(&mut client, request("shell", "kill -SEGV $$")).await?;
    assert_eq!(out.exit()?.code, 128 + 11);
    assert!(!out.exit()?.killed);

    let out = run(&mut client, request("node", "console.log(6 * 7)")).await?;
    assert_eq!((out.stdout().as_str(), out.exit()?.code), ("42\n", 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_env_and_cwd_reach_the_program() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;

    let mut req = request(
        "python",
        "import sys\nprint(sys.stdin.read().upper(), end='')",
    );
    req.stdin = b"hello stdin".to_vec();
    assert_eq!(run(&mut client, req).await?.stdout(), "HELLO STDIN");

    // Far more than a pipe buffer each way: stdin is written while output is read.
    let mut req = request("shell", "cat");
    req.stdin = vec![b'z'; 4 * 1024 * 1024];
    let out = run(&mut client, req).await?;
    assert_eq!(out.stdout.len(), 4 * 1024 * 1024);

    let out = run(&mut client, request("shell", "cat; echo done")).await?;
    assert_eq!(out.stdout(), "done\n", "empty stdin is /dev/null");

    let mut req = request(
        "python",
        "import os\nprint(os.environ['GREETING'], os.environ['PYTHONUNBUFFERED'], 'PATH' in os.environ)",
    );
    req.env = HashMap::from([("GREETING".to_string(), "hi there".to_string())]);
    assert_eq!(run(&mut client, req).await?.stdout(), "hi there 1 True\n");

    // The daemon's own settings stay its own, in cold runs and in runs on the spare alike.
    for (language, code) in [
        ("shell", "env | grep -c '^SANDBOXD_' || true"),
        (
            "python",
            "import os\nprint(sum(k.startswith('SANDBOXD_') for k in os.environ))",
        ),
        (
            "python",
            "import os\nprint(sum(k.startswith('SANDBOXD_') for k in os.environ))",
        ),
    ] {
        let out = run(&mut client, request(language, code)).await?;
        assert_eq!(out.stdout(), "0\n", "{language}: {out:?}");
    }

    let out = run(&mut client, request("shell", "pwd")).await?;
    assert_eq!(
        out.stdout().trim(),
        daemon.workspace().display().to_string()
    );

    std::fs::create_dir(daemon.workspace().join("sub"))?;
    let mut req = request("shell", "pwd");
    req.cwd = "sub".into();
    let out = run(&mut client, req).await?;
    assert_eq!(
        out.stdout().trim(),
        daemon.workspace().join("sub").display().to_string()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_invalid_arguments() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;

    let err = client.exec(request("cobol", "x")).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("cobol ran"))?;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("python, shell, node"), "{err:?}");

    let mut req = request("shell", "pwd");
    req.cwd = "/no/such/dir".into();
    let err = client.exec(req).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("ran in a missing cwd"))?;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "working directory /no/such/dir does not exist"
    );

    for timeout in [-1.0, 3601.0] {
        let mut req = request("shell", "true");
        req.timeout_seconds = timeout;
        let err = client.exec(req).await.err();
        assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_whole_session() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request("shell", "echo $$; trap '' TERM; sleep 100 & sleep 100");
    req.timeout_seconds = 1.0;
    let out = run(&mut client, req).await?;
    let exit = out.exit()?;
    // Ended by the timeout's kill, not by the `sleep 100`s.
    assert!(exit.killed, "{exit:?}");
    assert_eq!(exit.reason, "timeout");
    assert_eq!(exit.code, 128 + 9);
    let sid: i32 = out.stdout().trim().parse()?;
    assert_eq!(session_members(sid), Vec::<i32>::new(), "survivors");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn background_processes_do_not_hold_the_call_open() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let marker = daemon.workspace().join("finished");
    let gate = daemon.workspace().join("go");
    // The background job writes far more than a pipe holds: it only finishes if the daemon keeps
    // draining its output after the call returned. It cannot finish before the test, after the
    // call returned, makes the file it waits for: a call that waited for it would never return.
    let code = format!(
        "(for i in $(seq 1 3000); do echo 'background output line, long enough to fill pipes'; done; \
          while [ ! -e {} ]; do sleep 0.05; done; touch {}) &\necho started",
        gate.display(),
        marker.display()
    );
    let call = run(&mut client, request("shell", &code));
    let out = tokio::time::timeout(HUNG, call)
        .await
        .map_err(|_| anyhow::anyhow!("the call hung: it waited for the background job"))??;
    assert!(!marker.exists(), "the background job ran past its gate");
    assert_eq!(out.exit()?.code, 0);
    assert!(!out.exit()?.killed);
    assert!(out.stdout().starts_with("started\n"), "{}", out.stdout());

    std::fs::write(&gate, b"")?;
    let not_finished = || Some(()).filter(|()| !marker.exists()).into_iter().collect();
    wait_none("the background job to finish", not_finished).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_cap_is_dropped_and_counted() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request(
        "python",
        "import sys\nsys.stdout.buffer.write(b'x' * (20 * 1024 * 1024))\nprint('err', file=sys.stderr)",
    );
    req.max_output_bytes = 1024 * 1024;
    let out = run(&mut client, req).await?;
    let exit = out.exit()?;
    assert!(exit.stdout_truncated && !exit.stderr_truncated, "{exit:?}");
    assert_eq!(exit.stdout_bytes, 20 * 1024 * 1024);
    assert_eq!(out.stdout.len(), 1024 * 1024);
    assert_eq!(out.stderr(), "err\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_gets_its_run_killed() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut stream = client
        .exec(request("shell", "echo $$; sleep 100 & sleep 100"))
        .await?
        .into_inner();
    let sid = match stream.next().await {
        Some(Ok(event)) => match event.event {
            Some(Event::Stdout(bytes)) => String::from_utf8(bytes)?.trim().parse::<i32>()?,
            other => anyhow::bail!("expected the pid first, got {other:?}"),
        },
        other => anyhow::bail!("expected the pid first, got {other:?}"),
    };
    assert!(!session_members(sid).is_empty());
    drop(stream);
    // Its `sleep 100`s end only if the hang-up kills them.
    wait_none("the run to die with its client", || session_members(sid)).await;
    Ok(())
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
        !matches!(state.as_deref(), Some("Z" | "X") | None)
    })
}

/// Live processes below `root` (by parent pid), `root` excluded.
fn descendants(root: i32) -> Vec<i32> {
    let mut parents = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z" | &"X")) {
            continue;
        }
        if let Some(ppid) = fields.get(1).and_then(|p| p.parse::<i32>().ok()) {
            parents.insert(pid, ppid);
        }
    }
    parents
        .keys()
        .copied()
        .filter(|&pid| !crate::support::is_spare(pid))
        .filter(|&pid| {
            let mut at = pid;
            for _ in 0..64 {
                match parents.get(&at) {
                    Some(&ppid) if ppid == root => return true,
                    Some(&ppid) if ppid > 1 => at = ppid,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// The pids a run printed as `TAG PID` lines.
fn tagged(out: &str, tag: &str) -> Vec<i32> {
    out.lines()
        .filter_map(|l| l.strip_prefix(tag)?.trim().parse().ok())
        .collect()
}

/// Waits for `pids` to be gone; fails the test as hung, naming `what` and the survivors, when
/// they are still alive after the guard (the processes here sleep 300 s unless killed).
async fn wait_gone(pids: &[i32], what: &str) {
    let left = || pids.iter().copied().filter(|&p| alive(p)).collect();
    wait_none(what, left).await;
}

/// A setsid child and a double-forked daemon (setsid between the forks, the middle process gone
/// at once, so nothing but a subreaper keeps it in the run's family).
const ESCAPES: &str = r#"
setsid sleep 300 < /dev/null &
echo "SETSID $!"
python3 - <<'PY'
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
print("DAEMON", os.getpid(), flush=True)
sys.stdout.close()
time.sleep(300)
PY
echo "DAEMONIZED"
sleep 300
"#;

#[tokio::test(flavor = "multi_thread")]
async fn setsid_children_and_double_forked_daemons_die_at_the_timeout() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request("shell", ESCAPES);
    req.timeout_seconds = 2.0;
    let out = run(&mut client, req).await?;
    let exit = out.exit()?;
    assert_eq!(
        (exit.killed, exit.reason.as_str()),
        (true, "timeout"),
        "{out:?}"
    );
    let stdout = out.stdout();
    let setsid = tagged(&stdout, "SETSID ");
    let daemonized = tagged(&stdout, "DAEMON ");
    assert_eq!((setsid.len(), daemonized.len()), (1, 1), "{stdout}");
    assert!(stdout.contains("DAEMONIZED"), "{stdout}");
    // Killed by the timeout (by themselves they would sleep 300 s).
    wait_gone(&[setsid[0], daemonized[0]], "the timeout to kill them").await;

    // Cancelling (the client hangs up) reaches them the same way.
    let mut stream = client.exec(request("shell", ESCAPES)).await?.into_inner();
    let mut text = String::new();
    while !(text.contains("DAEMONIZED")
        && !tagged(&text, "DAEMON ").is_empty()
        && !tagged(&text, "SETSID ").is_empty())
    {
        match stream.next().await {
            Some(Ok(event)) => {
                if let Some(Event::Stdout(bytes)) = event.event {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            other => anyhow::bail!("the run ended early: {other:?} after {text}"),
        }
    }
    let pids = [tagged(&text, "SETSID ")[0], tagged(&text, "DAEMON ")[0]];
    assert!(pids.iter().all(|&p| alive(p)), "{text}");
    drop(stream);
    wait_gone(&pids, "the cancelled run to take them along").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_spares_other_runs_and_what_finished_runs_left_running() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    // A finished run's setsid'd background process, and a double-forked one.
    let left_behind = run(
        &mut client,
        request(
            "shell",
            "setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo \"KEEP $!\"\n\
             python3 -c 'import os,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\nprint(\"KEEP\", os.getpid(), flush=True)\nimport sys; sys.stdout.close(); os.close(1); os.close(2)\ntime.sleep(300)'",
        ),
    )
    .await?;
    assert_eq!(left_behind.exit()?.code, 0, "{left_behind:?}");
    let keep = tagged(&left_behind.stdout(), "KEEP ");
    assert_eq!(keep.len(), 2, "{left_behind:?}");

    // A run in progress with its own setsid child, while another run times out: it waits for a
    // file the test makes only after that timeout.
    let other_gate = daemon.workspace().join("other-go");
    let mut other = daemon.client().await?;
    let mut stream = other
        .exec(request(
            "shell",
            &format!(
                "setsid sleep 300 < /dev/null & echo \"OTHER $!\"\n\
                 while [ ! -e {} ]; do sleep 0.05; done; echo done",
                other_gate.display()
            ),
        ))
        .await?
        .into_inner();
    let other_pid = match stream.next().await {
        Some(Ok(event)) => match event.event {
            Some(Event::Stdout(bytes)) => tagged(&String::from_utf8_lossy(&bytes), "OTHER ")[0],
            other => anyhow::bail!("expected the pid first, got {other:?}"),
        },
        other => anyhow::bail!("expected the pid first, got {other:?}"),
    };

    let mut req = request("shell", ESCAPES);
    req.timeout_seconds = 1.5;
    let out = run(&mut client, req).await?;
    assert_eq!(out.exit()?.reason, "timeout");
    let doomed = [
        tagged(&out.stdout(), "SETSID ")[0],
        tagged(&out.stdout(), "DAEMON ")[0],
    ];
    wait_gone(&doomed, "the timeout to kill its run's processes").await;

    for pid in keep.iter().chain([&other_pid]) {
        assert!(alive(*pid), "{pid} was killed by another run's timeout");
    }
    // The other run was still in progress through all that, and goes on to its normal end.
    std::fs::write(&other_gate, b"")?;
    let mut rest = String::new();
    let mut exit = None;
    let read_rest = async {
        while let Some(event) = stream.next().await {
            match event?.event {
                Some(Event::Stdout(bytes)) => rest.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Event::Exit(e)) => exit = Some(e),
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(HUNG, read_rest)
        .await
        .map_err(|_| anyhow::anyhow!("the other run hung after its gate opened"))??;
    assert_eq!(rest, "done\n");
    let exit = exit.ok_or_else(|| anyhow::anyhow!("the other run ended without an exit"))?;
    assert_eq!((exit.code, exit.killed), (0, false), "{exit:?}");
    for pid in keep.iter().chain([&other_pid]) {
        // SAFETY: kill only sends a signal to a process this test's runs started.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    Ok(())
}

/// A persistent fork bomb that daemonises: 20 double-forked daemons in their own sessions, each
/// forking short-lived setsid children forever (bounded in width, so a host without a pids limit
/// survives the test).
const PYTHON_BOMB: &str = r#"
import os, signal, time
def daemon():
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            if os.fork() == 0:
                os.setsid()
                time.sleep(0.05)
                os._exit(0)
        except OSError:
            pass
        time.sleep(0.01)
for _ in range(20):
    daemon()
print("BOMB", flush=True)
time.sleep(300)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_with_setsid_times_out_and_the_next_run_works() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let me = run(&mut client, request("shell", "echo $PPID")).await?;
    let sandboxd: i32 = me.stdout().trim().parse()?;

    let bombs = [
        ("shell", "while true; do setsid sh -c ':' & done"),
        ("python", PYTHON_BOMB),
    ];
    for (language, code) in bombs {
        let mut req = request(language, code);
        req.timeout_seconds = 2.0;
        let out = run(&mut client, req).await?;
        assert_eq!(out.exit()?.reason, "timeout", "{language}: {out:?}");

        let next = run(&mut client, request("shell", "echo ok")).await?;
        assert_eq!(
            (next.stdout().as_str(), next.exit()?.code),
            ("ok\n", 0),
            "{language}"
        );
        // The bomb's daemons fork forever unless the timeout killed them.
        let what = format!("{language}: the bomb's processes to die at its timeout");
        wait_none(&what, || descendants(sandboxd)).await;
    }
    Ok(())
}

/// Zombie children of `parent`.
fn zombie_children(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: i32 = fields.get(1)?.parse().ok()?;
            (ppid == parent && fields.first() == Some(&"Z")).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_left_by_a_run_are_reaped_when_they_exit() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let code = "echo $PPID\nexec > /dev/null 2>&1 < /dev/null\n\
        (sleep 0.5 &)\nsetsid sh -c 'sleep 0.5' &\n\
        python3 -c 'import os,time\nif os.fork(): os._exit(0)\nos.setsid()\ntime.sleep(0.5)'";
    let out = run(&mut client, request("shell", code)).await?;
    assert_eq!(out.exit()?.code, 0, "{out:?}");
    let sandboxd: i32 = out.stdout().trim().parse()?;
    let orphans = descendants(sandboxd);
    assert!(
        orphans.len() >= 3,
        "the run left its processes behind: {orphans:?}"
    );
    wait_gone(&orphans, "the orphans to end their 0.5 s sleeps").await;
    // Each was sandboxd's child once its parent exited: sandboxd reaps them (a zombie nobody
    // reaps stays forever).
    wait_none("sandboxd to reap the orphans (zombies pile up)", || {
        zombie_children(sandboxd)
    })
    .await;
    // Still serving runs (their exit statuses are not taken by the reaper).
    for code in [0, 3, 7] {
        let out = run(&mut client, request("shell", &format!("exit {code}"))).await?;
        assert_eq!(out.exit()?.code, code);
    }
    Ok(())
}
