//! Issue 10's attacks, each tried the way a hostile user would, with the host healthy after.
//! SECURITY.md lists them with the test that checks each.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_e2e::{
    binary, docker, ensure_image, hang_guard, instance_containers, sandbox_dir, unique_instance,
    with_id, Bearer, Host, Order, Paused, Stopped,
};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{
    CreateContextRequest, CreateSandboxRequest, DestroySandboxRequest, ExtendTimeoutRequest,
    GetSandboxRequest, HelloRequest, ListSandboxesRequest, ReadFileRequest, RunCodeRequest,
    WriteFileRequest,
};
use tonic::Code;

const MIB: u64 = 1 << 20;

/// Bytes available to unprivileged users on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: statvfs is plain old data, for which all-zero bytes are a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a struct we own that outlives the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    s.f_bavail as u64 * s.f_frsize as u64
}

/// Removes an instance's containers when the test ends (for tests that stop a host without
/// cleanup to restart it).
struct RemoveInstance(String);

impl Drop for RemoveInstance {
    fn drop(&mut self) {
        for c in instance_containers(&self.0) {
            let _ = docker(&["unpause", &c]);
            let _ = docker(&["rm", "-f", &c]);
        }
    }
}

/// The pid of sandboxd in a container, as root in the container sees it: root's oldest process
/// called sandboxd (one it is starting is called so too until its exec).
fn daemon_pid(container: &str) -> String {
    let out = docker(&[
        "exec", "-u", "0", container, "pgrep", "-o", "-u", "0", "-x", "sandboxd",
    ])
    .expect("pgrep sandboxd");
    let pid = out.split_whitespace().next().unwrap_or_default().to_owned();
    assert!(
        pid.parse::<u32>().is_ok(),
        "no sandboxd in {container}: {out:?}"
    );
    pid
}

/// Finds sandboxd from user code, then reports what each attack on it got as errno names.
const ATTACK_DAEMON: &str = r#"
import ctypes, errno, json, os, subprocess

def name(e):
    return errno.errorcode.get(e, str(e))

pid = None
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            # Root's oldest sandboxd: one it is starting is called so too until its exec.
            if (open(f'/proc/{p}/comm').read().strip() == 'sandboxd'
                    and os.stat(f'/proc/{p}').st_uid == 0
                    and (pid is None or int(p) < pid)):
                pid = int(p)
        except OSError:
            pass
out = {'pid': pid, 'uid': os.getuid(), 'euid': os.geteuid()}
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_DETACH = 16, 0x4206, 17
for label, req in [('ptrace_attach', PTRACE_ATTACH), ('ptrace_seize', PTRACE_SEIZE)]:
    if libc.ptrace(req, pid, None, None) == 0:
        out[label] = 'ok'
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    else:
        out[label] = name(ctypes.get_errno())
for f in ['environ', 'mem', 'fd', 'root', 'maps']:
    path = f'/proc/{pid}/{f}'
    try:
        if os.path.isdir(path) and f in ('fd', 'root'):
            os.listdir(path)
        else:
            with open(path, 'rb') as h:
                h.read(64)
        out[f] = 'ok'
    except OSError as e:
        out[f] = name(e.errno)
for label, path in [('run_dir', '/run/agent-runtime'), ('secret', '/run/agent-runtime/secret')]:
    try:
        if label == 'run_dir':
            os.listdir(path)
        else:
            open(path, 'rb').read()
        out[label] = 'ok'
    except OSError as e:
        out[label] = name(e.errno)
gdb = subprocess.run(['timeout', '20', 'gdb', '-p', str(pid), '-batch', '-ex', 'info registers'],
                     capture_output=True, text=True)
out['gdb'] = gdb.stdout + gdb.stderr
print(json.dumps(out))
"#;

/// Signals sandboxd from user code: STOP first (a hang shows it worked), then TERM and KILL.
const SIGNAL_DAEMON: &str = r#"
import errno, json, os, signal
pid = None
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            # Root's oldest sandboxd: one it is starting is called so too until its exec.
            if (open(f'/proc/{p}/comm').read().strip() == 'sandboxd'
                    and os.stat(f'/proc/{p}').st_uid == 0
                    and (pid is None or int(p) < pid)):
                pid = int(p)
        except OSError:
            pass
out = {}
for label, sig in [('stop', signal.SIGSTOP), ('term', signal.SIGTERM), ('kill', signal.SIGKILL)]:
    try:
        os.kill(pid, sig)
        out[label] = 'ok'
    except OSError as e:
        out[label] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

#[tokio::test]
async fn user_code_cannot_signal_ptrace_or_read_sandboxd() {
    let host = Host::start(&[]);
    let id = host.create().await;

    let out = host.sh(&id, "id -u; id -g").await;
    assert_eq!(out.stdout, "1000\n1000\n");
    let caps = host
        .sh(&id, "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status")
        .await;
    for line in caps.stdout.lines() {
        assert!(
            line.ends_with("0000000000000000"),
            "user code holds capabilities: {}",
            caps.stdout
        );
    }
    assert_eq!(caps.stdout.lines().count(), 4, "{}", caps.stdout);

    // Every process but Docker's init and the daemon runs as the user (spare kernels included).
    let ps = host.sh(&id, "ps -eo uid=,pid=,comm=").await;
    for line in ps.stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[1] == "1" || f[2] == "sandboxd" {
            continue;
        }
        assert_eq!(
            f[0], "1000",
            "a process not run as the user: {line}\n{}",
            ps.stdout
        );
    }
    assert!(
        ps.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some("0") && l.ends_with("sandboxd")),
        "sandboxd should run as uid 0 in the container:\n{}",
        ps.stdout
    );

    // A context's kernel is user code too.
    let mut client = host.sandbox().await;
    let ctx = client
        .create_context(with_id(
            &id,
            CreateContextRequest {
                language: "python".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("CreateContext")
        .into_inner();
    let mut stream = client
        .run_code(with_id(
            &id,
            RunCodeRequest {
                context_id: ctx.context_id.clone(),
                code: "import os\nprint(os.getuid(), os.geteuid(), [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])".into(),
                timeout_seconds: 30.0,
            },
        ))
        .await
        .expect("RunCode")
        .into_inner();
    let mut kernel_out = String::new();
    while let Some(ev) = stream.message().await.expect("RunCode stream") {
        if let Some(Event::Stdout(b)) = ev.event {
            kernel_out.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert_eq!(kernel_out.trim(), "1000 1000 0000000000000000");

    // ptrace, /proc files, the run directory and gdb: all refused.
    let got = host.py_json(&id, ATTACK_DAEMON).await;
    assert!(
        got["pid"].is_u64(),
        "user code could not find sandboxd: {got}"
    );
    for key in ["ptrace_attach", "ptrace_seize"] {
        assert_eq!(got[key], "EPERM", "{key}: {got}");
    }
    for key in ["environ", "mem", "fd", "root", "maps", "run_dir", "secret"] {
        let v = got[key].as_str().unwrap_or_default();
        assert!(
            v == "EACCES" || v == "EPERM",
            "{key} of sandboxd is readable by user code ({v}): {got}"
        );
    }
    let gdb = got["gdb"].as_str().unwrap_or_default();
    assert!(
        gdb.contains("ptrace: Operation not permitted"),
        "gdb -p sandboxd: {gdb}"
    );

    // Signals: a STOP that worked would hang this very call; the helper fails it after 90 s.
    let got = host.py_json(&id, SIGNAL_DAEMON).await;
    for key in ["stop", "term", "kill"] {
        assert_eq!(
            got[key], "EPERM",
            "SIG{key} of sandboxd from user code: {got}"
        );
    }
    // The same from a shell, as in the issue.
    let out = host
        .sh(
            &id,
            // The daemon is root's oldest sandboxd: a process it is starting (the spare
            // interpreter, a run) is also called sandboxd between its fork and its exec, and is
            // the user's once it has dropped to uid 1000.
            "p=$(pgrep -o -u 0 -x sandboxd); kill -STOP $p; echo stop=$?; kill -9 $p; echo kill=$?",
        )
        .await;
    assert!(
        out.stdout.contains("stop=1") && out.stdout.contains("kill=1"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );

    // The daemon keeps serving.
    let out = host.sh(&id, "echo still here").await;
    assert_eq!(out.stdout, "still here\n");
    assert_eq!(host.status(&id).await, Ok("running".to_owned()));
}

#[tokio::test]
async fn user_code_cannot_replace_the_daemon_socket() {
    let host = Host::start(&[]);
    let a = host.create().await;
    let b = host.create().await;
    let b_sock = sandbox_dir(&host.instance, &b).join("run/sandboxd.sock");
    // The issue's reproduction, from user code in A.
    let out = host
        .sh(
            &a,
            &format!(
                "cd /run/agent-runtime; echo cd=$?; ls /run/agent-runtime; echo ls=$?; \
             rm -f /run/agent-runtime/sandboxd.sock; echo rm=$?; \
             ln -sf {} /run/agent-runtime/sandboxd.sock; echo ln=$?",
                b_sock.display()
            ),
        )
        .await;
    for step in ["cd", "ls", "rm", "ln"] {
        assert!(
            !out.stdout.contains(&format!("{step}=0")),
            "{step} in /run/agent-runtime succeeded as user code: {out:?}"
        );
    }
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);

    // On the host the socket is still A's own, in a root-only directory.
    let a_sock = sandbox_dir(&host.instance, &a).join("run/sandboxd.sock");
    let meta = std::fs::symlink_metadata(&a_sock).expect("A's socket");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        a_sock.display()
    );
    host.write_file(&a, "/workspace/mine.txt", b"a's own").await;
    host.write_file(&b, "/workspace/mine.txt", b"b's own").await;
    assert_eq!(
        host.read_file(&a, "/workspace/mine.txt").await.expect("A"),
        b"a's own"
    );
    assert_eq!(
        host.read_file(&b, "/workspace/mine.txt").await.expect("B"),
        b"b's own"
    );
}

#[tokio::test]
async fn a_socket_planted_on_the_host_never_reaches_another_sandbox() {
    let instance = unique_instance();
    let _cleanup = RemoveInstance(instance.clone());
    let mut first = Host::start_instance(&instance, false, &[]);
    // A gets a symlink to B's socket, C a hard link to it (not a symlink: only the daemon's
    // proof of its sandbox id tells it apart).
    let (a, b, c) = (
        first.create().await,
        first.create().await,
        first.create().await,
    );
    let secret = b"only B has this file";
    first.write_file(&b, "/workspace/only-b.txt", secret).await;
    let sock = |id: &str| sandbox_dir(&instance, id).join("run/sandboxd.sock");
    std::fs::remove_file(sock(&a)).expect("remove A's socket");
    std::os::unix::fs::symlink(sock(&b), sock(&a)).expect("plant the symlink");
    std::fs::remove_file(sock(&c)).expect("remove C's socket");
    std::fs::hard_link(sock(&b), sock(&c)).expect("plant the hard link");

    let not_b = |who: &str, r: &Result<Vec<u8>, tonic::Status>| {
        if let Ok(content) = r {
            assert_ne!(
                content.as_slice(),
                secret,
                "a call for {who} read B's file: {who}'s traffic went to B"
            );
        }
    };
    // Without a restart: whatever the host does with its connections, never B's file.
    for id in [&a, &c] {
        for _ in 0..3 {
            not_b(id, &first.read_file(id, "/workspace/only-b.txt").await);
        }
    }
    first.stop();

    // After a restart the host must dial the planted paths again.
    let second = Host::start_instance(&instance, true, &[]);
    for id in [&a, &c] {
        let r = second.read_file(id, "/workspace/only-b.txt").await;
        not_b(id, &r);
        assert!(r.is_err(), "{id}: the planted socket answered: {r:?}");
        let hello = second
            .sandbox()
            .await
            .hello(with_id(id, HelloRequest::default()))
            .await;
        if let Ok(h) = hello {
            panic!(
                "{id} answered Hello through a planted socket: {:?}",
                h.into_inner()
            );
        }
    }
    // B is untouched and works normally (once the new host has probed it).
    second
        .wait_status(&b, "running after the restart (B, untouched)", |s| {
            s.as_deref() == Ok("running")
        })
        .await;
    assert_eq!(
        second
            .read_file(&b, "/workspace/only-b.txt")
            .await
            .expect("B"),
        secret
    );
    let out = second
        .sh(&b, "cat /workspace/only-b.txt; echo; id -u")
        .await;
    assert_eq!(out.stdout, "only B has this file\n1000\n");
}

#[tokio::test]
async fn the_workspace_is_a_sized_nosuid_filesystem_in_a_root_only_directory() {
    let host = Host::start(&["--workspace-size", "64m"]);
    let id = host.create().await;
    let dir = sandbox_dir(&host.instance, &id);
    let workspace = dir.join("workspace");

    // Root-only parents, a root-only run directory and secret, nothing world-writable.
    let sandboxes = dir.parent().expect("sandboxes dir").to_path_buf();
    let instance_dir = sandboxes.parent().expect("instance dir").to_path_buf();
    for (path, mode) in [
        (&instance_dir, 0o700),
        (&sandboxes, 0o700),
        (&dir, 0o700),
        (&dir.join("run"), 0o700),
        (&dir.join("run/secret"), 0o600),
    ] {
        let m = std::fs::symlink_metadata(path).expect("stat");
        assert_eq!(m.uid(), 0, "{} not owned by root", path.display());
        assert_eq!(m.mode() & 0o7777, mode, "mode of {}", path.display());
    }
    let m = std::fs::metadata(&workspace).expect("workspace");
    assert_eq!(
        m.mode() & 0o002,
        0,
        "world-writable {}",
        workspace.display()
    );

    // The workspace is its own ext4 mount, nosuid and nodev.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == workspace.to_str())
        .unwrap_or_else(|| panic!("{} is not a mount point", workspace.display()));
    let opts = line.split_whitespace().nth(5).unwrap_or_default();
    assert!(opts.split(',').any(|o| o == "nosuid"), "{line}");
    assert!(opts.split(',').any(|o| o == "nodev"), "{line}");
    assert!(line.contains(" - ext4 "), "{line}");

    // Filling it stops at its size; the host's disk does not pay.
    let before = free_bytes(&sandboxes);
    let out = host
        .sh(
            &id,
            "dd if=/dev/zero of=/workspace/big bs=1M count=200; echo rc=$?",
        )
        .await;
    let after = free_bytes(&sandboxes);
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("rc=0"), "{}", out.stdout);
    let dropped = before.saturating_sub(after);
    assert!(
        dropped < 70 * MIB,
        "the host's free space dropped by {} MiB for a 64 MiB workspace",
        dropped / MIB
    );
    let out = host
        .sh(
            &id,
            "rm /workspace/big && echo again > /workspace/small && cat /workspace/small",
        )
        .await;
    assert_eq!(out.stdout, "again\n", "{}", out.stderr);

    // A setuid copy of id planted in the workspace does not run as the user on the host.
    let out = host
        .sh(
            &id,
            "cp /bin/id /workspace/x && chmod 6755 /workspace/x && stat -c %a /workspace/x",
        )
        .await;
    assert_eq!(out.stdout.trim(), "6755", "{}", out.stderr);
    let planted = workspace.join("x");
    let m = std::fs::metadata(&planted).expect("planted file on the host");
    assert_eq!(
        m.mode() & 0o6000,
        0o6000,
        "the setuid bits did not reach the host"
    );
    // Another local user cannot even reach it: the parents are root 0700.
    let ran = Command::new("su")
        .args(["nobody", "-s", "/bin/sh", "-c"])
        .arg(&planted)
        .output()
        .expect("su nobody");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        !ran.status.success(),
        "nobody ran {}: {stdout}",
        planted.display()
    );
    assert!(!stdout.contains("uid="), "{stdout}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    // And a process that does reach it gains nothing: the mount is nosuid. (setpriv keeps root's
    // capabilities until its execve, so it passes the 0700 parents and shows the second layer.)
    let ran = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&planted)
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        !stdout.contains("euid="),
        "a setuid file from a workspace ran with another uid on the host: {stdout}"
    );

    // The sandbox still works.
    assert_eq!(host.sh(&id, "echo ok").await.stdout, "ok\n");
}

#[tokio::test]
async fn container_logs_are_off_and_a_log_flood_goes_nowhere() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let driver =
        docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", &id]).expect("inspect");
    assert_eq!(driver.trim(), "none");

    // 50 MiB at init's and the daemon's stdout, where Docker's log would collect them.
    let out = host
        .sh(
            &id,
            "head -c 52428800 /dev/zero > /proc/1/fd/1; echo init=$?; \
         head -c 52428800 /dev/zero > /proc/$(pgrep -o -u 0 -x sandboxd)/fd/1; echo daemon=$?",
        )
        .await;
    assert!(out.stdout.contains("init="), "{out:?}");
    let logs = Command::new("docker")
        .args(["logs", &id])
        .output()
        .expect("docker logs");
    assert!(
        logs.stdout.len() < 1024 && logs.stderr.len() < 1024,
        "docker logs holds {} + {} bytes",
        logs.stdout.len(),
        logs.stderr.len()
    );

    assert_eq!(host.health(None).await.expect("health"), 1);
    assert_eq!(host.sh(&id, "echo ok").await.stdout, "ok\n");
}

/// A token file with two users, alice and bob.
fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        "# name:token, one a line\n\nalice:tok-alice-4f1d2c9e\n   \nbob:tok-bob-77aa01b3\n",
    )
    .expect("write token file");
    path
}

const ALICE: &str = "tok-alice-4f1d2c9e";
const BOB: &str = "tok-bob-77aa01b3";

#[tokio::test]
async fn grpc_tokens_authenticate_every_call_and_own_their_sandboxes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(tmp.path());
    let host = Host::start(&["--token-file", tokens.to_str().expect("utf-8 path")]);
    assert_eq!(host.health(None).await.expect("health needs no token"), 1);

    let a = host
        .sandboxes_as(Some(ALICE))
        .await
        .create(CreateSandboxRequest::default())
        .await
        .expect("alice creates")
        .into_inner()
        .sandbox_id;

    // No token, a wrong one, a name, a whole line: UNAUTHENTICATED everywhere.
    for token in [
        None,
        Some("tok-wrong"),
        Some("alice"),
        Some("alice:tok-alice-4f1d2c9e"),
        Some("tok-alice"),
    ] {
        let mut lifecycle = host.sandboxes_as(token).await;
        let mut codes = vec![
            lifecycle.list(ListSandboxesRequest {}).await.map(|_| ()),
            lifecycle
                .create(CreateSandboxRequest::default())
                .await
                .map(|_| ()),
        ];
        codes.extend(calls_on(&host, token, &a).await);
        for (i, r) in codes.into_iter().enumerate() {
            let err = r.expect_err(&format!("call {i} with token {token:?} was served"));
            assert_eq!(
                err.code(),
                Code::Unauthenticated,
                "call {i}, {token:?}: {err:?}"
            );
        }
    }
    assert_eq!(
        instance_containers(&host.instance).len(),
        1,
        "an unauthenticated create made a container"
    );

    // Bob cannot see or touch alice's sandbox.
    let mut bob = host.sandboxes_as(Some(BOB)).await;
    let listed = bob.list(ListSandboxesRequest {}).await.expect("bob lists");
    assert!(listed.into_inner().sandboxes.is_empty());
    let mut not_found = vec![bob
        .extend_timeout(ExtendTimeoutRequest {
            sandbox_id: a.clone(),
            timeout_seconds: 100,
        })
        .await
        .map(|_| ())];
    not_found.extend(calls_on(&host, Some(BOB), &a).await);
    for (i, r) in not_found.into_iter().enumerate() {
        let err = r.expect_err(&format!("bob's call {i} on alice's sandbox was served"));
        assert_eq!(err.code(), Code::NotFound, "bob's call {i}: {err:?}");
    }
    let b = bob
        .create(CreateSandboxRequest::default())
        .await
        .expect("bob creates")
        .into_inner()
        .sandbox_id;

    // Alice's own calls work and she sees only hers.
    let mut alice = host.sandboxes_as(Some(ALICE)).await;
    let mut alice_sb = host.sandbox_as(Some(ALICE)).await;
    let listed: Vec<String> = alice
        .list(ListSandboxesRequest {})
        .await
        .expect("alice lists")
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|s| s.sandbox_id)
        .collect();
    assert_eq!(listed, vec![a.clone()]);
    alice_sb
        .write_file(with_id(
            &a,
            WriteFileRequest {
                path: "/workspace/note".into(),
                content: b"alice".to_vec(),
                ..Default::default()
            },
        ))
        .await
        .expect("alice writes");
    let read = alice_sb
        .read_file(with_id(
            &a,
            ReadFileRequest {
                path: "/workspace/note".into(),
                max_bytes: 0,
            },
        ))
        .await
        .expect("alice reads")
        .into_inner();
    assert_eq!(read.content, b"alice");
    let err = alice_sb
        .hello(with_id(&b, HelloRequest::default()))
        .await
        .expect_err("alice reached bob's sandbox");
    assert_eq!(err.code(), Code::NotFound);
    alice
        .destroy(DestroySandboxRequest {
            sandbox_id: a.clone(),
        })
        .await
        .expect("alice destroys hers");
    bob.destroy(DestroySandboxRequest { sandbox_id: b })
        .await
        .expect("bob destroys his");
    assert!(instance_containers(&host.instance).is_empty());
    // Tokens are never logged (names may be).
    let log = host.log();
    assert!(
        !log.contains(ALICE) && !log.contains(BOB),
        "a token in the host log"
    );
}

/// A `serve` process started directly, for listen addresses the harness does not use.
struct Serve {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: String,
}

impl Serve {
    fn spawn(args: &[&str]) -> Self {
        ensure_image();
        let mut child = Command::new(binary("agent-runtime"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .env("AGENT_RUNTIME_WARM_CONTEXTS", "0")
            .spawn()
            .expect("spawning agent-runtime serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Waits up to `within` for the process to exit; its status, if it did.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.drain();
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                self.drain();
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits for the "gRPC listening on ADDR" line; returns ADDR.
    fn grpc_addr(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push_str(&line);
                self.log.push('\n');
                if let Some(rest) = line.split("gRPC listening on ").nth(1) {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
        }
        None
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push_str(&line);
            self.log.push('\n');
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if self.wait_exit(Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn grpc_beyond_loopback_requires_a_token_file() {
    // Without tokens the host refuses before it listens.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let instance = unique_instance();
        let mut serve = Serve::spawn(&[
            "--grpc-listen",
            listen,
            "--rest-listen",
            "none",
            "--instance",
            &instance,
        ]);
        let exit = serve.wait_exit(Duration::from_secs(60));
        let status = exit.unwrap_or_else(|| {
            panic!(
                "serve --grpc-listen {listen} without --token-file kept running:\n{}",
                serve.log
            )
        });
        assert!(!status.success(), "{listen}: exited 0\n{}", serve.log);
        assert!(
            serve.log.contains("--token-file"),
            "{listen}:\n{}",
            serve.log
        );
        assert!(
            !serve.log.contains("gRPC listening"),
            "{listen}:\n{}",
            serve.log
        );
    }

    // With tokens it listens, and still wants a token (checked over loopback only).
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(tmp.path());
    let instance = unique_instance();
    let mut serve = Serve::spawn(&[
        "--grpc-listen",
        "0.0.0.0:0",
        "--rest-listen",
        "127.0.0.1:0",
        "--instance",
        &instance,
        "--cleanup-on-exit",
        "--token-file",
        tokens.to_str().expect("utf-8 path"),
    ]);
    let listening = serve
        .grpc_addr(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no gRPC listener with --token-file:\n{}", serve.log));
    let port = listening.rsplit(':').next().expect("port");
    let addr = format!("http://127.0.0.1:{port}");
    assert_eq!(
        agent_runtime_e2e::grpc_health(&addr, None)
            .await
            .expect("health"),
        1
    );
    let channel = tonic::transport::Channel::from_shared(addr)
        .expect("addr")
        .connect()
        .await
        .expect("connect over loopback");
    for token in [None, Some("tok-wrong")] {
        let err = SandboxesClient::with_interceptor(channel.clone(), Bearer(token.map(Into::into)))
            .list(ListSandboxesRequest {})
            .await
            .expect_err("served without a valid token");
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err:?}");
    }
    SandboxesClient::with_interceptor(channel, Bearer(Some(ALICE.into())))
        .list(ListSandboxesRequest {})
        .await
        .expect("alice lists");
}

#[tokio::test]
async fn a_killed_daemon_is_reported_dead_and_its_slot_freed() {
    let host = Host::start(&["--max-sandboxes", "1"]);
    let a = host.create().await;
    let pid = daemon_pid(&a);
    // The container exits with its daemon (Docker's init exits with its child).
    let _ = docker(&["exec", "-u", "0", &a, "kill", "-9", &pid]);
    // The host notices by itself (Docker's `die` event or the reaper): no call has touched A.
    let _ = host
        .wait_status(
            &a,
            "dead after kill -9 of its sandboxd (the host noticed by itself)",
            |s| s.as_deref() == Ok("dead"),
        )
        .await;

    let assert_dead_error = |err: tonic::Status| {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let msg = err.message().to_lowercase();
        assert!(
            msg.contains("dead") && msg.contains("create"),
            "{}",
            err.message()
        );
    };
    let err = host
        .sandbox()
        .await
        .hello(with_id(&a, HelloRequest::default()))
        .await
        .expect_err("a dead sandbox answered");
    assert_dead_error(err);
    let err = host
        .exec(&a, "shell", "echo hi", 10.0)
        .await
        .expect_err("a dead sandbox ran code");
    assert!(err.to_string().contains("FailedPrecondition"), "{err}");

    // Its slot is free (--max-sandboxes 1), and destroying it works.
    let b = host.create().await;
    host.destroy(&a).await;

    // The same when Docker kills the container.
    docker(&["kill", &b]).expect("docker kill");
    let _ = host
        .wait_status(&b, "dead after docker kill", |s| s.as_deref() == Ok("dead"))
        .await;
    let err = host
        .sandbox()
        .await
        .read_file(with_id(
            &b,
            ReadFileRequest {
                path: "/etc/hostname".into(),
                max_bytes: 0,
            },
        ))
        .await
        .expect_err("a dead sandbox answered");
    assert_dead_error(err);
    let c = host.create().await;
    host.destroy(&b).await;
    assert_eq!(host.sh(&c, "echo ok").await.stdout, "ok\n");
    host.destroy(&c).await;
    assert!(instance_containers(&host.instance).is_empty());
}

/// Makes a sandbox's daemon stop answering, as issue 10's finding 2 did.
enum Stall {
    /// SIGSTOP of sandboxd (what user code did before the daemon got its own uid); Docker
    /// sees nothing.
    SigStop,
    /// `docker pause` of the whole container.
    Pause,
}

/// Stalls a sandbox; the guard undoes it.
fn stall(id: &str, how: Stall) -> Box<dyn std::any::Any> {
    match how {
        Stall::SigStop => Box::new(Stopped::new(id)),
        Stall::Pause => Box::new(Paused::new(id)),
    }
}

/// Calls a unary method with an empty request message through curl (HTTP/2, prior knowledge);
/// returns the response headers and trailers as curl prints them (60 s at most).
fn curl_grpc(addr: &str, method: &str, headers: &[String]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--http2-prior-knowledge",
        "--max-time",
        "60",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    // One gRPC frame: not compressed, length 0 (an empty message).
    let out = cmd
        .args(["--data-binary", "@-"])
        .arg(format!("{addr}/{method}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&[0, 0, 0, 0, 0])?;
            }
            child.wait_with_output()
        })
        .expect("curl (with HTTP/2) is needed for this test");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `grpc-status` curl saw (in the headers of a trailers-only reply or in the trailers).
fn grpc_status(reply: &str) -> Option<i32> {
    reply.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("grpc-status") {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The host's DEADLINE_EXCEEDED message for a daemon silent for `secs` seconds (host/src/grpc/proxy.rs).
fn silent_for(secs: u32) -> String {
    format!("did not answer within {secs} s")
}

/// A stalled daemon: a call with no deadline of its own gets DEADLINE_EXCEEDED at the §3.3
/// default of 30 s; meanwhile another sandbox answers, and a call with a 2 s deadline to the
/// stalled one gets DEADLINE_EXCEEDED for its own deadline while the first is still pending.
async fn stalled_daemon_times_out(how: Stall) {
    let host = Host::start(&[]);
    let a = host.create().await;
    let b = host.create().await;
    let _undo = stall(&a, how);

    let order = Order::default();
    let started = std::time::Instant::now();
    // How the stalled call ended and when, for a failure's message.
    let ended = std::sync::Mutex::new(String::new());
    let stuck = async {
        let r = host.read_file(&a, "/etc/hostname").await;
        if let Ok(mut e) = ended.lock() {
            *e = format!(
                "after {:?}: {:?}",
                started.elapsed(),
                r.as_ref()
                    .map(|_| "an answer")
                    .map_err(|e| (e.code(), e.message().to_owned()))
            );
        }
        order.done("stuck");
        r
    };
    let others = async {
        // Pacing only: the stuck call has been sent before B is asked anything.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for round in 0..5 {
            assert_eq!(host.sh(&b, "echo ok").await.stdout, "ok\n");
            let r = host.read_file(&b, "/etc/hostname").await;
            assert!(r.is_ok(), "{r:?}");
            assert!(
                !order.has("stuck"),
                "round {round}: B answered only after the stalled call to A ended ({}; B's round \
                 ended after {:?})",
                ended.lock().map(|e| e.clone()).unwrap_or_default(),
                started.elapsed()
            );
        }
        // A client deadline is honoured by the host. (tonic clients also enforce it locally,
        // so the call goes through curl, which sends the header and waits for the host.)
        let (addr, a) = (host.addr.clone(), a.clone());
        let reply = tokio::task::spawn_blocking(move || {
            let headers = [format!("sandbox-id: {a}"), "grpc-timeout: 2S".to_owned()];
            curl_grpc(&addr, "agent_runtime.v1.Sandbox/Hello", &headers)
        })
        .await
        .expect("curl task");
        assert!(
            !order.has("stuck"),
            "the grpc-timeout 2 s call ended only after the default-deadline call"
        );
        reply
    };
    let (r, reply) = tokio::join!(stuck, others);
    let err = r.expect_err("a stalled daemon answered");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains(&silent_for(30)),
        "the default deadline is 30 s: {err:?}"
    );
    assert_eq!(
        grpc_status(&reply),
        Some(Code::DeadlineExceeded as i32),
        "a call with grpc-timeout 2 s to a stalled daemon:\n{reply}"
    );
}

#[tokio::test]
async fn a_stopped_daemon_times_out_and_blocks_no_one_else() {
    stalled_daemon_times_out(Stall::SigStop).await;
}

#[tokio::test]
async fn a_paused_container_times_out_blocks_no_one_else_and_loses_nothing() {
    // An operator's `docker pause` stalls the daemon; the sandbox is not dead (nothing of it is
    // lost), its calls meet their deadline, and other sandboxes answer meanwhile.
    let host = Host::start(&[]);
    let a = host.create().await;
    let b = host.create().await;
    host.sh(&a, "echo kept > /workspace/state").await;
    let undo = stall(&a, Stall::Pause);
    let order = Order::default();
    let (r, other) = tokio::join!(
        async {
            let r = host.read_file(&a, "/etc/hostname").await;
            order.done("paused");
            r
        },
        async {
            // Pacing only: the call to A has been sent before B is asked.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let out = host.sh(&b, "echo ok").await.stdout;
            (out, order.has("paused"))
        }
    );
    let err = r.expect_err("a paused sandbox answered");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains(&silent_for(30)),
        "the default deadline is 30 s: {err:?}"
    );
    assert_eq!(other.0, "ok\n");
    assert!(
        !other.1,
        "another sandbox answered only after the call to the paused one ended"
    );
    // Its call has met its deadline, and still the sandbox is not declared dead.
    assert_eq!(
        host.status(&a).await,
        Ok("running".to_owned()),
        "a paused sandbox whose call timed out"
    );
    drop(undo);
    assert_eq!(host.sh(&a, "cat /workspace/state").await.stdout, "kept\n");
    host.destroy(&a).await;
}

#[tokio::test]
async fn a_restarted_host_opens_its_ports_despite_stalled_sandboxes() {
    let instance = unique_instance();
    let _cleanup = RemoveInstance(instance.clone());
    let mut first = Host::start_instance(&instance, false, &[]);
    let stopped = first.create().await;
    let paused = first.create().await;
    let b = first.create().await;
    first.write_file(&b, "/workspace/state", b"kept").await;
    let undo_stop = stall(&stopped, Stall::SigStop);
    let undo_pause = stall(&paused, Stall::Pause);
    first.stop();

    let second = Host::start_instance(&instance, true, &[]);
    let health = hang_guard(Duration::from_secs(60), "health", second.health(None)).await;
    // The ports opened before the stalled sandboxes' probes gave up: the stopped one is still
    // being probed when health already answers.
    let stopped_then = second.status(&stopped).await;
    // Dropped before `second`, so the host's cleanup finds them running.
    let _undo = (undo_stop, undo_pause);
    assert_eq!(health.expect("health"), 1);
    assert_eq!(
        stopped_then,
        Ok("creating".to_owned()),
        "health answered only after the stopped sandbox's probe ended"
    );

    // The stalled ones are dealt with, not waited for; the other is adopted and works.
    for id in [&stopped, &paused] {
        second
            .wait_status(id, "dead or gone after the restart (stalled)", |s| {
                s.as_deref() == Ok("dead") || s == &Err(Code::NotFound)
            })
            .await;
    }
    second
        .wait_status(&b, "running after the restart (healthy)", |s| {
            s.as_deref() == Ok("running")
        })
        .await;
    assert_eq!(
        second.read_file(&b, "/workspace/state").await.expect("B"),
        b"kept"
    );
}

#[tokio::test]
async fn a_memory_budget_refuses_creates_beyond_it() {
    let host = Host::start(&["--memory-budget", "1g"]);
    let mut sb = host.sandboxes().await;
    let half = || CreateSandboxRequest {
        memory: "512m".into(),
        ..Default::default()
    };
    let first = sb.create(half()).await.expect("first 512m").into_inner();
    sb.create(half()).await.expect("second 512m");
    let err = sb
        .create(half())
        .await
        .expect_err("a third 512m fits no 1g budget");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("memory budget"), "{}", err.message());
    assert_eq!(instance_containers(&host.instance).len(), 2);
    // Destroying one gives its memory back.
    host.destroy(&first.sandbox_id).await;
    sb.create(half()).await.expect("fits again after a destroy");
}

#[tokio::test]
async fn reading_a_fifo_fails_at_once() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let out = host
        .sh(&id, "mkfifo /workspace/notes.txt && echo made")
        .await;
    assert_eq!(out.stdout, "made\n", "{}", out.stderr);
    // Refused for what it is, not left to block until the call's deadline.
    let err = host
        .read_file(&id, "/workspace/notes.txt")
        .await
        .expect_err("a FIFO read returned content");
    assert_ne!(
        err.code(),
        Code::DeadlineExceeded,
        "a FIFO read blocked: {err:?}"
    );
    assert!(err.message().contains("FIFO"), "{err:?}");
    // The daemon is not left blocked.
    host.write_file(&id, "/workspace/plain.txt", b"plain").await;
    assert_eq!(
        host.read_file(&id, "/workspace/plain.txt")
            .await
            .expect("plain"),
        b"plain"
    );
}

#[tokio::test]
async fn rest_cannot_reach_a_sandbox_a_token_owns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(tmp.path());
    let host = Host::start(&["--token-file", tokens.to_str().expect("utf-8 path")]);
    let a = host
        .sandboxes_as(Some(ALICE))
        .await
        .create(CreateSandboxRequest::default())
        .await
        .expect("alice creates")
        .into_inner()
        .sandbox_id;
    // A REST caller who learnt the id asks for a context (and so code execution) in it. Ids are
    // no secret: any local user reads them in the host's mount table (the workspace mounts).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let resp = http
        .post(format!("{}/api/v1/contexts", host.rest))
        .json(&serde_json::json!({
            "type": "jupyter",
            "language": "python",
            "sandbox_id": a,
        }))
        .send()
        .await
        .expect("POST /api/v1/contexts");
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert!(
        status.is_client_error(),
        "REST made a context in alice's sandbox: {status} {body}"
    );
    // Nor does REST list anything of hers.
    let listed: serde_json::Value = http
        .get(format!("{}/api/v1/contexts", host.rest))
        .send()
        .await
        .expect("GET /api/v1/contexts")
        .json()
        .await
        .unwrap_or_default();
    assert!(
        !listed.to_string().contains(&a),
        "REST lists alice's sandbox: {listed}"
    );
}

#[tokio::test]
async fn the_file_api_reaches_only_what_user_code_can() {
    use agent_runtime_proto::v1::upload_request::Part;
    use agent_runtime_proto::v1::{
        DownloadRequest, ListDirRequest, MakeDirRequest, RemoveRequest, StatRequest, UploadHeader,
        UploadRequest,
    };

    let host = Host::start(&[]);
    let id = host.create().await;
    let mut c = host.sandbox().await;
    // The daemon serves file calls as root with DAC_OVERRIDE, but on the caller's behalf: none
    // of these may reach the daemon's own files (a model calling file_read is user code too).
    let pid = daemon_pid(&id);
    for path in [
        "/run/agent-runtime/secret".to_owned(),
        "/proc/self/environ".to_owned(),
        format!("/proc/{pid}/environ"),
        "/proc/1/environ".to_owned(),
    ] {
        let r = host.read_file(&id, &path).await;
        assert!(
            r.is_err(),
            "ReadFile {path} gave {} bytes",
            r.map(|b| b.len()).unwrap_or(0)
        );
        let r = c
            .download(with_id(
                &id,
                DownloadRequest {
                    path: path.clone(),
                    chunk_size: 0,
                },
            ))
            .await;
        if let Ok(stream) = r {
            let mut stream = stream.into_inner();
            let first = stream.message().await;
            assert!(first.is_err(), "Download {path} gave {first:?}");
        }
    }
    let r = c
        .stat(with_id(
            &id,
            StatRequest {
                path: "/run/agent-runtime/secret".into(),
            },
        ))
        .await;
    assert!(r.is_err(), "Stat of the secret: {r:?}");
    let r = c
        .list_dir(with_id(
            &id,
            ListDirRequest {
                path: "/run/agent-runtime".into(),
                include_hidden: true,
            },
        ))
        .await;
    assert!(r.is_err(), "ListDir of the run directory: {r:?}");
    // The daemon may list its own descriptors (the kernel lets a process see its own fd
    // directory), but none of them opens for the caller: sockets, pipes, nothing readable.
    if let Ok(listed) = c
        .list_dir(with_id(
            &id,
            ListDirRequest {
                path: "/proc/self/fd".into(),
                include_hidden: true,
            },
        ))
        .await
    {
        for entry in listed.into_inner().entries {
            let r = host.read_file(&id, &entry.path).await;
            assert!(
                r.is_err(),
                "ReadFile {} read the daemon's descriptor: {r:?}",
                entry.path
            );
        }
    }
    let r = c
        .remove(with_id(
            &id,
            RemoveRequest {
                path: "/run/agent-runtime/sandboxd.sock".into(),
                recursive: false,
            },
        ))
        .await;
    assert!(r.is_err(), "Remove of the daemon's socket: {r:?}");
    let r = c
        .make_dir(with_id(
            &id,
            MakeDirRequest {
                path: "/run/agent-runtime/x".into(),
            },
        ))
        .await;
    assert!(r.is_err(), "MakeDir in the run directory: {r:?}");
    let r = c
        .write_file(with_id(
            &id,
            WriteFileRequest {
                path: "/run/agent-runtime/sandboxd.sock".into(),
                content: b"planted".to_vec(),
                ..Default::default()
            },
        ))
        .await;
    assert!(r.is_err(), "WriteFile over the daemon's socket: {r:?}");
    let parts = vec![
        UploadRequest {
            part: Some(Part::Header(UploadHeader {
                path: "/run/agent-runtime/planted".into(),
                ..Default::default()
            })),
        },
        UploadRequest {
            part: Some(Part::Data(b"planted".to_vec())),
        },
    ];
    let r = c.upload(with_id(&id, tokio_stream::iter(parts))).await;
    assert!(r.is_err(), "Upload into the run directory: {r:?}");

    // On the host the run directory holds what it held.
    let run = sandbox_dir(&host.instance, &id).join("run");
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["sandboxd.sock", "secret"]);
    let sock = std::fs::symlink_metadata(run.join("sandboxd.sock")).expect("socket");
    assert!(sock.file_type().is_socket());

    // What the API writes belongs to the user, as if user code wrote it.
    host.write_file(&id, "/workspace/by-api.txt", b"x").await;
    let out = host.sh(&id, "stat -c '%u:%g' /workspace/by-api.txt").await;
    assert_eq!(out.stdout.trim(), "1000:1000");
}

/// Get, Destroy, and two forwarded calls (Hello, ReadFile) on sandbox `id`, made with `token`:
/// what an outsider would try on someone else's sandbox.
async fn calls_on(host: &Host, token: Option<&str>, id: &str) -> Vec<Result<(), tonic::Status>> {
    let mut lifecycle = host.sandboxes_as(token).await;
    let mut sandbox = host.sandbox_as(token).await;
    let sandbox_id = id.to_owned();
    vec![
        lifecycle
            .get(GetSandboxRequest {
                sandbox_id: sandbox_id.clone(),
            })
            .await
            .map(|_| ()),
        lifecycle
            .destroy(DestroySandboxRequest { sandbox_id })
            .await
            .map(|_| ()),
        sandbox
            .hello(with_id(id, HelloRequest::default()))
            .await
            .map(|_| ()),
        sandbox
            .read_file(with_id(
                id,
                ReadFileRequest {
                    path: "/etc/hostname".into(),
                    max_bytes: 0,
                },
            ))
            .await
            .map(|_| ()),
    ]
}
