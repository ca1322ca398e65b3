//! The daemon with a secret (as the host starts it): every connection, on the unix socket and on
//! TCP, must pass the host's handshake before gRPC; `Hello` proves the secret over a nonce.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_proto::auth::{client_handshake, random, Secret, KEY_LEN};
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::HelloRequest;
use anyhow::{bail, Context as _};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

const ID: &str = "sb-0123456789ab";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(39999)
}

fn start(dir: &Path, secret: &Secret, port: u16) -> anyhow::Result<Daemon> {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, secret.to_hex())?;
    std::fs::create_dir_all(dir.join("ws"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_sandboxd"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--socket")
        .arg(dir.join("d.sock"))
        .arg("--workspace")
        .arg(dir.join("ws"))
        .env("SANDBOXD_SECRET_FILE", &secret_file)
        .env("SANDBOX_ID", ID)
        .env("RUST_LOG", "error")
        .env("PLAYWRIGHT_DRIVER_PATH", "/nonexistent/playwright-driver")
        .stdin(Stdio::null())
        .spawn()
        .context("starting sandboxd")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("d.sock").exists() {
        if Instant::now() > deadline {
            bail!("hung: sandboxd did not create its socket (a start-up guard)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Daemon(child))
}

/// A channel over TCP that runs the handshake with `secret` for sandbox `id` first.
async fn channel(port: u16, secret: Option<Secret>, id: &'static str) -> anyhow::Result<Channel> {
    Ok(Endpoint::try_from("http://sandbox.local")?
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_| {
            let secret = secret.clone();
            async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                if let Some(secret) = &secret {
                    client_handshake(&mut s, secret, id, Duration::from_secs(2))
                        .await
                        .map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
                        })?;
                }
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await?)
}

#[tokio::test]
async fn only_the_host_handshake_reaches_the_service() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = Secret::generate()?;
    let port = free_port();
    let _daemon = start(dir.path(), &secret, port)?;
    // Wait for the TCP listener too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("hung: no TCP listener (a start-up guard)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The host's handshake: Hello names the sandbox and proves the secret over our nonce.
    let mut client = SandboxClient::new(channel(port, Some(secret.clone()), ID).await?);
    let nonce: [u8; KEY_LEN] = random()?;
    let hello = client
        .hello(HelloRequest {
            nonce: nonce.to_vec(),
        })
        .await?
        .into_inner();
    assert_eq!(hello.sandbox_id, ID);
    assert!(secret.verify_hello(&nonce, ID, &hello.proof));

    // Plain gRPC (a process in the sandbox knocking on the port) gets nothing.
    let plain = async {
        let mut c = SandboxClient::new(channel(port, None, ID).await?);
        let mut req = tonic::Request::new(HelloRequest::default());
        req.set_timeout(Duration::from_secs(3));
        anyhow::Ok(c.hello(req).await?)
    };
    // The outer timeout only stops a client left hanging; refused or hung, it was not served.
    let refused = tokio::time::timeout(Duration::from_secs(10), plain).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a client without the handshake was served"
    );

    // The wrong secret, or the right one for another sandbox, fails the handshake.
    let other = Secret::generate()?;
    assert!(channel(port, Some(other), ID).await.is_err());
    assert!(channel(port, Some(secret.clone()), "sb-ffffffffffff")
        .await
        .is_err());

    // The unix socket asks the same.
    let sock = dir.path().join("d.sock");
    let mut s = tokio::net::UnixStream::connect(&sock).await?;
    client_handshake(&mut s, &secret, ID, Duration::from_secs(2)).await?;
    Ok(())
}
