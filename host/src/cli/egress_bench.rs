//! `agent-runtime bench --egress`: what the egress proxy costs. A private host (its own instance,
//! destroyed at the end) reaches a loopback HTTPS server under the test-only name `bench.test`;
//! the same client runs in a sandbox through the proxy and on this machine directly, in the
//! same run: added latency of a small HTTPS request (a new TLS connection each), and download
//! throughput of a 200 MiB file.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use agent_runtime_client::{Language, RunOutcome};
use agent_runtime_proto::v1::{CreateSandboxRequest, EgressPolicy, ExecRequest};
use anyhow::Context as _;

use super::bench::{ms, pct};
use super::call::{sandbox_id, status_err, Host};

/// Bytes of the throughput download.
const BIG: u64 = 200 << 20;

const SERVER: &str = r#"
import http.server, ssl, sys
SMALL = b"x" * 64
BIG = int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        size = BIG if self.path == "/big" else len(SMALL)
        self.send_response(200)
        self.send_header("content-length", str(size))
        self.send_header("connection", "close")
        self.end_headers()
        if self.path != "/big":
            self.wfile.write(SMALL); return
        chunk = b"x" * (1 << 20)
        left = size
        while left > 0:
            n = min(left, len(chunk)); self.wfile.write(chunk[:n]); left -= n
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

const CLIENT: &str = r#"
import http.client, json, os, ssl, sys, time, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1]); n = int(sys.argv[2])
ctx = ssl._create_unverified_context()
proxy = os.environ.get("HTTPS_PROXY")
out = []
for _ in range(n):
    t = time.perf_counter()
    if proxy:
        p = urllib.parse.urlsplit(proxy)
        c = http.client.HTTPSConnection(p.hostname, p.port, context=ctx)
        c.set_tunnel(url.hostname, url.port or 443)
    else:
        c = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx)
    c.request("GET", url.path)
    r = c.getresponse(); body = r.read(); c.close()
    assert r.status == 200 and len(body) == 64, (r.status, body[:200])
    out.append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"#;

/// Runs the egress benchmark with `n` samples.
pub async fn run(n: usize) -> anyhow::Result<()> {
    let dir =
        std::env::temp_dir().join(format!("agent-runtime-egress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, n).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bench.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .context("running openssl (apt install openssl)")?;
    anyhow::ensure!(st.success(), "openssl could not make a test certificate");
    let mut server = tokio::process::Command::new("python3")
        .args(["-c", SERVER])
        .arg(&cert)
        .arg(&key)
        .arg(BIG.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the python3 HTTPS server")?;
    let mut line = String::new();
    let stdout = server.stdout.take().context("server stdout")?;
    let mut reader = tokio::io::BufReader::new(stdout);
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await?;
    let port: u16 = line.trim().parse().context("server port")?;

    let instance = format!("bench-egress-{}", std::process::id());
    let mut host = std::process::Command::new(std::env::current_exe()?)
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "none",
            "--cleanup-on-exit",
            "--egress-max-bytes",
            "0",
            "--warm-contexts",
            "0",
        ])
        .args(["--instance", &instance])
        .arg("--egress-test-resolve")
        .arg(format!("bench.test=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a private host")?;
    let addr = {
        let stderr = host.stderr.take().context("host stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = l.split("gRPC listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .context("the private host did not start")?
    };
    let out = bench_in(&format!("http://{addr}"), port, n).await;
    // SIGTERM: the host destroys its sandboxes (--cleanup-on-exit).
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped; no memory involved.
    unsafe { libc::kill(host.id() as i32, libc::SIGTERM) };
    let _ = host.wait();
    out
}

async fn bench_in(addr: &str, port: u16, n: usize) -> anyhow::Result<()> {
    let host = Host::connect(addr).await?;
    let info = host
        .call(CreateSandboxRequest {
            egress: Some(EgressPolicy {
                allow_domains: vec!["bench.test".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let id = info.sandbox_id.clone();
    let inside = |code: String| {
        let host = &host;
        let id = id.clone();
        async move {
            let stream = host
                .in_sandbox(sandbox_id(&id)?)
                .call(ExecRequest {
                    language: Language::Shell.to_string(),
                    code,
                    timeout_seconds: 600.0,
                    ..Default::default()
                })
                .await?;
            let out = RunOutcome::collect(stream, 1 << 20)
                .await
                .map_err(status_err)?;
            anyhow::ensure!(
                out.success(),
                "in the sandbox: {}{}",
                out.stdout,
                out.stderr
            );
            Ok::<String, anyhow::Error>(out.stdout)
        }
    };
    let client_sh = format!("cat > /tmp/client.py <<'EOF'\n{CLIENT}\nEOF\n");
    inside(client_sh.clone()).await?;
    // One warm-up request each way, then n.
    inside("python3 /tmp/client.py https://bench.test/small 1".into()).await?;
    let proxied: Vec<f64> = serde_json::from_str(
        &inside(format!(
            "python3 /tmp/client.py https://bench.test/small {n}"
        ))
        .await?,
    )?;
    // The baseline: the same client, in a container of the same image and limits, without the
    // proxy (host network, so it reaches the loopback server directly).
    let image = info.image.clone();
    let direct: Vec<f64> = serde_json::from_str(
        &baseline(
            &image,
            &format!("{client_sh}python3 /tmp/client.py https://127.0.0.1:{port}/small 1 >/dev/null && python3 /tmp/client.py https://127.0.0.1:{port}/small {n}"),
        )
        .await?,
    )?;
    let speed = "curl -ks -o /dev/null -w '%{speed_download}' https://bench.test/big";
    let proxied_bps: f64 = inside(speed.into()).await?.trim().parse()?;
    let direct_bps: f64 = baseline(
        &image,
        &format!("curl -ks -o /dev/null -w '%{{speed_download}}' https://127.0.0.1:{port}/big"),
    )
    .await?
    .trim()
    .parse()?;

    let sorted = |v: &[f64]| {
        let mut d: Vec<Duration> = v
            .iter()
            .map(|m| Duration::from_secs_f64(m / 1000.0))
            .collect();
        d.sort();
        d
    };
    let (p, d) = (sorted(&proxied), sorted(&direct));
    println!("egress proxy (n = {n}; loopback HTTPS server, new TLS connection per request)");
    println!("{:<46} {:>9} {:>9}", "measurement", "p50 ms", "p95 ms");
    println!(
        "{:<46} {:>9.2} {:>9.2}",
        "small HTTPS GET, direct (same image, no proxy)",
        ms(pct(&d, 0.5)),
        ms(pct(&d, 0.95))
    );
    println!(
        "{:<46} {:>9.2} {:>9.2}",
        "small HTTPS GET, sandbox through the proxy",
        ms(pct(&p, 0.5)),
        ms(pct(&p, 0.95))
    );
    println!(
        "{:<46} {:>9.2}",
        "added by the proxy (p50)",
        ms(pct(&p, 0.5)) - ms(pct(&d, 0.5))
    );
    let mib = |bps: f64| bps / f64::from(1u32 << 20);
    println!(
        "200 MiB download: direct {:.0} MiB/s, through the proxy {:.0} MiB/s ({:.0} % of direct)",
        mib(direct_bps),
        mib(proxied_bps),
        100.0 * proxied_bps / direct_bps.max(1.0)
    );
    Ok(())
}

/// Runs `code` in a container of `image` with a sandbox's limits but the host's network: the
/// same client as in the sandbox, without the proxy.
async fn baseline(image: &str, code: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "host",
            "--user",
            "1000:1000",
            "--cpus",
            "1",
        ])
        .args([
            "--memory",
            "512m",
            "--tmpfs",
            "/tmp",
            "--entrypoint",
            "sh",
            image,
            "-c",
            code,
        ])
        .output()
        .await
        .context("running the baseline container")?;
    anyhow::ensure!(
        out.status.success(),
        "baseline container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
