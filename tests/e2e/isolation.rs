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
