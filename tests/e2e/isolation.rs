//! The limits of DESIGN.md §2, each tried by code that wants to break it.

use std::time::Duration;

use agent_runtime_e2e::{docker, hang_guard, start_exec, Host, Order};
use agent_runtime_proto::v1::ExecRequest;

#[tokio::test]
async fn memory_hog_is_killed_and_the_sandbox_survives() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let code = "b = bytearray(1024 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('survived')\n";
    let out = host.exec(&id, "python", code, 60.0).await.expect("exec");
    assert!(
        out.exit.killed,
        "a 1 GiB allocation in a 512 MiB sandbox was not killed: {:?}",
        out.exit
    );
    assert!(!out.stdout.contains("survived"));
    // Either the kernel OOM killer (reason "oom") or Python's MemoryError; both leave the daemon up.
    assert_eq!(
        out.exit.reason, "oom",
        "{:?} stderr={}",
        out.exit, out.stderr
    );
    let after = host.sh(&id, "echo alive").await;
    assert_eq!(after.stdout, "alive\n");
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let other = host.create().await;
    // "armed" is printed after the bomb has started; the run then lasts until its timeout.
    let mut client = host.sandbox().await;
    let req = ExecRequest {
        language: "shell".into(),
        code: "bomb() { bomb | bomb & }; bomb; echo armed; sleep 30".into(),
        timeout_seconds: 5.0,
        ..Default::default()
    };
    let mut bomb = start_exec(&mut client, &id, req).await.expect("exec");
    bomb.until_stdout("armed").await;
    // The host and another sandbox answer while the bomb still runs.
    let order = Order::default();
    let (bombed, other_out) = tokio::join!(
        async {
            let r = bomb.finish().await;
            order.done("bomb");
            r
        },
        async {
            let out = hang_guard(
                Duration::from_secs(60),
                "another sandbox during the fork bomb",
                host.exec(&other, "shell", "echo ok", 10.0),
            )
            .await
            .expect("other sandbox");
            order.done("other");
            out.stdout
        }
    );
    let bombed = bombed.expect("exec");
    assert!(bombed.exit.killed, "{:?}", bombed.exit);
    assert_eq!(other_out, "ok\n");
    assert_eq!(
        order.seen(),
        ["other", "bomb"],
        "another sandbox answered only after the fork bomb's run ended"
    );
    // The bomb's processes are killed and reaped and the sandbox works again (zombies may take a
    // moment for init to reap).
    let cleared = async {
        loop {
            if let Ok(out) = host
                .exec(
                    &id,
                    "shell",
                    "ps -eo pid,ppid,sid,stat,comm --no-headers",
                    10.0,
                )
                .await
            {
                if out.stdout.lines().count() < 10 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    hang_guard(
        Duration::from_secs(120),
        "the bomb's processes to be reaped",
        cleared,
    )
    .await;
}

#[tokio::test]
async fn sandbox_has_no_network_runs_as_1000_on_a_read_only_root() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // Read the interfaces; never send traffic anywhere.
    let out = host.sh(&id, "ls /sys/class/net").await;
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["lo"]
    );
    let out = host.sh(&id, "id -u; id -g").await;
    assert_eq!(out.stdout, "1000\n1000\n");
    let out = host
        .sh(
            &id,
            "touch /usr/evil 2>&1; touch /evil 2>&1; echo x > /tmp/ok && cat /tmp/ok",
        )
        .await;
    assert_eq!(
        out.stdout.matches("Read-only file system").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("x\n"));
    let out = host
        .sh(&id, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
        .await;
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{}", out.stdout);

    let inspect = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Init}} {{.Config.User}} {{.HostConfig.CapDrop}} {{.HostConfig.CapAdd}} {{.HostConfig.SecurityOpt}} {{.HostConfig.LogConfig.Type}} {{index .Config.Labels \"agent-runtime.managed\"}}",
        &id,
    ])
    .expect("docker inspect");
    assert_eq!(
        inspect.trim(),
        "536870912 536870912 1000000000 512 none true true 0:0 [ALL] [SETUID SETGID KILL DAC_OVERRIDE] [no-new-privileges] none true"
    );
    // The container starts the daemon as root with four capabilities; user code runs as 1000
    // with none (user code's view is checked in the test above).
    // The pids limit holds.
    let out = host
        .sh(
            &id,
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        )
        .await;
    assert_eq!(out.stdout.trim(), "512");
}

/// Classic container escapes, each tried from user code; `what=<exit status>` per attempt.
const CLASSIC_ESCAPES: &str = r#"
mkdir -p /tmp/m
mount -t tmpfs none /tmp/m; echo mount=$?
unshare -U true; echo unshare_user=$?
unshare -m true; echo unshare_mount=$?
python3 - <<'PY'
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
for label, flag in [('sys_unshare_user', CLONE_NEWUSER), ('sys_unshare_ns', CLONE_NEWNS)]:
    r = libc.unshare(flag)
    print(f"{label}={'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]}")
r = libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None)
print(f"sys_mount={'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]}")
for label, fam, typ, proto in [('raw_icmp', socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                               ('raw_tcp', socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
                               ('raw_icmp6', socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
                               ('packet', socket.AF_PACKET, socket.SOCK_RAW, 0)]:
    try:
        socket.socket(fam, typ, proto).close()
        print(f"{label}=ok")
    except OSError as e:
        print(f"{label}={errno.errorcode.get(e.errno, e.errno)}")
PY
grep -c ' /tmp/m ' /proc/mounts; echo
for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do test -e $s && echo "present=$s"; done
find / \( -path /proc -o -path /sys \) -prune -o -type s -name '*docker*' -print 2>/dev/null
echo "docker_host=${DOCKER_HOST:-}"
"#;

#[tokio::test]
async fn classic_escapes_fail() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let out = host.sh(&id, CLASSIC_ESCAPES).await;
    let got = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {}\n{}", out.stdout, out.stderr))
            .to_owned()
    };
    for key in ["mount", "unshare_user", "unshare_mount"] {
        assert_ne!(
            got(key),
            "0",
            "{key} worked: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    for key in ["sys_unshare_user", "sys_unshare_ns", "sys_mount"] {
        assert_eq!(got(key), "EPERM", "{key}: {}", out.stdout);
    }
    for key in ["raw_icmp", "raw_tcp", "raw_icmp6", "packet"] {
        let v = got(key);
        // EPERM without CAP_NET_RAW; EAFNOSUPPORT where the family is absent altogether.
        assert!(
            v == "EPERM" || v == "EAFNOSUPPORT",
            "{key} socket: {v}\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("\n0\n"),
        "/tmp/m got mounted: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("present="), "{}", out.stdout);
    assert!(
        !out.stdout.contains(".sock"),
        "a docker socket inside: {}",
        out.stdout
    );
    assert_eq!(got("docker_host"), "");

    // Setuid-root binaries exist in the image (passwd, su, mount…) but cannot elevate
    // (no-new-privileges): passwd waiting for a password still has the user's ids.
    let out = host
        .sh(
            &id,
            "find / -xdev -perm -4000 -user root -type f 2>/dev/null | grep -c .; \
             (sleep 3 | passwd >/dev/null 2>&1) & sleep 1; \
             for p in $(pgrep -x passwd); do grep '^Uid' /proc/$p/status; done; wait",
        )
        .await;
    let mut lines = out.stdout.lines();
    let setuid_binaries: u32 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(setuid_binaries > 0, "{}", out.stdout);
    let uid = lines
        .next()
        .unwrap_or_else(|| panic!("passwd not seen: {out:?}"));
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        vec!["Uid:", "1000", "1000", "1000", "1000"],
        "a setuid-root binary ran with root ids"
    );

    // /tmp is a tmpfs bounded by the memory limit (512 MiB by default).
    let out = host
        .sh(
            &id,
            "grep ' /tmp ' /proc/mounts; df -B1 --output=size /tmp | tail -1",
        )
        .await;
    let mut lines = out.stdout.lines();
    let mount = lines.next().unwrap_or_default();
    assert!(mount.starts_with("tmpfs /tmp tmpfs "), "{mount}");
    assert!(
        mount.contains("nosuid") && mount.contains("nodev"),
        "{mount}"
    );
    let size: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(size > 0 && size <= 512 << 20, "/tmp is {size} bytes");
}
