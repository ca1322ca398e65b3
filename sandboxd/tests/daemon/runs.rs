//! Runs as objects: detach and attach (resume without gap or duplicate), the buffer's limits and
//! gaps, timeouts and background jobs, stdin, terminals, ListRuns, Signal, Kill and KillAll.

use std::time::Duration;

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    AttachRequest, CloseInputRequest, ExecEvent, ExecRequest, KillAllRequest, KillRequest,
    ListRunsRequest, OutputGap, ResizeTerminalRequest, RunInfo, SendInputRequest, SignalRequest,
    TerminalSize,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{request, run, wait_none, Daemon, HUNG};

/// Starts `req` detached; its run id and its program's pid.
async fn detach(
    client: &mut SandboxClient<Channel>,
    mut req: ExecRequest,
) -> anyhow::Result<(String, i32)> {
    req.detach = true;
    let mut stream = client.exec(req).await?.into_inner();
    let first = stream
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no started event"))??;
    let started = first
        .started
        .ok_or_else(|| anyhow::anyhow!("the first event is not `started`: {first:?}"))?;
    assert!(
        stream.next().await.is_none(),
        "a detached Exec sends `started` alone"
    );
    Ok((first.run_id, started.pid))
}

/// What an Attach stream carried.
#[derive(Debug, Default)]
struct Attached {
    gap: Option<OutputGap>,
    seqs: Vec<u64>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<agent_runtime_proto::v1::ExecExit>,
}

impl Attached {
    fn add(&mut self, event: ExecEvent) {
        if let Some(gap) = event.gap {
            // A reader slower than the run's buffer meets gaps mid-stream too; these tests read
            // finished runs when they count gaps.
            assert!(self.gap.is_none(), "two gaps: {gap:?}");
            self.gap = Some(gap);
        }
        match event.event {
            Some(Event::Stdout(b)) => self.stdout.extend(b),
            Some(Event::Stderr(b)) => self.stderr.extend(b),
            Some(Event::Exit(x)) => self.exit = Some(x),
            _ => {}
        }
        if event.seq > 0 {
            self.seqs.push(event.seq);
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Attaches from `from_seq` and reads to the end of the stream.
async fn attach_all(
    client: &mut SandboxClient<Channel>,
    run_id: &str,
    from_seq: u64,
    no_wait: bool,
) -> anyhow::Result<Attached> {
    let mut stream = client
        .attach(AttachRequest {
            run_id: run_id.into(),
            from_seq,
            no_wait,
        })
        .await?
        .into_inner();
    let mut out = Attached::default();
    let read = async {
        while let Some(event) = stream.next().await {
            out.add(event?);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(HUNG, read)
        .await
        .map_err(|_| anyhow::anyhow!("hung: the attach stream did not end"))??;
    Ok(out)
}

async fn list(client: &mut SandboxClient<Channel>, run_id: &str) -> anyhow::Result<RunInfo> {
    let runs = client
        .list_runs(ListRunsRequest {})
        .await?
        .into_inner()
        .runs;
    runs.into_iter()
        .find(|r| r.run_id == run_id)
        .ok_or_else(|| anyhow::anyhow!("{run_id} not listed"))
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    })
}

/// A program printing `line N` every 10 ms, `n` times.
fn numbered(n: usize) -> ExecRequest {
    request(
        "python",
        &format!("import time\nfor i in range({n}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.01)\n"),
    )
}

fn expected_lines(n: usize) -> String {
    (0..n).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_resumes_from_the_last_seq_without_gap_or_duplicate() -> anyhow::Result<()>
{
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let (run_id, _) = detach(&mut client, numbered(300)).await?;

    // A client on its own connection reads a while, then the connection is dropped mid-run.
    let mut text = Vec::new();
    let mut last = 0;
    {
        let mut first = daemon.client().await?;
        let mut stream = first
            .attach(AttachRequest {
                run_id: run_id.clone(),
                from_seq: 0,
                no_wait: false,
            })
            .await?
            .into_inner();
        while let Some(event) = stream.next().await {
            let event = event?;
            assert!(event.gap.is_none(), "{event:?}");
            if let Some(Event::Stdout(b)) = &event.event {
                text.extend_from_slice(b);
            }
            last = event.seq;
            if text.len() > 300 {
                break;
            }
        }
    }
    assert!(last > 0);
    let listed = list(&mut client, &run_id).await?;
    assert_eq!(
        listed.state, "running",
        "the cut must come mid-run: {listed:?}"
    );

    let rest = attach_all(&mut client, &run_id, last + 1, false).await?;
    assert!(rest.gap.is_none(), "{:?}", rest.gap);
    assert_eq!(rest.seqs.first(), Some(&(last + 1)));
    text.extend_from_slice(&rest.stdout);
    assert_eq!(String::from_utf8_lossy(&text), expected_lines(300));
    let exit = rest.exit.ok_or_else(|| anyhow::anyhow!("no exit event"))?;
    assert_eq!((exit.code, exit.killed), (0, false));

    // A run that is over can still be read whole.
    let again = attach_all(&mut client, &run_id, 0, true).await?;
    assert_eq!(again.stdout(), expected_lines(300));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_buffer_is_reported_as_dropped_bytes() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request(
        "python",
        "import sys\nfor i in range(64):\n    sys.stdout.write(str(i % 10) * 16384)\n    sys.stdout.flush()\n",
    );
    req.buffer_bytes = 128 * 1024;
    let (run_id, _) = detach(&mut client, req).await?;
    // Waits for the end, then reads everything still buffered.
    attach_all(&mut client, &run_id, u64::MAX, false).await?;
    let whole = attach_all(&mut client, &run_id, 0, false).await?;
    let gap = whole
        .gap
        .ok_or_else(|| anyhow::anyhow!("no gap reported"))?;
    assert_eq!(gap.from_seq, 1);
    assert_eq!(gap.next_seq, whole.seqs[0]);
    // Everything produced is either kept or counted as dropped.
    assert_eq!(gap.dropped_bytes + whole.stdout.len() as u64, 64 * 16384);
    assert!(whole.stdout.len() <= 128 * 1024, "{}", whole.stdout.len());
    let exit = whole.exit.ok_or_else(|| anyhow::anyhow!("no exit"))?;
    assert_eq!(exit.stdout_bytes, 64 * 16384);
    let info = list(&mut client, &run_id).await?;
    assert_eq!(info.dropped_bytes, gap.dropped_bytes);
    assert_eq!(info.stdout_bytes, 64 * 16384);
    Ok(())
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn many_detached_runs_stay_within_the_sandbox_buffer_total() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let pid = run(&mut client, request("shell", "echo $PPID")).await?;
    let sandboxd: i32 = pid.stdout().trim().parse()?;
    let before = rss_kib(sandboxd);
    // 24 runs of 8 MiB each: 192 MiB produced, six times the 32 MiB total.
    let mut ids = Vec::new();
    for _ in 0..24 {
        let req = request(
            "python",
            "import sys\nfor i in range(128):\n    sys.stdout.write('y' * 65536)\n    sys.stdout.flush()\n",
        );
        ids.push(detach(&mut client, req).await?.0);
    }
    for id in &ids {
        let out = attach_all(&mut client, id, u64::MAX, false).await?;
        assert!(out.seqs.is_empty());
    }
    let listed = client.list_runs(ListRunsRequest {}).await?.into_inner();
    assert_eq!(listed.buffer_limit_bytes, 32 * 1024 * 1024);
    assert!(
        listed.buffered_bytes <= listed.buffer_limit_bytes,
        "{} buffered",
        listed.buffered_bytes
    );
    for info in listed.runs.iter().filter(|r| ids.contains(&r.run_id)) {
        assert_eq!(info.stdout_bytes, 8 * 1024 * 1024, "{info:?}");
        assert_eq!(info.buffered_bytes + info.dropped_bytes, info.stdout_bytes);
        assert!(info.buffered_bytes <= 4 * 1024 * 1024, "{info:?}");
    }
    // The daemon's memory grew by about the buffers' total, not by what the runs produced.
    let grown = rss_kib(sandboxd).saturating_sub(before);
    assert!(grown < 96 * 1024, "sandboxd grew by {grown} KiB");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_takes_background_jobs_unless_the_run_is_detached() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let code = "sleep 1000 > /dev/null 2>&1 &\necho $!";
    let mut detached = request("shell", code);
    detached.timeout_seconds = 3.0;
    let (detached_id, _) = detach(&mut client, detached).await?;

    let mut attached = request("shell", code);
    attached.timeout_seconds = 3.0;
    let out = run(&mut client, attached).await?;
    let exit = out.exit()?;
    assert_eq!((exit.code, exit.killed), (0, false), "{out:?}");
    let sleeper: i32 = out.stdout().trim().parse()?;
    assert!(alive(sleeper), "the background job died with its program");

    let kept = attach_all(&mut client, &detached_id, 0, false).await?;
    let kept_sleeper: i32 = kept.stdout().trim().parse()?;
    // The attached run's timeout takes its background job.
    wait_none("the timeout to kill the background sleep", || {
        Some(sleeper).filter(|&p| alive(p)).into_iter().collect()
    })
    .await;
    // The detached run's job outlived the same timeout (started earlier, so it is past it too).
    assert!(alive(kept_sleeper), "the detached run's job was killed");
    let info = list(&mut client, &detached_id).await?;
    assert!(
        info.processes.iter().any(|p| p.pid == kept_sleeper),
        "{info:?}"
    );
    let killed = client
        .kill(KillRequest {
            run_id: detached_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(killed.processes, 1, "{killed:?} {info:?}");
    wait_none("Kill to end the detached job", || {
        Some(kept_sleeper)
            .filter(|&p| alive(p))
            .into_iter()
            .collect()
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn input_reaches_a_program_reading_stdin_and_close_is_end_of_file() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request(
        "python",
        "a = input('first? ')\nb = input('second? ')\nprint('got', a, b)\nimport sys\nprint('rest', repr(sys.stdin.read()))\n",
    );
    req.open_stdin = true;
    let mut stream = client.exec(req).await?.into_inner();
    let first = stream
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no event"))??;
    assert!(first.started.is_some(), "{first:?}");
    let run_id = first.run_id;
    for line in ["one\n", "two\n"] {
        client
            .send_input(SendInputRequest {
                run_id: run_id.clone(),
                data: line.as_bytes().to_vec(),
            })
            .await?;
    }
    client
        .close_input(CloseInputRequest {
            run_id: run_id.clone(),
        })
        .await?;
    let mut out = Attached::default();
    while let Some(event) = stream.next().await {
        out.add(event?);
    }
    assert_eq!(out.stdout(), "first? second? got one two\nrest ''\n");
    assert_eq!(out.exit.map(|x| x.code), Some(0));
    // The run is over: its input is closed.
    let late = client
        .send_input(SendInputRequest {
            run_id,
            data: b"x".to_vec(),
        })
        .await;
    assert_eq!(late.err().map(|s| s.code()), Some(Code::FailedPrecondition));
    Ok(())
}

/// Reads `stream` until its stdout so far contains `needle`.
async fn until(
    stream: &mut tonic::Streaming<ExecEvent>,
    out: &mut Attached,
    needle: &str,
) -> anyhow::Result<()> {
    let wait = async {
        while !out.stdout().contains(needle) {
            match stream.next().await {
                Some(event) => out.add(event?),
                None => anyhow::bail!("the stream ended before {needle:?}: {:?}", out.stdout()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(HUNG, wait)
        .await
        .map_err(|_| anyhow::anyhow!("hung waiting for {needle:?}: {:?}", out.stdout()))?
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_has_its_size_follows_a_resize_and_ctrl_c_interrupts() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let mut req = request(
        "shell",
        "tty\nstty size\nread answer\necho \"size now $(stty size)\"\nsleep 100\necho not interrupted\n",
    );
    req.pty = Some(TerminalSize {
        rows: 33,
        cols: 101,
    });
    let mut stream = client.exec(req).await?.into_inner();
    let mut out = Attached::default();
    let first = stream
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no event"))??;
    let run_id = first.run_id.clone();
    out.add(first);
    until(&mut stream, &mut out, "33 101").await?;
    assert!(out.stdout().contains("/dev/pts/"), "{:?}", out.stdout());

    client
        .resize_terminal(ResizeTerminalRequest {
            run_id: run_id.clone(),
            size: Some(TerminalSize {
                rows: 50,
                cols: 120,
            }),
        })
        .await?;
    client
        .send_input(SendInputRequest {
            run_id: run_id.clone(),
            data: b"go\r".to_vec(),
        })
        .await?;
    until(&mut stream, &mut out, "size now 50 120").await?;
    // The terminal's line discipline turns Ctrl-C into SIGINT for the foreground sleep.
    client
        .send_input(SendInputRequest {
            run_id: run_id.clone(),
            data: b"\x03".to_vec(),
        })
        .await?;
    let rest = async {
        while let Some(event) = stream.next().await {
            out.add(event?);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(HUNG, rest)
        .await
        .map_err(|_| anyhow::anyhow!("hung: Ctrl-C did not end the sleep"))??;
    let exit = out.exit.clone().ok_or_else(|| anyhow::anyhow!("no exit"))?;
    assert_eq!(
        (exit.code, exit.killed),
        (128 + libc::SIGINT, false),
        "{out:?}"
    );
    assert!(!out.stdout().contains("not interrupted"));
    // Everything came as stdout, with the terminal's line endings.
    assert!(out.stderr.is_empty());
    assert!(out.stdout().contains("33 101\r\n"), "{:?}", out.stdout());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_background_server_is_listed_its_log_read_and_kill_stops_it() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let started = run(
        &mut client,
        request(
            "shell",
            "python3 -u -m http.server 0 --bind 127.0.0.1 &\nsleep 0.5\necho started",
        ),
    )
    .await?;
    let run_id = started.events[0].run_id.clone();
    assert_eq!(started.exit()?.code, 0);
    // The server announces its port on stdout, into the run's buffer after the call returned.
    let mut port = None;
    for _ in 0..600 {
        let out = attach_all(&mut client, &run_id, 0, true).await?;
        port = out
            .stdout()
            .split("port ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse::<u16>().ok());
        if port.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = port.ok_or_else(|| anyhow::anyhow!("the server never announced its port"))?;

    let info = list(&mut client, &run_id).await?;
    assert_eq!(info.state, "exited");
    assert!(info.active, "{info:?}");
    let server = info
        .processes
        .iter()
        .find(|p| p.command.contains("http.server"))
        .ok_or_else(|| anyhow::anyhow!("the server is not listed: {info:?}"))?;
    assert!(alive(server.pid));
    let server_pid = server.pid;

    let fetch = run(
        &mut client,
        request(
            "python",
            &format!("import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:{port}/').status)"),
        ),
    )
    .await?;
    assert_eq!(fetch.stdout(), "200\n", "{fetch:?}");
    let mut logged = false;
    for _ in 0..600 {
        let out = attach_all(&mut client, &run_id, 0, true).await?;
        if String::from_utf8_lossy(&out.stderr).contains("\"GET / HTTP/1.1\" 200") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        logged,
        "the server's request log never reached the run's buffer"
    );

    let killed = client
        .kill(KillRequest {
            run_id: run_id.clone(),
        })
        .await?
        .into_inner();
    assert!(killed.processes >= 1);
    wait_none("Kill to stop the server", || {
        Some(server_pid).filter(|&p| alive(p)).into_iter().collect()
    })
    .await;
    // Its output closed with it: a following attach ends.
    let over = attach_all(&mut client, &run_id, 0, false).await?;
    assert!(over.exit.is_some());
    let info = list(&mut client, &run_id).await?;
    assert!(info.processes.is_empty() && !info.active, "{info:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_reaches_the_run_and_unknown_runs_are_not_found() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let (run_id, _) = detach(
        &mut client,
        request(
            "shell",
            "trap 'echo got INT; exit 7' INT\necho ready\nwhile true; do sleep 0.05; done",
        ),
    )
    .await?;
    let mut stream = client
        .attach(AttachRequest {
            run_id: run_id.clone(),
            from_seq: 0,
            no_wait: false,
        })
        .await?
        .into_inner();
    let mut out = Attached::default();
    until(&mut stream, &mut out, "ready").await?;
    let sent = client
        .signal(SignalRequest {
            run_id: run_id.clone(),
            signal: "SIGINT".into(),
        })
        .await?
        .into_inner();
    assert!(sent.processes >= 1);
    while let Some(event) = stream.next().await {
        out.add(event?);
    }
    assert!(out.stdout().contains("got INT"), "{out:?}");
    assert_eq!(out.exit.map(|x| (x.code, x.killed)), Some((7, false)));

    for status in [
        client
            .attach(AttachRequest {
                run_id: "run-000000000000".into(),
                ..Default::default()
            })
            .await
            .err(),
        client
            .kill(KillRequest {
                run_id: "run-000000000000".into(),
            })
            .await
            .err(),
    ] {
        assert_eq!(status.map(|s| s.code()), Some(Code::NotFound));
    }
    let bad = client
        .signal(SignalRequest {
            run_id,
            signal: "SIGNOPE".into(),
        })
        .await;
    assert_eq!(bad.err().map(|s| s.code()), Some(Code::InvalidArgument));
    Ok(())
}

/// Every process below `root`.
fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(i32, i32)> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(parent) = stack.pop() {
        for &(pid, ppid) in &procs {
            if ppid == parent {
                found.push(pid);
                stack.push(pid);
            }
        }
    }
    found.retain(|&pid| !crate::support::is_spare(pid));
    found
}

/// A fork bomb bounded in width (this test runs on the test machine, without a pids limit):
/// twenty daemons in their own sessions forking short-lived children forever.
const BOMB: &str = r#"
import os, signal, time
for _ in range(20):
    if os.fork() == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(0.05)
                    os._exit(0)
            except OSError:
                pass
            time.sleep(0.01)
print("BOMB", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kill_all_ends_every_user_process_background_ones_included() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let me = run(&mut client, request("shell", "echo $PPID")).await?;
    let sandboxd: i32 = me.stdout().trim().parse()?;
    // A bomb whose program exits at once, leaving its daemons behind; a detached sleeper.
    let bomb = run(&mut client, request("python", BOMB)).await?;
    assert_eq!(bomb.stdout(), "BOMB\n");
    detach(&mut client, request("shell", "sleep 1000")).await?;
    assert!(!descendants(sandboxd).is_empty());

    let all = client.kill_all(KillAllRequest {}).await?.into_inner();
    assert!(all.processes >= 21, "{all:?}");
    assert_eq!(
        all.run_ids.len(),
        1,
        "only the sleeper was still running: {all:?}"
    );
    wait_none("KillAll to leave nothing below sandboxd", || {
        descendants(sandboxd)
    })
    .await;
    let next = run(&mut client, request("shell", "echo alive")).await?;
    assert_eq!(next.stdout(), "alive\n");
    let killed = list(&mut client, &all.run_ids[0]).await?;
    assert_eq!(
        (killed.state.as_str(), killed.reason.as_str()),
        ("killed", "killed")
    );
    Ok(())
}
