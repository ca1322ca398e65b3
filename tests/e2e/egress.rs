//! Egress (issue 15, DESIGN.md §2.2): a sandbox reaches the web only through the host's policy
//! proxy. The "web" is a pair of loopback servers started here (`egress/server.py`, HTTP and
//! HTTPS with a test CA), reached under names such as `allowed.test` through the host's
//! test-only resolver override; nothing leaves the machine. Sandboxes have no interface but `lo`,
//! so every byte below went through sandboxd's proxy at 127.0.0.1:3128 and the host's decision.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_e2e::{binary, hang_guard, start_exec, with_id, Host};
use agent_runtime_proto::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;

/// Names the fixture servers answer for; the host's resolver override sends each (ports 80 and
/// 443) to them, so a refusal below is the policy's, never a failed lookup.
const SITE_NAMES: &[&str] = &[
    "allowed.test",
    "a.wild.test",
    "x.y.wild.test",
    "bad.wild.test",
    "wild.test",
    "pypi.test",
    "other.test",
    "evil-allowed.test",
    "wild.test.evil.test",
];

/// The proxy every process in a sandbox is pointed at.
const PROXY: &str = "http://127.0.0.1:3128";

/// The variables a sandbox under `none` must not have, and every other sandbox has.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The loopback web servers of one test (killed on drop).
struct Sites {
    child: Child,
    http: u16,
    https: u16,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sites {
    /// Builds the fixtures (CA, certificate, package index, git repository) and starts serving.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/egress/server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the egress fixture server (python3, openssl and git are needed)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "the egress fixture server {} did not start ({e}); its stderr is above",
                script.display()
            )
        });
        let port = |k: &str| ready[k].as_u64().expect("port") as u16;
        Self {
            http: port("http"),
            https: port("https"),
            ca: PathBuf::from(ready["ca"].as_str().expect("ca")),
            child,
            _dir: dir,
        }
    }

    /// `serve` flags: the test CA every sandbox trusts, and each name sent to these servers.
    fn serve_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--sandbox-ca-cert".to_owned(),
            self.ca.display().to_string(),
        ];
        for name in SITE_NAMES {
            for (port, to) in [(80, self.http), (443, self.https)] {
                flags.push("--egress-test-resolve".into());
                flags.push(format!("{name}:{port}=127.0.0.1:{to}"));
            }
        }
        flags
    }

    /// A host whose proxy reaches these servers, with `extra` serve flags.
    fn host(&self, extra: &[&str]) -> Host {
        let mut flags = self.serve_flags();
        flags.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        Host::start(&refs)
    }

    /// Every request the servers have answered, as `scheme://host/path`, asked directly.
    fn seen(&self) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).expect("fixture server");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(b"GET /_seen HTTP/1.0\r\nHost: test\r\n\r\n")
            .expect("ask the fixture server");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("fixture server reply");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/_seen ({e}): {reply}"))
    }

    /// The distinct host names the servers were asked for.
    fn seen_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .seen()
            .iter()
            .filter_map(|u| u.split("://").nth(1))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_owned)
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn policy(network: &str, allow: &[&str], deny: &[&str]) -> pb::EgressPolicy {
    pb::EgressPolicy {
        network: network.into(),
        allow_domains: allow.iter().map(|s| s.to_string()).collect(),
        deny_domains: deny.iter().map(|s| s.to_string()).collect(),
    }
}

/// Creates a sandbox with `egress`; returns what the host says of it.
async fn create_with(host: &Host, egress: pb::EgressPolicy) -> pb::SandboxInfo {
    let req = pb::CreateSandboxRequest {
        egress: Some(egress.clone()),
        ..Default::default()
    };
    host.sandboxes()
        .await
        .create(req)
        .await
        .unwrap_or_else(|s| {
            panic!(
                "create with egress {egress:?}: {s:?}\nhost log:\n{}",
                host.log()
            )
        })
        .into_inner()
}

async fn set_policy(host: &Host, id: &str, egress: pb::EgressPolicy) -> pb::EgressStatus {
    let req = pb::SetEgressPolicyRequest {
        sandbox_id: id.into(),
        egress: Some(egress.clone()),
    };
    host.sandboxes()
        .await
        .set_egress_policy(req)
        .await
        .unwrap_or_else(|s| panic!("SetEgressPolicy {id} {egress:?}: {s:?}"))
        .into_inner()
}

async fn egress_status(host: &Host, id: &str, log_lines: u32) -> pb::EgressStatus {
    let req = pb::GetEgressPolicyRequest {
        sandbox_id: id.into(),
        log_lines,
    };
    host.sandboxes()
        .await
        .get_egress_policy(req)
        .await
        .unwrap_or_else(|s| panic!("GetEgressPolicy {id}: {s:?}"))
        .into_inner()
}

/// Python run in a sandbox by [`probe`]: each named check is `[kind, args...]`, run in order;
/// prints one JSON object of results by name.
const PROBE: &str = r#"
import json, socket, subprocess
import requests

def get(url, proxy=None, redirects=True):
    kw = {"timeout": 60, "allow_redirects": redirects}
    if proxy:
        kw["proxies"] = {"http": proxy, "https": proxy}
    try:
        r = requests.get(url, **kw)
        return {"status": r.status_code, "body": r.text[:2000], "len": len(r.content),
                "egress": r.headers.get("x-agent-runtime-egress", ""),
                "history": [h.status_code for h in r.history]}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}

def raw(request):
    """One request written to the proxy as is; the answer up to EOF (or 20 s of silence)."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(request.encode())
    data = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except socket.timeout:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    return {"status": lines[0], "headers": [l.lower() for l in lines[1:]],
            "body": body.decode(errors="replace")[:2000]}

def direct(port):
    """A plain TCP connection to 127.0.0.1:port inside the sandbox (its own loopback)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "error": str(e)}

def sh(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=150)
    return {"code": p.returncode, "stdout": p.stdout[-4000:], "stderr": p.stderr[-4000:]}

def run(checks):
    print(json.dumps({name: globals()[kind](*args) for name, (kind, *args) in checks.items()}))
"#;

/// Runs `checks` (see [`PROBE`]) in sandbox `id`, in the order of their names (a JSON object's
/// keys are sorted); returns the results by name.
async fn probe(host: &Host, id: &str, checks: Value) -> Value {
    let literal = serde_json::to_string(&checks.to_string()).expect("json");
    let code = format!("{PROBE}\nrun(json.loads({literal}))\n");
    host.py_json(id, &code).await
}

/// A raw CONNECT request line for `authority`.
fn connect_req(authority: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

/// A raw absolute-form GET for `authority`.
fn get_req(authority: &str, path: &str) -> String {
    format!(
        "GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
}

/// A successful fetch whose body contains `want`.
#[track_caller]
fn assert_fetched(r: &Value, what: &str, want: &str) {
    assert!(
        r["status"] == 200 && r["body"].as_str().is_some_and(|b| b.contains(want)),
        "{what}: expected 200 with {want:?}, got {r}"
    );
}

/// A refusal by the proxy that says `want`: a 403 with the marker header and the reason as the
/// body (plain http), or for https a failed CONNECT whose error shows the 403 and the reason.
#[track_caller]
fn assert_refused(r: &Value, what: &str, want: &str) {
    let ok = if let Some(err) = r["error"].as_str() {
        err.contains("403") && err.contains(want)
    } else if r["status"].is_string() {
        // raw
        r["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("HTTP/1.1 403"))
            && r["headers"]
                .as_array()
                .is_some_and(|h| h.iter().any(|l| l == "x-agent-runtime-egress: denied"))
            && r["body"].as_str().is_some_and(|b| b.contains(want))
    } else {
        r["status"] == 403
            && r["egress"] == "denied"
            && r["body"].as_str().is_some_and(|b| b.contains(want))
    };
    assert!(
        ok,
        "{what}: expected a 403 refusal saying {want:?}, got {r}"
    );
}

/// A shell command that succeeded and printed `want`.
#[track_caller]
fn assert_ran(r: &Value, what: &str, want: &str) {
    assert!(
        r["code"] == 0 && r["stdout"].as_str().is_some_and(|s| s.contains(want)),
        "{what}: expected exit 0 printing {want:?}, got {r}"
    );
}

async fn goto(host: &Host, id: &str, url: &str) -> Result<pb::BrowserPage, tonic::Status> {
    let req = pb::BrowserGotoRequest {
        url: url.into(),
        ..Default::default()
    };
    let call = async { host.sandbox().await.browser_goto(with_id(id, req)).await };
    hang_guard(
        Duration::from_secs(120),
        &format!("BrowserGoto {url}"),
        call,
    )
    .await
    .map(|r| r.into_inner())
}

async fn snapshot(host: &Host, id: &str) -> pb::BrowserSnapshotResponse {
    host.sandbox()
        .await
        .browser_snapshot(with_id(id, pb::BrowserSnapshotRequest::default()))
        .await
        .unwrap_or_else(|s| panic!("BrowserSnapshot in {id}: {s:?}"))
        .into_inner()
}

/// Chromium opens `url` and the page shows `text`.
async fn assert_browsed(host: &Host, id: &str, url: &str, title: &str, text: &str) {
    let page = goto(host, id, url).await.unwrap_or_else(|s| {
        panic!(
            "BrowserGoto {url} should work: {s:?}\nhost log:\n{}",
            host.log()
        )
    });
    assert_eq!(page.title, title, "BrowserGoto {url}: {page:?}");
    let snap = snapshot(host, id).await;
    assert_eq!(snap.title, title, "BrowserSnapshot after {url}");
    assert!(
        snap.text.contains(text),
        "BrowserSnapshot after {url}: expected {text:?} in the page text {:?}",
        snap.text
    );
}

/// Chromium's navigation to `url` is PERMISSION_DENIED with a message saying `want`.
async fn assert_browse_refused(host: &Host, id: &str, url: &str, want: &str) {
    match goto(host, id, url).await {
        Err(s) => assert!(
            s.code() == Code::PermissionDenied
                && s.message()
                    .contains("blocked by the sandbox's egress policy")
                && s.message().contains(want),
            "BrowserGoto {url}: expected PERMISSION_DENIED saying {want:?}, got {:?}: {}",
            s.code(),
            s.message()
        ),
        Ok(page) => panic!("BrowserGoto {url} should be refused ({want}), got the page {page:?}"),
    }
}

/// The environment of a new process in `id`, as (name, value) pairs.
async fn env_of(host: &Host, id: &str) -> Vec<(String, String)> {
    let out = host.sh(id, "env").await;
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[track_caller]
fn assert_no_proxy_vars(env: &[(String, String)], what: &str) {
    let found: Vec<_> = env
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().ends_with("_proxy"))
        .collect();
    assert!(
        found.is_empty(),
        "{what}: proxy variables under network \"none\": {found:?}"
    );
}

#[track_caller]
fn assert_proxy_vars(env: &[(String, String)], what: &str) {
    for name in PROXY_VARS {
        assert_eq!(var(env, name), Some(PROXY), "{what}: {name}");
    }
    for name in ["NO_PROXY", "no_proxy"] {
        assert_eq!(
            var(env, name),
            Some("localhost,127.0.0.1"),
            "{what}: {name}"
        );
    }
}

/// The default policy lets nothing out (curl, requests, Chromium all get the policy's reason),
/// and a loopback destination in any spelling is refused under every policy, `localhost` on the
/// allow list and `open` included.
#[tokio::test]
async fn nothing_leaves_by_default_and_inward_addresses_never_do() {
    let sites = Sites::start();
    let host = sites.host(&[]);
    let none = host.create().await;

    let info = host
        .sandboxes()
        .await
        .get(pb::GetSandboxRequest {
            sandbox_id: none.clone(),
        })
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(
        info.egress.as_ref().map(|e| e.network.as_str()),
        Some("none"),
        "a sandbox created without a policy: {info:?}"
    );

    assert_no_proxy_vars(
        &env_of(&host, &none).await,
        "a sandbox created without a policy",
    );
    let out = host
        .sh(
            &none,
            "tail -n +3 /proc/net/dev | cut -d: -f1; echo ---; ls /sys/class/net",
        )
        .await;
    let (dev, sys) = out.stdout.split_once("---").expect("both listings");
    let names = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(names(dev), ["lo"], "interfaces in /proc/net/dev: {out:?}");
    assert_eq!(names(sys), ["lo"], "interfaces in /sys/class/net: {out:?}");

    let none_says = r#"network is "none""#;
    let r = probe(
        &host,
        &none,
        json!({
            "requests": ["get", "http://allowed.test/hello"],
            "requests_via_proxy": ["get", "http://allowed.test/hello", PROXY],
            "requests_https_via_proxy": ["get", "https://allowed.test/hello", PROXY],
            "curl": ["sh", "curl -sS --max-time 30 http://allowed.test/hello"],
            "curl_via_proxy": ["sh", format!("curl -sS --max-time 30 -x {PROXY} http://allowed.test/hello")],
            "host_loopback": ["direct", sites.http],
        }),
    )
    .await;
    assert!(
        r["requests"]["error"].is_string(),
        "requests without a proxy reached something: {}",
        r["requests"]
    );
    assert!(
        r["curl"]["code"] != 0,
        "curl without a proxy reached something: {}",
        r["curl"]
    );
    assert_refused(
        &r["requests_via_proxy"],
        "requests through the proxy under none",
        none_says,
    );
    assert_refused(
        &r["requests_https_via_proxy"],
        "requests https through the proxy under none",
        none_says,
    );
    assert!(
        r["curl_via_proxy"]["stdout"]
            .as_str()
            .is_some_and(|s| s.contains(none_says) && s.contains("allowed.test")),
        "curl through the proxy under none should print the reason: {}",
        r["curl_via_proxy"]
    );
    assert_eq!(
        r["host_loopback"]["connected"], false,
        "the host's loopback server is reachable from inside the sandbox: {}",
        r["host_loopback"]
    );
    assert_browse_refused(&host, &none, "http://allowed.test/", none_says).await;
    assert_browse_refused(&host, &none, "https://allowed.test/", none_says).await;

    // Inward addresses: refused whatever the policy, on the address actually dialled.
    let listed = create_with(&host, policy("", &["allowed.test", "localhost"], &[]))
        .await
        .sandbox_id;
    let open = create_with(&host, policy("open", &[], &[]))
        .await
        .sandbox_id;
    let grpc_port = host.addr.rsplit(':').next().expect("port").to_owned();
    let (http, https) = (sites.http, sites.https);
    let mut checks = serde_json::Map::new();
    for h in [
        "localhost",
        "127.0.0.1",
        "0x7f.1",
        "0177.0.0.1",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ] {
        checks.insert(
            format!("CONNECT {h}"),
            json!(["raw", connect_req(&format!("{h}:{https}"))]),
        );
        checks.insert(
            format!("GET {h}"),
            json!(["raw", get_req(&format!("{h}:{http}"), "/hello")]),
        );
    }
    checks.insert(
        "CONNECT the host's gRPC port".into(),
        json!(["raw", connect_req(&format!("127.0.0.1:{grpc_port}"))]),
    );
    let checks = Value::Object(checks);
    let in_listed = probe(&host, &listed, checks.clone()).await;
    let in_open = probe(&host, &open, checks).await;
    for (name, r) in in_open.as_object().expect("results") {
        assert_refused(r, &format!("{name} under open"), "loopback");
    }
    for (name, r) in in_listed.as_object().expect("results") {
        let want = if name.ends_with("localhost") {
            // Allowed by name, refused by the address it resolves to.
            "localhost resolves to"
        } else {
            "blocked by the sandbox's egress policy"
        };
        assert_refused(
            r,
            &format!("{name} under allowlist [allowed.test, localhost]"),
            want,
        );
    }
    assert!(
        in_listed["GET localhost"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("loopback")),
        "localhost on the allow list: the refusal should name the loopback address: {}",
        in_listed["GET localhost"]
    );
    assert_eq!(
        sites.seen(),
        Vec::<String>::new(),
        "nothing should have reached the servers"
    );
}

/// allow_domains [allowed.test, *.wild.test, pypi.test]: requests, curl, pip, git (HTTP and
/// HTTPS) and Chromium (HTTP, and HTTPS under the test CA) reach the listed names; other names,
/// look-alikes and a redirect to an unlisted name are refused.
#[tokio::test]
async fn allowlisted_names_work_with_every_tool_and_nothing_else_does() {
    let sites = Sites::start();
    let host = sites.host(&[]);
    let allow = ["allowed.test", "*.wild.test", "pypi.test"];
    let info = create_with(&host, policy("", &allow, &[])).await;
    let id = info.sandbox_id.clone();
    assert_eq!(
        info.egress,
        Some(policy("allowlist", &allow, &[])),
        "allow_domains alone implies allowlist"
    );
    assert_proxy_vars(&env_of(&host, &id).await, "an allowlist sandbox");

    let not_listed = |name: &str| {
        format!("{name} is not in allow_domains [allowed.test, *.wild.test, pypi.test]")
    };
    let r = probe(
        &host,
        &id,
        json!({
            "requests http": ["get", "http://allowed.test/hello"],
            "requests https": ["get", "https://allowed.test/hello"],
            "requests wildcard": ["get", "https://a.wild.test/hello"],
            "requests deep wildcard": ["get", "http://x.y.wild.test/hello"],
            "curl http": ["sh", "curl -sS --max-time 60 http://allowed.test/hello"],
            "curl https": ["sh", "curl -sS --max-time 60 https://a.wild.test/hello"],
            "pip download": ["sh", "cd /tmp && python3 -m pip download --no-cache-dir --no-deps \
                --disable-pip-version-check -d /tmp/dl --index-url https://pypi.test/simple/ tinypkg \
                && PYTHONPATH=/tmp/dl/tinypkg-1.0-py3-none-any.whl python3 -c 'import tinypkg; print(tinypkg.VALUE)'"],
            "git clone http": ["sh", "git clone -q http://allowed.test/repo.git /tmp/g1 && cat /tmp/g1/README"],
            "git clone https": ["sh", "git clone -q https://allowed.test/repo.git /tmp/g2 && cat /tmp/g2/README"],
            "other.test": ["get", "http://other.test/hello"],
            "other.test https": ["get", "https://other.test/hello"],
            "evil-allowed.test": ["get", "http://evil-allowed.test/hello"],
            "wild.test.evil.test": ["get", "https://wild.test.evil.test/hello"],
            "wild.test": ["get", "http://wild.test/hello"],
            "curl other.test https": ["sh", "curl -sS --max-time 60 https://other.test/hello"],
            "redirect": ["get", "http://allowed.test/redirect?to=http://other.test/hello"],
            "redirect https": ["get", "https://allowed.test/redirect?to=https://other.test/hello"],
            "curl redirect": ["sh", "curl -sSL --max-time 60 'http://allowed.test/redirect?to=http://other.test/hello'"],
        }),
    )
    .await;
    assert_fetched(
        &r["requests http"],
        "requests http://allowed.test",
        "hello from allowed.test over http",
    );
    assert_fetched(
        &r["requests https"],
        "requests https://allowed.test",
        "hello from allowed.test over https",
    );
    assert_fetched(
        &r["requests wildcard"],
        "requests https://a.wild.test",
        "hello from a.wild.test over https",
    );
    assert_fetched(
        &r["requests deep wildcard"],
        "requests http://x.y.wild.test",
        "hello from x.y.wild.test",
    );
    assert_ran(
        &r["curl http"],
        "curl http://allowed.test",
        "hello from allowed.test over http",
    );
    assert_ran(
        &r["curl https"],
        "curl https://a.wild.test",
        "hello from a.wild.test over https",
    );
    assert_ran(
        &r["pip download"],
        "pip download from https://pypi.test/simple/",
        "tinypkg imported",
    );
    assert_ran(
        &r["git clone http"],
        "git clone http://allowed.test/repo.git",
        "cloned through the egress proxy",
    );
    assert_ran(
        &r["git clone https"],
        "git clone https://allowed.test/repo.git",
        "cloned through the egress proxy",
    );

    assert_refused(
        &r["other.test"],
        "http://other.test",
        &not_listed("other.test"),
    );
    assert_refused(
        &r["other.test https"],
        "https://other.test",
        &not_listed("other.test"),
    );
    assert_refused(
        &r["evil-allowed.test"],
        "http://evil-allowed.test",
        &not_listed("evil-allowed.test"),
    );
    assert_refused(
        &r["wild.test.evil.test"],
        "https://wild.test.evil.test",
        &not_listed("wild.test.evil.test"),
    );
    assert_refused(
        &r["wild.test"],
        "http://wild.test (a wildcard covers names under it only)",
        &not_listed("wild.test"),
    );
    let curl = &r["curl other.test https"];
    assert!(
        curl["code"] != 0 && curl["stderr"].as_str().is_some_and(|s| s.contains("403")),
        "curl https://other.test should fail showing the proxy's 403: {curl}"
    );
    assert_refused(
        &r["redirect"],
        "a redirect from allowed.test to other.test",
        &not_listed("other.test"),
    );
    assert_eq!(
        r["redirect"]["history"],
        json!([302]),
        "the redirect was followed: {}",
        r["redirect"]
    );
    assert_refused(
        &r["redirect https"],
        "an https redirect from allowed.test to other.test",
        &not_listed("other.test"),
    );
    assert!(
        r["curl redirect"]["stdout"]
            .as_str()
            .is_some_and(|s| s.contains(&not_listed("other.test"))),
        "curl -L from allowed.test to other.test should end at the refusal: {}",
        r["curl redirect"]
    );

    // Chromium: the proxy for every page, the test CA for HTTPS.
    assert_browsed(
        &host,
        &id,
        "http://allowed.test/",
        "Egress test: allowed.test",
        "Hello from allowed.test over http",
    )
    .await;
    assert_browsed(
        &host,
        &id,
        "https://a.wild.test/",
        "Egress test: a.wild.test",
        "Hello from a.wild.test over https",
    )
    .await;
    assert_browsed(
        &host,
        &id,
        "https://allowed.test/",
        "Egress test: allowed.test",
        "Hello from allowed.test over https",
    )
    .await;
    assert_browse_refused(&host, &id, "https://other.test/", &not_listed("other.test")).await;
    assert_browse_refused(
        &host,
        &id,
        "http://evil-allowed.test/",
        &not_listed("evil-allowed.test"),
    )
    .await;
    assert_browse_refused(
        &host,
        &id,
        "http://allowed.test/redirect?to=http://other.test/",
        &not_listed("other.test"),
    )
    .await;
    // Refusals leave the browser usable.
    assert_browsed(
        &host,
        &id,
        "https://a.wild.test/",
        "Egress test: a.wild.test",
        "Hello from a.wild.test over https",
    )
    .await;

    let hosts = sites.seen_hosts();
    for name in ["allowed.test", "a.wild.test", "x.y.wild.test", "pypi.test"] {
        assert!(
            hosts.iter().any(|h| h == name),
            "the servers never saw {name}: {hosts:?}"
        );
    }
    for name in [
        "other.test",
        "evil-allowed.test",
        "wild.test.evil.test",
        "wild.test",
    ] {
        assert!(
            !hosts.iter().any(|h| h == name),
            "a refused name reached the servers: {name} in {hosts:?}"
        );
    }
}

/// A policy changed from outside applies to the next connection and closes open ones it refuses
/// (others keep flowing); a change from or to `none` gives new processes (or takes away) the
/// proxy variables; nothing inside the sandbox can reach the call that changes it.
#[tokio::test]
async fn policy_changes_live_from_outside_only() {
    let sites = Sites::start();
    let host = sites.host(&[]);
    let id = create_with(&host, policy("", &["allowed.test", "a.wild.test"], &[]))
        .await
        .sandbox_id;

    // Three long downloads (the server sends a line every 0.1 s for minutes; each has flowed
    // for 5 lines before the change): two from allowed.test (a forwarded http request and a
    // CONNECT tunnel), one from a.wild.test.
    let streams = r#"
import sys, threading, requests
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def stream(name, url):
    it = requests.get(url, stream=True, timeout=60).iter_lines()
    for _ in range(5):
        next(it)
    say(f"open {name}")
    lines = 5
    try:
        for _ in it:
            lines += 1
        how = "at its end"
    except Exception as e:
        how = type(e).__name__
    say(f"ended {name} {how} after {lines} lines")
ts = [threading.Thread(target=stream, args=a) for a in
      [("allowed-http", "http://allowed.test/slow"), ("allowed-https", "https://allowed.test/slow")]]
for t in ts:
    t.start()
wild = requests.get("https://a.wild.test/slow", stream=True, timeout=60).iter_lines()
for _ in range(5):
    next(wild)
say("open wild")
for t in ts:
    t.join()
for _ in range(3):
    next(wild)
say("wild kept flowing")
"#;
    let req = pb::ExecRequest {
        language: "python".into(),
        code: streams.into(),
        timeout_seconds: 90.0,
        ..Default::default()
    };
    let mut client = host.sandbox().await;
    let mut run = start_exec(&mut client, &id, req)
        .await
        .expect("start the downloads");
    for name in ["allowed-http", "allowed-https", "wild"] {
        run.until_stdout(&format!("open {name}\n")).await;
    }
    let changed = set_policy(&host, &id, policy("", &["a.wild.test", "other.test"], &[])).await;
    assert_eq!(
        changed.egress,
        Some(policy("allowlist", &["a.wild.test", "other.test"], &[])),
        "SetEgressPolicy answers the new policy"
    );
    let out = run.finish().await.expect("the downloads' run");
    assert!(
        !out.exit.killed && out.exit.code == 0,
        "the policy change did not close the allowed.test downloads (the run was killed or \
         failed): {out:?}"
    );
    for name in ["allowed-http", "allowed-https"] {
        assert!(
            out.stdout.contains(&format!("ended {name}")),
            "{name}: {}",
            out.stdout
        );
    }
    assert!(
        out.stdout.trim_end().ends_with("wild kept flowing"),
        "the a.wild.test download, still allowed, should keep flowing: {}",
        out.stdout
    );

    // The next connections follow the new policy.
    let r = probe(
        &host,
        &id,
        json!({
            "other.test": ["get", "http://other.test/hello"],
            "allowed.test": ["get", "https://allowed.test/hello"],
            "a.wild.test": ["get", "https://a.wild.test/hello"],
        }),
    )
    .await;
    assert_fetched(
        &r["other.test"],
        "other.test after it was allowed",
        "hello from other.test",
    );
    assert_fetched(
        &r["a.wild.test"],
        "a.wild.test, allowed before and after",
        "hello from a.wild.test",
    );
    assert_refused(
        &r["allowed.test"],
        "allowed.test after it was taken off",
        "allowed.test is not in allow_domains [a.wild.test, other.test]",
    );

    // Nothing inside reaches the host's side: the daemon's socket directory is root-only, the
    // host's gRPC port is another machine's loopback (the proxy refuses it, directly it is not
    // there), and changing the proxy variables changes nothing.
    let grpc_port: u16 = host
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let r = probe(
        &host,
        &id,
        json!({
            "run dir": ["sh", "ls /run/agent-runtime"],
            "grpc via proxy": ["raw", get_req(&format!("127.0.0.1:{grpc_port}"), "/agent_runtime.v1.Sandboxes/SetEgressPolicy")],
            "grpc via localhost": ["raw", connect_req(&format!("localhost:{grpc_port}"))],
            "grpc directly": ["direct", grpc_port],
            "no proxy vars": ["sh", "env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy curl -sS --max-time 20 http://allowed.test/hello"],
        }),
    )
    .await;
    assert!(
        r["run dir"]["code"] != 0
            && r["run dir"]["stderr"]
                .as_str()
                .is_some_and(|s| s.contains("Permission denied")),
        "user code lists the daemon's socket directory: {}",
        r["run dir"]
    );
    assert_refused(
        &r["grpc via proxy"],
        "the host's gRPC port through the proxy",
        "blocked",
    );
    assert_refused(
        &r["grpc via localhost"],
        "the host's gRPC port as localhost",
        "blocked",
    );
    assert_eq!(
        r["grpc directly"]["connected"], false,
        "the host's gRPC port from inside: {}",
        r["grpc directly"]
    );
    assert!(
        r["no proxy vars"]["code"] != 0,
        "without the proxy something answered: {}",
        r["no proxy vars"]
    );
    let status = egress_status(&host, &id, 0).await;
    assert_eq!(
        status.egress,
        Some(policy("allowlist", &["a.wild.test", "other.test"], &[])),
        "the policy after user code's attempts"
    );

    // To `none`: new processes lose the proxy variables and nothing leaves; and back.
    set_policy(&host, &id, policy("none", &[], &[])).await;
    assert_no_proxy_vars(&env_of(&host, &id).await, "after the change to none");
    let r = probe(
        &host,
        &id,
        json!({"a.wild.test": ["get", "https://a.wild.test/hello", PROXY]}),
    )
    .await;
    assert_refused(
        &r["a.wild.test"],
        "a.wild.test after the change to none",
        r#"network is "none""#,
    );
    set_policy(&host, &id, policy("allowlist", &["allowed.test"], &[])).await;
    assert_proxy_vars(
        &env_of(&host, &id).await,
        "after the change back to allowlist",
    );
    let r = probe(
        &host,
        &id,
        json!({"allowed.test": ["get", "http://allowed.test/hello"]}),
    )
    .await;
    assert_fetched(
        &r["allowed.test"],
        "allowed.test after the change back",
        "hello from allowed.test",
    );
}

/// The per-sandbox caps: past its connection cap a sandbox's next connection gets a 429 naming
/// the limit, past its byte cap its transfer is cut and later requests get a 429 naming that
/// limit; another sandbox on the same host keeps going all along.
#[tokio::test]
async fn caps_stop_one_sandbox_while_another_flows() {
    let sites = Sites::start();
    let host = sites.host(&["--egress-max-connections", "3", "--egress-max-bytes", "2m"]);
    let allow = policy("", &["allowed.test"], &[]);
    let a = create_with(&host, allow.clone()).await.sandbox_id;
    let b = create_with(&host, allow).await.sandbox_id;

    let hold = r#"
import json, os, socket, time
socks = []
for i in range(3):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"GET http://allowed.test/slow HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    got = b""
    while b"tick" not in got:
        got += s.recv(4096)
    socks.append(s)
print("holding 3", flush=True)
s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
s.sendall(b"GET http://allowed.test/hello HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
got = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    got += c
print("FOURTH " + json.dumps(got.decode(errors="replace")) + "\nFOURTH-END", flush=True)
while not os.path.exists("/workspace/release"):
    time.sleep(0.05)
for s in socks:
    s.close()
print("released", flush=True)
"#;
    let req = pb::ExecRequest {
        language: "python".into(),
        code: hold.into(),
        timeout_seconds: 120.0,
        ..Default::default()
    };
    let mut client = host.sandbox().await;
    let mut run = start_exec(&mut client, &a, req)
        .await
        .expect("start holding connections");
    run.until_stdout("FOURTH-END\n").await;
    let fourth = run
        .so_far()
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("FOURTH "))
        .map(|j| serde_json::from_str::<String>(j).expect("json"))
        .expect("the fourth answer");
    assert!(
        fourth.starts_with("HTTP/1.1 429") && fourth.contains("egress connection limit"),
        "a fourth connection past the cap of 3: {fourth:?}"
    );
    // Meanwhile the other sandbox is not held back.
    let r = probe(
        &host,
        &b,
        json!({"hello": ["get", "http://allowed.test/hello"]}),
    )
    .await;
    assert_fetched(
        &r["hello"],
        "sandbox B while A is at its connection cap",
        "hello from allowed.test",
    );
    assert!(
        egress_status(&host, &a, 0).await.open_connections >= 3,
        "A's status while it holds 3 connections"
    );
    host.write_file(&a, "release", b"").await;
    let out = run.finish().await.expect("the holding run");
    assert!(out.stdout.contains("released"), "{out:?}");
    // Once they are closed (the host notices shortly after), A connects again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while egress_status(&host, &a, 0).await.open_connections > 0 {
        assert!(
            Instant::now() < deadline,
            "hung: A's closed connections are still counted open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = probe(
        &host,
        &a,
        json!({"hello": ["get", "http://allowed.test/hello"]}),
    )
    .await;
    assert_fetched(
        &r["hello"],
        "sandbox A after closing its connections",
        "hello from allowed.test",
    );

    // The byte cap (2 MiB): a 3 MB download is cut short, then A gets nothing more.
    let r = probe(
        &host,
        &a,
        json!({
            "1 big": ["sh", "curl -sS --max-time 60 -o /tmp/big http://allowed.test/big?n=3000000; echo \"exit=$?\"; stat -c %s /tmp/big"],
            "2 after": ["get", "http://allowed.test/hello"],
        }),
    )
    .await;
    let big = r["1 big"]["stdout"].as_str().unwrap_or_default();
    let size: u64 = big
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        !big.contains("exit=0") && size < 3_000_000,
        "a 3 MB download past A's 2 MiB cap should be cut short: {}",
        r["1 big"]
    );
    let after = &r["2 after"];
    assert!(
        after["status"] == 429
            && after["body"]
                .as_str()
                .is_some_and(|b| b.contains("egress byte limit")),
        "a request after A's byte cap should get 429 naming the byte limit: {after} (the cut \
         download: {})",
        r["1 big"]
    );
    let r = probe(
        &host,
        &b,
        json!({
            "big": ["get", "http://allowed.test/big?n=1000000"],
            "hello": ["get", "http://allowed.test/hello"],
        }),
    )
    .await;
    assert!(
        r["big"]["status"] == 200 && r["big"]["len"] == 1_000_000,
        "sandbox B's 1 MB download while A is over its byte cap: {}",
        r["big"]
    );
    assert_fetched(
        &r["hello"],
        "sandbox B after A's byte cap",
        "hello from allowed.test",
    );
    let (sa, sb) = (
        egress_status(&host, &a, 0).await,
        egress_status(&host, &b, 0).await,
    );
    assert_eq!(sa.max_bytes, 2 << 20, "the byte cap in the status");
    assert_eq!(sa.max_connections, 3, "the connection cap in the status");
    assert!(sa.bytes_total >= sa.max_bytes, "A's bytes: {sa:?}");
    assert!(
        sb.bytes_total < sb.max_bytes && sb.bytes_total > 1_000_000,
        "B's bytes: {sb:?}"
    );
}

fn cli(host: &Host, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("agent-runtime"))
        .args(args)
        .env("AGENT_RUNTIME_ADDR", &host.addr)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running agent-runtime");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `<state>/instances/<instance>/egress/egress.log`.
fn audit_path(instance: &str) -> PathBuf {
    std::env::var_os("AGENT_RUNTIME_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/agent-runtime"))
        .join("instances")
        .join(instance)
        .join("egress")
        .join("egress.log")
}

fn lines_about(path: &Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the audit log {}: {e}", path.display()))
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}"))
        })
        .filter(|v| v["sandbox"] == id)
        .collect()
}

/// The CLI sets and shows a policy; every decision is one audit line with its fields, the same
/// in the log file, GetEgressPolicy and `sandbox network --log --json`; the REST context create
/// takes the same fields.
#[tokio::test]
async fn cli_rest_and_the_audit_log() {
    let sites = Sites::start();
    let host = sites.host(&[]);
    let (code, stdout, stderr) = cli(
        &host,
        &[
            "sandbox",
            "create",
            "--allow-domain",
            "allowed.test",
            "--allow-domain",
            "*.wild.test",
            "--deny-domain",
            "bad.wild.test",
        ],
    );
    assert_eq!(code, 0, "sandbox create with egress flags: {stderr}");
    let id = stdout.trim().to_owned();
    let (code, stdout, stderr) = cli(&host, &["sandbox", "network", &id, "--json"]);
    assert_eq!(code, 0, "sandbox network --json: {stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(shown["network"], "allowlist", "{shown}");
    assert_eq!(
        shown["allow_domains"],
        json!(["allowed.test", "*.wild.test"]),
        "{shown}"
    );
    assert_eq!(shown["deny_domains"], json!(["bad.wild.test"]), "{shown}");

    let r = probe(
        &host,
        &id,
        json!({
            "allowed": ["get", "http://allowed.test/hello"],
            "wild": ["get", "https://a.wild.test/hello"],
            "other": ["get", "http://other.test/hello"],
            "denied": ["get", "https://bad.wild.test/hello"],
        }),
    )
    .await;
    assert_fetched(
        &r["allowed"],
        "http://allowed.test",
        "hello from allowed.test",
    );
    assert_fetched(&r["wild"], "https://a.wild.test", "hello from a.wild.test");
    assert_refused(
        &r["other"],
        "http://other.test",
        "other.test is not in allow_domains",
    );
    assert_refused(
        &r["denied"],
        "https://bad.wild.test",
        "bad.wild.test matches deny_domains entry bad.wild.test",
    );

    // An allowed connection's line is written when it ends, just after the response.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = egress_status(&host, &id, 100).await.log;
        if log.len() >= 4 || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut lines: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "one audit line per decision (4 requests): {log:#?}"
    );
    lines.sort_by_key(|v| v["host"].as_str().unwrap_or_default().to_owned());
    let hosts: Vec<&str> = lines
        .iter()
        .map(|v| v["host"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        hosts,
        ["a.wild.test", "allowed.test", "bad.wild.test", "other.test"]
    );
    let expect = [
        (
            "a.wild.test",
            443,
            "CONNECT",
            "allowed",
            Some("*.wild.test"),
            sites.https,
        ),
        (
            "allowed.test",
            80,
            "GET",
            "allowed",
            Some("allowed.test"),
            sites.http,
        ),
        ("bad.wild.test", 443, "CONNECT", "denied", None, 0),
        ("other.test", 80, "GET", "denied", None, 0),
    ];
    for (v, (host_name, port, method, decision, rule, to)) in lines.iter().zip(expect) {
        let what = format!("the audit line of {host_name}: {v}");
        for field in [
            "time",
            "sandbox",
            "host",
            "port",
            "address",
            "method",
            "decision",
            "bytes_up",
            "bytes_down",
            "duration_ms",
        ] {
            assert!(v.get(field).is_some(), "{what}: no {field}");
        }
        let time = v["time"].as_str().unwrap_or_default();
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{what}: time is not RFC 3339 UTC"
        );
        assert_eq!(v["sandbox"], id.as_str(), "{what}");
        assert_eq!(v["port"], port, "{what}");
        assert_eq!(v["method"], method, "{what}");
        assert_eq!(v["decision"], decision, "{what}");
        assert!(v["duration_ms"].is_u64(), "{what}");
        match rule {
            Some(rule) => {
                assert_eq!(v["rule"], rule, "{what}");
                assert_eq!(v["address"], format!("127.0.0.1:{to}"), "{what}");
                // A forwarded GET counts its body (none) up; a tunnel counts the TLS bytes.
                let up_min = u64::from(method == "CONNECT");
                assert!(
                    v["bytes_up"].as_u64() >= Some(up_min) && v["bytes_down"].as_u64() > Some(0),
                    "{what}: bytes each way"
                );
            }
            None => {
                assert!(
                    v["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("blocked by the sandbox's egress policy")),
                    "{what}: the reason"
                );
                assert_eq!(v["address"], "", "{what}: nothing was dialled");
                assert_eq!(v["bytes_down"], 0, "{what}");
            }
        }
    }
    // The same lines in the file and through the CLI.
    let mut in_file = lines_about(&audit_path(&host.instance), &id);
    in_file.sort_by_key(|v| v["host"].as_str().unwrap_or_default().to_owned());
    assert_eq!(in_file, lines, "the audit file's lines about {id}");
    let (code, stdout, stderr) = cli(&host, &["sandbox", "network", &id, "--log", "50", "--json"]);
    assert_eq!(code, 0, "sandbox network --log --json: {stderr}");
    let mut from_cli: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("--log --json line {l:?}: {e}")))
        .collect();
    from_cli.sort_by_key(|v| v["host"].as_str().unwrap_or_default().to_owned());
    assert_eq!(from_cli, lines, "sandbox network --log --json");
    let (code, stdout, stderr) = cli(&host, &["sandbox", "network", &id, "--log"]);
    assert_eq!(code, 0, "sandbox network --log: {stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("denied") && l.contains("other.test")),
        "sandbox network --log shows the refusal: {stdout}"
    );

    // The CLI replaces the policy on the running sandbox.
    let (code, stdout, stderr) = cli(
        &host,
        &["sandbox", "network", &id, "--allow-domain", "other.test"],
    );
    assert_eq!(code, 0, "sandbox network --allow-domain: {stderr}");
    assert!(
        stdout.contains("other.test"),
        "the new policy is shown: {stdout}"
    );
    let r = probe(
        &host,
        &id,
        json!({
            "other": ["get", "http://other.test/hello"],
            "allowed": ["get", "http://allowed.test/hello"],
        }),
    )
    .await;
    assert_fetched(
        &r["other"],
        "other.test after `sandbox network --allow-domain other.test`",
        "hello from other.test",
    );
    assert_refused(
        &r["allowed"],
        "allowed.test after the policy was replaced",
        "allowed.test is not in allow_domains [other.test]",
    );

    // REST: a context's new sandbox takes the same fields; its kernel has the proxy.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let resp = http
        .post(format!("{}/api/v1/contexts", host.rest))
        .json(
            &json!({"type": "jupyter", "language": "python", "session_name": "egress",
                      "allow_domains": ["allowed.test"]}),
        )
        .send()
        .await
        .expect("POST /api/v1/contexts");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        status,
        reqwest::StatusCode::CREATED,
        "REST context with allow_domains: {body}"
    );
    let ctx = body["context_id"].as_str().expect("context_id").to_owned();
    let code = "import requests\n\
                a = requests.get('https://allowed.test/hello', timeout=60)\n\
                o = requests.get('http://other.test/hello', timeout=60)\n\
                print(a.status_code, a.text.strip(), '|', o.status_code, o.text.strip())";
    let resp = http
        .post(format!("{}/api/v1/contexts/{ctx}/execute", host.rest))
        .json(&json!({ "code": code, "timeout": 90 }))
        .send()
        .await
        .expect("execute");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let out = body["output"]["stdout"].as_str().unwrap_or_default();
    assert!(
        out.starts_with("200 hello from allowed.test over https | 403 blocked by the sandbox's egress policy: other.test is not in allow_domains [allowed.test]"),
        "requests in a REST context created with allow_domains: {body}"
    );
    let resp = http
        .post(format!("{}/api/v1/contexts", host.rest))
        .json(
            &json!({"type": "jupyter", "language": "python", "session_name": "bad",
                      "network": "none", "allow_domains": ["allowed.test"]}),
        )
        .send()
        .await
        .expect("POST /api/v1/contexts");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        status == reqwest::StatusCode::BAD_REQUEST && body["code"] == "BAD_REQUEST",
        "network none with allow_domains: {status} {body}"
    );
}

/// The issue's MCP flow on the official Python SDK (tests/mcp/client.py `egress`): sandbox_create
/// with allow_domains, browser_goto an HTTPS page and browser_snapshot it, then a blocked site
/// is an isError result naming the policy.
#[test]
fn mcp_sdk_browses_an_allowed_site_and_is_refused_a_blocked_one() {
    let sites = Sites::start();
    let host = sites.host(&[]);
    let mcp = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp");
    let python = mcp.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: install the MCP test clients with `bash .ci/setup`",
        python.display()
    );
    let out = Command::new(&python)
        .arg(mcp.join("client.py"))
        .arg("egress")
        .arg("--stdio")
        .arg(binary("mcp-bridge"))
        .env("AGENT_RUNTIME_ADDR", &host.addr)
        .env("EGRESS_ALLOWED_URL", "https://allowed.test/")
        .env("EGRESS_BLOCKED_URL", "https://other.test/")
        .output()
        .expect("running tests/mcp/client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client.py egress failed ({}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        out.status
    );
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary from client.py:\n{stdout}\n{stderr}"));
    assert_eq!(summary["ok"], "egress", "{summary}");
    let hosts = sites.seen_hosts();
    assert_eq!(hosts, ["allowed.test"], "the sites the MCP session reached");
}
