//! The limits of DESIGN.md §2, each tried by code that wants to break it.

use std::time::{Duration, Instant};

use agent_runtime_e2e::{docker, Host};

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
    let after = host
        .exec(&id, "shell", "echo alive", 10.0)
        .await
        .expect("daemon survived");
    assert_eq!(after.stdout, "alive\n");
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let other = host.create().await;
    let bomb = host.exec(
        &id,
        "shell",
        "bomb() { bomb | bomb & }; bomb; sleep 30",
        5.0,
    );
    let probe = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The host and another sandbox stay responsive while the bomb runs.
        let t = Instant::now();
        let out = host
            .exec(&other, "shell", "echo ok", 10.0)
            .await
            .expect("other sandbox");
        (out.stdout, t.elapsed())
    };
    let (bombed, (other_out, other_took)) = tokio::join!(bomb, probe);
    let bombed = bombed.expect("exec");
    assert!(bombed.exit.killed, "{:?}", bombed.exit);
    assert_eq!(other_out, "ok\n");
    assert!(
        other_took < Duration::from_secs(2),
        "another sandbox took {other_took:?} during the fork bomb"
    );
    // The bomb's processes are killed and reaped and the sandbox works again (zombies may take a
    // moment for init to reap).
    let mut listing = String::new();
    for _ in 0..30 {
        if let Ok(out) = host
            .exec(
                &id,
                "shell",
                "ps -eo pid,ppid,sid,stat,comm --no-headers",
                10.0,
            )
            .await
        {
            listing = out.stdout;
            if listing.lines().count() < 10 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("processes left 3 s after the bomb was killed:\n{listing}");
}

#[tokio::test]
async fn sandbox_has_no_network_runs_as_1000_on_a_read_only_root() {
    let host = Host::start(&[]);
    let id = host.create().await;
    // Read the interfaces; never send traffic anywhere.
    let out = host
        .exec(&id, "shell", "ls /sys/class/net", 10.0)
        .await
        .expect("ls net");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["lo"]
    );
    let out = host
        .exec(&id, "shell", "id -u; id -g", 10.0)
        .await
        .expect("id");
    assert_eq!(out.stdout, "1000\n1000\n");
    let out = host
        .exec(
            &id,
            "shell",
            "touch /usr/evil 2>&1; touch /evil 2>&1; echo x > /tmp/ok && cat /tmp/ok",
            10.0,
        )
        .await
        .expect("touch");
    assert_eq!(
        out.stdout.matches("Read-only file system").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("x\n"));
    let out = host
        .exec(
            &id,
            "shell",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
            10.0,
        )
        .await
        .expect("caps");
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{}", out.stdout);

    let inspect = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Init}} {{.Config.User}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{index .Config.Labels \"agent-runtime.managed\"}}",
        &id,
    ])
    .expect("docker inspect");
    assert_eq!(
        inspect.trim(),
        "536870912 536870912 1000000000 512 none true true 1000:1000 [ALL] [no-new-privileges] true"
    );
    // The pids limit holds.
    let out = host
        .exec(
            &id,
            "shell",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
            10.0,
        )
        .await
        .expect("pids");
    assert_eq!(out.stdout.trim(), "512");
}
