//! The middle tier for egress: an in-process host over the local backend (real sandboxd
//! processes), its policy proxy, and loopback servers standing in for the web through the
//! test-only resolver override. No Docker. Processes here are not in a network namespace, so
//! every request names the proxy explicitly (`curl -x`); the Docker tier checks that sandboxes
//! have no other way out.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use agent_runtime::serve::{EgressOptions, InProcessHost, InProcessOptions};
use agent_runtime_client::{with_sandbox, RunOutcome, SandboxId};
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, EgressPolicy, ExecRequest, GetEgressPolicyRequest, SetEgressPolicyRequest,
};
use tonic::transport::Channel;

/// A hang guard, not a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// A loopback HTTP server answering every request with `body` (or, for `/big`, `big` bytes;
/// for `/redirect`, a 302 to `location`). One thread per connection.
fn web(body: &'static str, big: usize, location: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let mut out = stream;
                let path = first.split_whitespace().nth(1).unwrap_or("/");
                let reply = if path == "/big" {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {big}\r\nconnection: close\r\n\r\n"
                    )
                    .into_bytes();
                    r.extend(std::iter::repeat_n(b'x', big));
                    r
                } else if path == "/redirect" {
                    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                };
                let _ = out.write_all(&reply);
            });
        }
    });
    port
}

struct Rig {
    _host: InProcessHost,
    channel: Channel,
}

impl Rig {
    async fn start(egress: EgressOptions) -> Self {
        let (host, _backend) = InProcessHost::local(InProcessOptions {
            egress,
            ..InProcessOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("in-process host: {e}"));
        let channel = Channel::from_shared(host.grpc_url())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        Self {
            _host: host,
            channel,
        }
    }

    async fn create(&self, allow: &[&str], network: &str) -> SandboxId {
        let info = SandboxesClient::new(self.channel.clone())
            .create(CreateSandboxRequest {
                egress: Some(EgressPolicy {
                    network: network.into(),
                    allow_domains: allow.iter().map(|s| s.to_string()).collect(),
                    deny_domains: vec![],
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("create: {s:?}"))
            .into_inner();
        SandboxId::parse(&info.sandbox_id).expect("id")
    }

    async fn sh(&self, id: &SandboxId, code: &str) -> RunOutcome {
        let req = ExecRequest {
            language: "shell".into(),
            code: code.into(),
            timeout_seconds: 30.0,
            ..Default::default()
        };
        let run = async {
            let stream = SandboxClient::new(self.channel.clone())
                .exec(with_sandbox(req, id))
                .await
                .expect("exec")
                .into_inner();
            RunOutcome::collect(stream, 1 << 20).await.expect("stream")
        };
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("exec hung")
    }

    async fn status(&self, id: &SandboxId, lines: u32) -> agent_runtime_proto::v1::EgressStatus {
        SandboxesClient::new(self.channel.clone())
            .get_egress_policy(GetEgressPolicyRequest {
                sandbox_id: id.to_string(),
                log_lines: lines,
            })
            .await
            .expect("get egress")
            .into_inner()
    }
}

/// curl through the sandbox's proxy (`$HTTPS_PROXY`, or sandboxd's default when unset);
/// `-p` makes even http:// go through CONNECT.
fn curl(args: &str) -> String {
    format!("curl -sS --max-time 20 --noproxy '' -x \"${{HTTPS_PROXY:-$PROXY}}\" {args} 2>&1; echo \" exit=$?\"")
}

fn options(resolve: &[(&str, u16)]) -> EgressOptions {
    EgressOptions {
        test_resolve: resolve
            .iter()
            .map(|(name, port)| format!("{name}=127.0.0.1:{port}"))
            .collect(),
        ..EgressOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allowlist_decides_by_name_and_address_and_audits_each_decision() {
    let allowed = web("hello from allowed", 0, "http://other.test/");
    let rig = Rig::start(options(&[
        ("allowed.test", allowed),
        ("a.wild.test", allowed),
        ("other.test", allowed),
    ]))
    .await;
    let id = rig
        .create(&["allowed.test", "*.wild.test", "localhost"], "")
        .await;

    let env = rig.sh(&id, "env | grep -i _proxy= | sort").await;
    for var in [
        "HTTP_PROXY=",
        "HTTPS_PROXY=",
        "ALL_PROXY=",
        "http_proxy=",
        "NO_PROXY=localhost,127.0.0.1",
    ] {
        assert!(
            env.stdout.contains(var),
            "{var} missing from:\n{}",
            env.stdout
        );
    }

    let ok = rig.sh(&id, &curl("http://allowed.test/")).await;
    assert!(
        ok.stdout.contains("hello from allowed"),
        "plain http: {}",
        ok.stdout
    );
    let tunnel = rig.sh(&id, &curl("-p http://a.wild.test/")).await;
    assert!(
        tunnel.stdout.contains("hello from allowed"),
        "CONNECT: {}",
        tunnel.stdout
    );

    for (target, needle) in [
        (
            "http://other.test/",
            "other.test is not in allow_domains [allowed.test, *.wild.test, localhost]",
        ),
        ("-p http://evil-allowed.test/", "not in allow_domains"),
        ("-p http://wild.test.evil.test/", "not in allow_domains"),
        ("-p http://localhost/", "a loopback address"),
        ("-p http://127.0.0.1/", "not in allow_domains"),
        (
            "http://allowed.test/redirect -L",
            "other.test is not in allow_domains",
        ),
    ] {
        let out = rig.sh(&id, &curl(target)).await;
        assert!(
            out.stdout.contains(needle) || out.stdout.contains("403"),
            "{target}: {}",
            out.stdout
        );
        assert!(
            !out.stdout.contains("hello from allowed") || target.contains("redirect"),
            "{target} got through: {}",
            out.stdout
        );
    }

    let status = rig.status(&id, 100).await;
    let lines: Vec<serde_json::Value> = status
        .log
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let allowed_lines = lines.iter().filter(|l| l["decision"] == "allowed").count();
    let denied_lines = lines.iter().filter(|l| l["decision"] == "denied").count();
    assert!(allowed_lines >= 3 && denied_lines >= 6, "{lines:#?}");
    for l in &lines {
        for field in [
            "time",
            "sandbox",
            "host",
            "port",
            "address",
            "decision",
            "bytes_up",
            "bytes_down",
            "duration_ms",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
        assert!(l.get("rule").is_some() || l.get("reason").is_some(), "{l}");
    }
    let tunnelled = lines
        .iter()
        .find(|l| l["method"] == "CONNECT" && l["decision"] == "allowed")
        .expect("a CONNECT line");
    assert!(
        tunnelled["bytes_down"].as_u64().unwrap_or(0) > 0,
        "{tunnelled}"
    );
    assert_eq!(tunnelled["rule"], "*.wild.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn none_has_no_proxy_variables_and_a_live_change_applies_to_the_next_connection() {
    let allowed = web("hello", 0, "");
    let rig = Rig::start(options(&[("allowed.test", allowed)])).await;
    let id = rig.create(&[], "").await;
    let env = rig.sh(&id, "env | grep -ci proxy; true").await;
    assert_eq!(env.stdout.trim(), "0", "proxy variables under none");

    let set = |policy: EgressPolicy| {
        let mut client = SandboxesClient::new(rig.channel.clone());
        let id = id.to_string();
        async move {
            client
                .set_egress_policy(SetEgressPolicyRequest {
                    sandbox_id: id,
                    egress: Some(policy),
                })
                .await
                .expect("set policy")
                .into_inner()
        }
    };
    set(EgressPolicy {
        allow_domains: vec!["allowed.test".into()],
        ..Default::default()
    })
    .await;
    let now = rig.sh(&id, &curl("http://allowed.test/")).await;
    assert!(
        now.stdout.contains("hello"),
        "after the change: {}",
        now.stdout
    );
    let proxy = rig.sh(&id, "printf %s \"$HTTPS_PROXY\"").await.stdout;
    assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
    assert_eq!(
        rig.status(&id, 0).await.egress.expect("policy").network,
        "allowlist"
    );

    // Back to none: no variables for new processes, and the proxy refuses, saying why.
    let st = set(EgressPolicy::default()).await;
    assert_eq!(st.egress.expect("policy").network, "none");
    let env = rig.sh(&id, "env | grep -ci proxy; true").await;
    assert_eq!(env.stdout.trim(), "0");
    let refused = rig
        .sh(
            &id,
            &format!("PROXY={proxy}; {}", curl("http://allowed.test/")),
        )
        .await;
    assert!(
        refused.stdout.contains("network is \"none\""),
        "{}",
        refused.stdout
    );

    // Bad policies are refused with a reason and change nothing.
    let err = SandboxesClient::new(rig.channel.clone())
        .set_egress_policy(SetEgressPolicyRequest {
            sandbox_id: id.to_string(),
            egress: Some(EgressPolicy {
                network: "allowlist".into(),
                allow_domains: vec!["https://x.test/".into()],
                ..Default::default()
            }),
        })
        .await
        .expect_err("a URL is not a host name");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_stop_one_sandbox_while_another_keeps_flowing() {
    let allowed = web("small", 3 << 20, "");
    let rig = Rig::start(EgressOptions {
        max_connections: 2,
        max_bytes: 1 << 20,
        ..options(&[("allowed.test", allowed)])
    })
    .await;
    let greedy = rig.create(&["allowed.test"], "").await;
    let other = rig.create(&["allowed.test"], "").await;

    let big = rig
        .sh(&greedy, &curl("-o /dev/null http://allowed.test/big"))
        .await;
    assert!(
        !big.stdout.contains("exit=0"),
        "3 MiB passed a 1 MiB cap: {}",
        big.stdout
    );
    let after = rig.sh(&greedy, &curl("http://allowed.test/")).await;
    assert!(
        after.stdout.contains("egress byte limit"),
        "{}",
        after.stdout
    );
    let fine = rig.sh(&other, &curl("http://allowed.test/")).await;
    assert!(
        fine.stdout.contains("small"),
        "the other sandbox: {}",
        fine.stdout
    );

    // Two held tunnels fill the connection cap; the third is refused with the reason.
    let held = rig
        .sh(
            &other,
            r#"python3 - <<'EOF'
import os, socket
proxy = os.environ["HTTPS_PROXY"].split("//")[1]
host, port = proxy.split(":")
held = []
for i in range(2):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n")
    print(s.recv(200).split(b"\r\n")[0].decode())
    held.append(s)
s = socket.create_connection((host, int(port)))
s.sendall(b"CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n")
print(s.recv(400).decode(errors="replace"))
EOF"#,
        )
        .await;
    assert!(held.stdout.contains("200"), "{}", held.stdout);
    assert!(
        held.stdout.contains("429") && held.stdout.contains("connection limit"),
        "{}",
        held.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_host_keeps_each_sandboxs_policy() {
    let allowed = web("hello again", 0, "");
    let backend = std::sync::Arc::new(
        agent_runtime::backend::local::LocalBackend::new().unwrap_or_else(|e| panic!("{e}")),
    );
    let opts = || InProcessOptions {
        egress: options(&[("allowed.test", allowed), ("other.test", allowed)]),
        ..InProcessOptions::default()
    };
    let first = InProcessHost::start(backend.clone(), opts())
        .await
        .expect("first host");
    let channel = Channel::from_shared(first.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let rig = Rig {
        _host: first,
        channel,
    };
    let id = rig.create(&["allowed.test"], "").await;
    let Rig { _host: first, .. } = rig;
    let (key, dir) = (first.host_key.clone(), first.egress_dir.clone());
    first.shutdown().await.expect("shutdown");

    let second = InProcessHost::start(
        backend,
        InProcessOptions {
            host_key: Some(key),
            egress_dir: Some(dir),
            ..opts()
        },
    )
    .await
    .expect("second host");
    let channel = Channel::from_shared(second.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let rig = Rig {
        _host: second,
        channel,
    };
    let adopted = async {
        loop {
            let got = SandboxesClient::new(rig.channel.clone())
                .get_egress_policy(GetEgressPolicyRequest {
                    sandbox_id: id.to_string(),
                    log_lines: 0,
                })
                .await;
            if let Ok(status) = got {
                return status.into_inner();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let status = tokio::time::timeout(PATIENCE, adopted)
        .await
        .expect("the sandbox was not adopted");
    let policy = status.egress.expect("policy");
    assert_eq!(
        (policy.network.as_str(), policy.allow_domains),
        ("allowlist", vec!["allowed.test".to_string()])
    );
    let ok = rig.sh(&id, &curl("http://allowed.test/")).await;
    assert!(ok.stdout.contains("hello again"), "{}", ok.stdout);
    let refused = rig.sh(&id, &curl("http://other.test/")).await;
    assert!(
        refused.stdout.contains("not in allow_domains"),
        "{}",
        refused.stdout
    );
    rig._host.manager.destroy_all().await;
}
