//! The `Egress` service as the host uses it: the test plays the host (Listen with the sandbox's
//! proof, Carry of each offer) and the processes in the sandbox (TCP clients of the proxy
//! address). Loopback only; nothing leaves the machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_proto::auth::{client_handshake, Secret};
use agent_runtime_proto::v1::egress_client::EgressClient;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    BrowserGotoRequest, CreateContextRequest, EgressDenial, EgressFrame, EgressListenRequest,
    EgressOffer, RunCodeRequest,
};
use anyhow::{bail, Context as _};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

use crate::support::{self, noise, request, sha256, HUNG};

const ID: &str = "sb-egress000001";
/// The largest frame sandboxd sends (its read size).
const CHUNK: usize = 64 << 10;
const NOT_CONNECTED: &str = "the host's egress proxy is not connected";
const REASON: &str =
    "blocked by the sandbox's egress policy: evil.test is not in allow_domains [allowed.test]";

/// A sandboxd started as the host starts it: with a secret, the egress proxy on a free port.
struct Sandboxd {
    child: Child,
    dir: tempfile::TempDir,
    secret: Secret,
}

impl Drop for Sandboxd {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to the daemon this struct started (and has not reaped).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandboxd {
    /// Starts with `--egress-listen 127.0.0.1:0` and the given extra environment.
    async fn start(env: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret = Secret::generate()?;
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, secret.to_hex())?;
        std::fs::create_dir_all(dir.path().join("ws"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandboxd"));
        cmd.args([
            "--listen",
            "none",
            "--egress-listen",
            "127.0.0.1:0",
            "--socket",
        ])
        .arg(dir.path().join("d.sock"))
        .arg("--workspace")
        .arg(dir.path().join("ws"))
        .env("SANDBOXD_SECRET_FILE", &secret_file)
        .env("SANDBOX_ID", ID)
        .env("RUST_LOG", "warn")
        .env("PLAYWRIGHT_DRIVER_PATH", "/nonexistent/playwright-driver")
        .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting sandboxd")?;
        let daemon = Self { child, dir, secret };
        let deadline = Instant::now() + HUNG;
        while !daemon.socket().exists() {
            if Instant::now() > deadline {
                bail!("hung: sandboxd did not create its socket (a start-up guard)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(daemon)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("d.sock")
    }

    fn proof(&self) -> String {
        self.secret.egress_proof(ID)
    }

    /// A channel over the socket that passes the host's handshake.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let (path, secret) = (self.socket(), self.secret.clone());
        Ok(Endpoint::try_from("http://sandbox.local")?
            .connect_with_connector(tower::service_fn(move |_| {
                let (path, secret) = (path.clone(), secret.clone());
                async move {
                    let mut s = tokio::net::UnixStream::connect(path).await?;
                    client_handshake(&mut s, &secret, ID, Duration::from_secs(5))
                        .await
                        .map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
                        })?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await?)
    }

    async fn egress(&self) -> anyhow::Result<EgressClient<Channel>> {
        Ok(EgressClient::new(self.channel().await?))
    }

    async fn sandbox(&self) -> anyhow::Result<SandboxClient<Channel>> {
        Ok(SandboxClient::new(self.channel().await?))
    }

    /// Opens Listen with the right proof; returns the offers after `ready` and the proxy's
    /// address (`127.0.0.1:PORT`) that `ready` named.
    async fn listen(&self, proxy_env: bool) -> anyhow::Result<(Streaming<EgressOffer>, String)> {
        let mut offers = self
            .egress()
            .await?
            .listen(EgressListenRequest {
                proof: self.proof(),
                proxy_env,
            })
            .await?
            .into_inner();
        let ready = next_offer(&mut offers).await?;
        assert_eq!(ready.conn_id, 0, "the first offer is `ready`: {ready:?}");
        let addr = ready
            .proxy_url
            .strip_prefix("http://")
            .with_context(|| format!("proxy_url {:?} is not http://", ready.proxy_url))?
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        Ok((offers, addr))
    }

    /// Takes offer `conn_id`: the host's frame sender (the first frame already sent) and
    /// sandboxd's frames.
    async fn carry(
        &self,
        conn_id: u64,
        proof: String,
    ) -> Result<(mpsc::Sender<EgressFrame>, Streaming<EgressFrame>), tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        let first = EgressFrame {
            conn_id,
            proof,
            ..EgressFrame::default()
        };
        tx.send(first)
            .await
            .map_err(|_| tonic::Status::internal("the frame queue closed"))?;
        let mut client = self
            .egress()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let frames = client.carry(ReceiverStream::new(rx)).await?.into_inner();
        Ok((tx, frames))
    }
}

/// The next offer, failing on an error, the stream's end or a hang.
async fn next_offer(offers: &mut Streaming<EgressOffer>) -> anyhow::Result<EgressOffer> {
    match tokio::time::timeout(HUNG, offers.message()).await {
        Ok(Ok(Some(offer))) => Ok(offer),
        Ok(Ok(None)) => bail!("the Listen stream ended"),
        Ok(Err(status)) => bail!("the Listen stream failed: {status}"),
        Err(_) => bail!("hung waiting for an offer"),
    }
}

/// Everything a connection receives until the other side closes it.
async fn read_to_end(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut all = Vec::new();
    tokio::time::timeout(HUNG, stream.read_to_end(&mut all))
        .await
        .context("hung reading a proxy connection")??;
    Ok(all)
}

/// A process's plain-HTTP request through the proxy, and everything it got back.
async fn ask(addr: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await?;
    Ok(String::from_utf8_lossy(&read_to_end(&mut s).await?).into_owned())
}

/// The body of a 503 answer, or a description of what came instead.
fn body_503(answer: &str) -> &str {
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 503 Service Unavailable\r\n") => body,
        _ => answer,
    }
}

#[tokio::test]
async fn the_host_takes_a_connection_and_bytes_flow_both_ways() -> anyhow::Result<()> {
    let d = Sandboxd::start(&[]).await?;
    let (mut offers, addr) = d.listen(false).await?;
    let mut process = TcpStream::connect(&addr).await?;
    let offer = next_offer(&mut offers).await?;
    assert!(
        offer.conn_id >= 1 && offer.proxy_url.is_empty(),
        "{offer:?}"
    );
    let (to_process, mut from_process) = d.carry(offer.conn_id, d.proof()).await?;

    // Process → host: 1 MiB, then the process half-closes; sandboxd's stream ends.
    let up = noise(1 << 20, 7);
    let (mut read_half, mut write_half) = process.split();
    let send = async {
        write_half.write_all(&up).await?;
        write_half.shutdown().await?;
        anyhow::Ok(())
    };
    let receive = async {
        let mut got = Vec::new();
        while let Some(frame) = tokio::time::timeout(HUNG, from_process.message())
            .await
            .context("hung reading Carry")??
        {
            assert!(
                frame.data.len() <= CHUNK,
                "a {} byte frame",
                frame.data.len()
            );
            got.extend_from_slice(&frame.data);
        }
        anyhow::Ok(got)
    };
    let ((), got) = tokio::try_join!(send, receive)?;
    assert_eq!(got.len(), up.len());
    assert_eq!(sha256(&got), sha256(&up));

    // Host → process: 1 MiB in 64 KiB frames, then the host ends its stream; the process reads
    // it all and then EOF.
    let down = noise(1 << 20, 11);
    let send = async {
        for chunk in down.chunks(CHUNK) {
            to_process
                .send(EgressFrame {
                    data: chunk.to_vec().into(),
                    ..EgressFrame::default()
                })
                .await?;
        }
        drop(to_process);
        anyhow::Ok(())
    };
    let receive = async {
        let mut got = Vec::new();
        tokio::time::timeout(HUNG, read_half.read_to_end(&mut got))
            .await
            .context("hung reading the process side")??;
        anyhow::Ok(got)
    };
    let ((), got) = tokio::try_join!(send, receive)?;
    assert_eq!(got.len(), down.len());
    assert_eq!(sha256(&got), sha256(&down));
    Ok(())
}

#[tokio::test]
async fn proofs_are_checked_and_an_offer_is_taken_once() -> anyhow::Result<()> {
    let d = Sandboxd::start(&[]).await?;
    let mut egress = d.egress().await?;
    let other = Secret::generate()?.egress_proof(ID);
    for proof in [String::new(), other.clone(), "not hex".into()] {
        let refused = egress
            .listen(EgressListenRequest {
                proof,
                proxy_env: true,
            })
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
    }

    let (mut offers, addr) = d.listen(false).await?;
    let _process = TcpStream::connect(&addr).await?;
    let offer = next_offer(&mut offers).await?;
    let wrong = d.carry(offer.conn_id, other).await.err().map(|s| s.code());
    assert_eq!(wrong, Some(Code::PermissionDenied));
    let unknown = d.carry(offer.conn_id + 1000, d.proof()).await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound));
    let (_tx, _frames) = d.carry(offer.conn_id, d.proof()).await?;
    let again = d.carry(offer.conn_id, d.proof()).await;
    assert_eq!(again.err().map(|s| s.code()), Some(Code::NotFound));

    // A daemon without a secret (development) has no host to prove: every call is refused.
    let dev = support::Daemon::start().await?;
    let mut egress = EgressClient::new(dev.channel().await?);
    let refused = egress
        .listen(EgressListenRequest {
            proof: d.proof(),
            proxy_env: true,
        })
        .await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(Code::FailedPrecondition)
    );
    Ok(())
}

#[tokio::test]
async fn without_a_listen_the_proxy_answers_503_itself() -> anyhow::Result<()> {
    let d = Sandboxd::start(&[]).await?;
    // The address is learnt from a Listen, which is then hung up.
    let (offers, addr) = d.listen(false).await?;
    drop(offers);
    // The daemon learns of the hang-up when the stream is dropped on its side; until then an
    // offer may go to the old stream (and would be answered when it expires): ask again.
    let deadline = Instant::now() + HUNG;
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(3), ask(&addr)).await;
        if let Ok(answer) = answer {
            let answer = answer?;
            assert!(
                answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{answer}"
            );
            assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
            assert_eq!(body_503(&answer), format!("{NOT_CONNECTED}\n"));
            break;
        }
        assert!(Instant::now() < deadline, "hung: no 503 without a Listen");
    }
    Ok(())
}

#[tokio::test]
async fn a_newer_listen_replaces_the_older() -> anyhow::Result<()> {
    let d = Sandboxd::start(&[]).await?;
    let (mut older, addr) = d.listen(false).await?;
    let (mut newer, _) = d.listen(false).await?;
    let ended = tokio::time::timeout(HUNG, older.message()).await?;
    assert!(
        matches!(ended, Ok(None)),
        "the older stream should end cleanly: {ended:?}"
    );
    let _process = TcpStream::connect(&addr).await?;
    let offer = next_offer(&mut newer).await?;
    assert!(offer.conn_id >= 1);
    Ok(())
}

#[tokio::test]
async fn an_offer_not_taken_is_answered_and_closed() -> anyhow::Result<()> {
    let d = Sandboxd::start(&[]).await?;
    let (mut offers, addr) = d.listen(false).await?;
    let mut process = TcpStream::connect(&addr).await?;
    process
        .write_all(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        .await?;
    let offer = next_offer(&mut offers).await?;
    // Not taken: after 10 s sandboxd answers and closes.
    let answer = String::from_utf8_lossy(&read_to_end(&mut process).await?).into_owned();
    assert_eq!(
        body_503(&answer),
        "the host's egress proxy did not take the connection within 10 s\n"
    );
    let late = d.carry(offer.conn_id, d.proof()).await;
    assert_eq!(late.err().map(|s| s.code()), Some(Code::NotFound));
    Ok(())
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_until_one_closes() -> anyhow::Result<()> {
    const MAX_OPEN: usize = 512;
    let d = Sandboxd::start(&[]).await?;
    let (mut offers, addr) = d.listen(false).await?;
    let mut open = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..MAX_OPEN {
        open.push(TcpStream::connect(&addr).await?);
        ids.push(next_offer(&mut offers).await?.conn_id);
    }
    let answer = ask(&addr).await?;
    assert!(
        body_503(&answer).starts_with("too many connections through the egress proxy at once"),
        "{answer}"
    );
    // One carried and closed by both sides frees its place.
    let (to_process, mut from_process) = d.carry(ids[0], d.proof()).await?;
    drop(to_process);
    open[0].shutdown().await?;
    assert_eq!(read_to_end(&mut open[0]).await?, b"");
    while from_process.message().await?.is_some() {}
    drop(open.remove(0));
    // The permit is released once both pumps are done; a new connection gets an offer then.
    let deadline = Instant::now() + HUNG;
    loop {
        let mut s = TcpStream::connect(&addr).await?;
        let offered = tokio::time::timeout(Duration::from_secs(2), offers.message()).await;
        if let Ok(offer) = offered {
            assert!(offer?.is_some_and(|o| o.conn_id > ids[MAX_OPEN - 1]));
            break;
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        assert!(
            Instant::now() < deadline,
            "hung: the cap never freed a place"
        );
    }
    Ok(())
}

/// The proxy variables of an exec, as `NAME=value` lines, sorted.
async fn exec_proxy_vars(d: &Sandboxd) -> anyhow::Result<Vec<String>> {
    let mut client = d.sandbox().await?;
    let out = support::run(
        &mut client,
        request(
            "bash",
            "env | grep -E '^(HTTPS?|ALL|NO|https?|all|no)_(PROXY|proxy)=' | sort; true",
        ),
    )
    .await?;
    assert_eq!(out.exit()?.code, 0, "{}", out.stderr());
    Ok(out.stdout().lines().map(str::to_string).collect())
}

/// `HTTPS_PROXY` and `NO_PROXY` as a context sees them (`None None` when unset).
async fn context_proxy_vars(d: &Sandboxd) -> anyhow::Result<String> {
    let mut client = d.sandbox().await?;
    let context = client
        .create_context(CreateContextRequest::default())
        .await?
        .into_inner();
    let mut stream = client
        .run_code(RunCodeRequest {
            context_id: context.context_id,
            code: "import os; print(os.environ.get('HTTPS_PROXY'), os.environ.get('no_proxy'))"
                .into(),
            ..RunCodeRequest::default()
        })
        .await?
        .into_inner();
    let mut fold = agent_runtime_client::RunOutcome::default();
    while let Some(event) = stream.next().await {
        fold.add(&event?);
    }
    Ok(fold.stdout.trim().to_string())
}

#[tokio::test]
async fn proxy_variables_follow_the_latest_listen() -> anyhow::Result<()> {
    // A spare kernel is started before any Listen, without proxy variables.
    let d = Sandboxd::start(&[("SANDBOXD_PREWARM_KERNEL", "1".as_ref())]).await?;
    assert_eq!(exec_proxy_vars(&d).await?, Vec::<String>::new());

    let (_offers, addr) = d.listen(true).await?;
    let url = format!("http://{addr}");
    let mut expected: Vec<String> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .iter()
    .map(|k| format!("{k}={url}"))
    .chain([
        "NO_PROXY=localhost,127.0.0.1".into(),
        "no_proxy=localhost,127.0.0.1".into(),
    ])
    .collect();
    expected.sort();
    assert_eq!(exec_proxy_vars(&d).await?, expected);
    // The spare kernel, started before, becomes a context that has them.
    assert_eq!(
        context_proxy_vars(&d).await?,
        format!("{url} localhost,127.0.0.1")
    );

    // The policy `none`: a newer Listen without proxy variables; the spare started meanwhile
    // (with them) loses them too.
    let (_offers, _) = d.listen(false).await?;
    assert_eq!(exec_proxy_vars(&d).await?, Vec::<String>::new());
    assert_eq!(context_proxy_vars(&d).await?, "None None");
    Ok(())
}

#[tokio::test]
async fn an_extra_ca_reaches_every_child() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pem = "-----BEGIN CERTIFICATE-----\nTUlJQnRlc3RjYQ==\n-----END CERTIFICATE-----\n";
    let ca = dir.path().join("extra.pem");
    std::fs::write(&ca, format!("subject=test CA\n{pem}"))?;
    let (tmp, home) = (dir.path().join("tmp"), dir.path().join("home"));
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(&home)?;
    let d = Sandboxd::start(&[
        ("SANDBOXD_EXTRA_CA", ca.as_os_str()),
        ("TMPDIR", tmp.as_os_str()),
        ("HOME", home.as_os_str()),
    ])
    .await?;
    let mut client = d.sandbox().await?;
    let out = support::run(
        &mut client,
        request(
            "bash",
            "for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO PIP_CERT \
             NODE_EXTRA_CA_CERTS; do echo \"$v=${!v}\"; done; stat -c %a \"$SSL_CERT_FILE\"",
        ),
    )
    .await?;
    assert_eq!(out.exit()?.code, 0, "{}", out.stderr());
    let bundle = tmp.join(".agent-runtime/ca-bundle.pem");
    let mut lines: Vec<String> = out.stdout().lines().map(str::to_string).collect();
    assert_eq!(lines.pop().as_deref(), Some("644"));
    for line in &lines {
        assert_eq!(
            line.split_once('=')
                .map(|(_, v)| Path::new(v).to_path_buf()),
            Some(bundle.clone()),
            "{line}"
        );
    }
    assert_eq!(lines.len(), 6);
    let text = std::fs::read_to_string(&bundle)?;
    assert!(text.ends_with(pem), "the bundle ends with the extra CA");
    if let Ok(system) = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt") {
        assert!(
            text.starts_with(&system),
            "the bundle starts with the system CAs"
        );
    }
    Ok(())
}

/// The Playwright driver `agent-runtime image build` staged (or `$AGENT_RUNTIME_TEST_DRIVER`).
fn staged_driver() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("AGENT_RUNTIME_TEST_DRIVER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let state = std::env::var_os("AGENT_RUNTIME_STATE_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/var/lib/agent-runtime"), PathBuf::from);
    let cache = state.join("cache");
    std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("driver-") && !n.contains(".partial-"))
        })
        .filter_map(|e| {
            let done = e.path().join("complete").metadata().ok()?.modified().ok()?;
            let stage = e.path().join("stage");
            stage.join("node").is_file().then_some((done, stage))
        })
        .max_by_key(|(done, _)| *done)
        .map(|(_, stage)| stage)
        .with_context(|| {
            format!(
                "no staged Playwright driver in {}/driver-*/stage: run `agent-runtime image \
                 build` (and .ci/setup for Chromium), or set AGENT_RUNTIME_TEST_DRIVER",
                cache.display()
            )
        })
}

/// Plays the host's refusing proxy: every offer is taken, answered with a 403 carrying the
/// policy header and reported as a denial of `evil.test`.
async fn refuse_everything(d: &Sandboxd, mut offers: Streaming<EgressOffer>) {
    while let Ok(Some(offer)) = offers.message().await {
        let Ok((tx, mut frames)) = d.carry(offer.conn_id, d.proof()).await else {
            continue;
        };
        tokio::spawn(async move {
            // The request (CONNECT or absolute-form), read until its head is complete.
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match frames.message().await {
                    Ok(Some(f)) => head.extend_from_slice(&f.data),
                    _ => return,
                }
            }
            let body = format!("{REASON}\n");
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nX-Agent-Runtime-Egress: denied\r\nContent-Type: \
                 text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tx
                .send(EgressFrame {
                    data: answer.into_bytes().into(),
                    denial: Some(EgressDenial {
                        host: "evil.test".into(),
                        port: 443,
                        reason: REASON.into(),
                    }),
                    ..EgressFrame::default()
                })
                .await;
            drop(tx);
            while let Ok(Some(_)) = frames.message().await {}
        });
    }
}

/// A one-page HTTP server on the machine's loopback, for the browser to reach directly.
async fn serve_page() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = "<html><head><title>inside</title></head><body>hi</body></html>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok((url, server))
}

#[tokio::test]
async fn browser_goto_to_a_refused_site_says_why_and_loopback_stays_direct() -> anyhow::Result<()> {
    let driver = staged_driver()?;
    let d = Sandboxd::start(&[("PLAYWRIGHT_DRIVER_PATH", driver.as_os_str())]).await?;
    let (offers, _) = d.listen(true).await?;
    let (inside, server) = serve_page().await?;
    let calls = async {
        let mut client = d.sandbox().await?;
        // A server inside the sandbox (loopback) loads without the proxy, which refuses all.
        let page = client
            .browser_goto(BrowserGotoRequest {
                url: inside.clone(),
                ..BrowserGotoRequest::default()
            })
            .await?
            .into_inner();
        assert_eq!(page.title, "inside", "{page:?}");
        let mut refused = Vec::new();
        for url in ["http://evil.test/page", "https://evil.test/"] {
            let got = client
                .browser_goto(BrowserGotoRequest {
                    url: url.into(),
                    ..BrowserGotoRequest::default()
                })
                .await;
            refused.push((url, got.err().map(|s| (s.code(), s.message().to_string()))));
        }
        // The next call after a refusal is not cut short by Chromium's error page.
        let page = client
            .browser_goto(BrowserGotoRequest {
                url: inside.clone(),
                ..BrowserGotoRequest::default()
            })
            .await?
            .into_inner();
        assert_eq!(page.title, "inside", "{page:?}");
        anyhow::Ok(refused)
    };
    let refused = tokio::select! {
        () = refuse_everything(&d, offers) => bail!("the Listen stream ended"),
        refused = calls => refused?,
    };
    server.abort();
    for (url, got) in refused {
        // Through a CONNECT tunnel (https) Chromium sees only a failed tunnel; plain http shows
        // the 403 page: both say the host's reason.
        assert_eq!(
            got,
            Some((Code::PermissionDenied, REASON.to_string())),
            "{url}"
        );
    }
    Ok(())
}
