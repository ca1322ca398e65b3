//! The host end of `Egress.Listen`/`Carry`: one listener per sandbox (re-opened when it drops
//! while the sandbox lives), one Carry stream per proxy connection, bridged to an in-memory
//! duplex pipe that the HTTP proxy (`proxy.rs`) serves.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::v1::egress_client::EgressClient;
use agent_runtime_proto::v1::{EgressFrame, EgressListenRequest, EgressOffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::proxy::{self, Conn};
use super::{Egress, SandboxEgress};

/// Longest the daemon may take to answer a Listen or a Carry.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes per frame towards the daemon.
const CHUNK: usize = 64 * 1024;
/// Buffer of the in-memory pipe between a Carry stream and the proxy.
const PIPE: usize = 256 * 1024;
/// How long a process may keep its side open after ours closed.
const LINGER: Duration = Duration::from_secs(10);

/// Opens a listener for `sandbox` (replacing the one running), waits for the daemon's `ready`,
/// and keeps it running in the background.
pub(super) async fn listen(
    egress: Arc<Egress>,
    sandbox: Arc<SandboxEgress>,
    proxy_env: bool,
) -> Result<(), String> {
    let token = sandbox.stop.child_token();
    let offers = open(&sandbox, proxy_env).await?;
    if let Some(old) = sandbox
        .listener
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(token.clone())
    {
        old.cancel();
    }
    tokio::spawn(accept(egress, sandbox, offers, proxy_env, token));
    Ok(())
}

async fn open(sandbox: &SandboxEgress, proxy_env: bool) -> Result<Streaming<EgressOffer>, String> {
    let channel = sandbox
        .channel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut client = EgressClient::new(channel);
    let request = EgressListenRequest {
        proof: sandbox.proof.clone(),
        proxy_env,
    };
    let call = async {
        let mut offers = client
            .listen(request)
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        match offers.message().await {
            Ok(Some(ready)) if ready.conn_id == 0 => Ok(offers),
            Ok(Some(_)) => Err("the daemon offered a connection before saying it was ready".into()),
            Ok(None) => Err("the daemon ended the listener at once".into()),
            Err(s) => Err(s.message().to_owned()),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer within {}s", CALL_TIMEOUT.as_secs()))?
}

/// Takes offers until the listener is replaced or the sandbox goes; re-opens it (with backoff)
/// when the daemon's stream ends on its own, e.g. after a transient connection loss.
async fn accept(
    egress: Arc<Egress>,
    sandbox: Arc<SandboxEgress>,
    mut offers: Streaming<EgressOffer>,
    proxy_env: bool,
    token: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let next = tokio::select! {
            () = token.cancelled() => return,
            next = offers.message() => next,
        };
        match next {
            Ok(Some(offer)) => {
                backoff = Duration::from_millis(200);
                tokio::spawn(carry(egress.clone(), sandbox.clone(), offer.conn_id));
            }
            Ok(None) | Err(_) => loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match open(&sandbox, proxy_env).await {
                    Ok(again) => {
                        tracing::info!(sandbox_id = %sandbox.id, "egress listener re-opened");
                        offers = again;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(sandbox_id = %sandbox.id, error = %e, "egress listener still down")
                    }
                }
            },
        }
    }
}

/// Takes connection `conn_id` and serves the proxy on it.
async fn carry(egress: Arc<Egress>, sandbox: Arc<SandboxEgress>, conn_id: u64) {
    let (frames, rx) = mpsc::channel::<EgressFrame>(8);
    let first = EgressFrame {
        conn_id,
        proof: sandbox.proof.clone(),
        ..Default::default()
    };
    if frames.send(first).await.is_err() {
        return;
    }
    let channel = sandbox
        .channel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut client = EgressClient::new(channel);
    let call = client.carry(ReceiverStream::new(rx));
    let inbound = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(sandbox_id = %sandbox.id, conn_id, error = %status, "egress carry refused");
            return;
        }
        Err(_) => return,
    };
    // Over a cap: the proxy still answers (so the process learns why), but refuses every request.
    let over = over_cap(&egress, &sandbox);
    let permit = egress.total.clone().try_acquire_owned().ok();
    let over = over.or_else(|| {
        permit.is_none().then(|| {
            "the host's egress proxy is at its connection limit for all sandboxes; retry shortly"
                .to_owned()
        })
    });
    sandbox.open.fetch_add(1, Ordering::Relaxed);
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (theirs_read, theirs_write) = tokio::io::split(theirs);
    let pump_in = tokio::spawn(pump_in(inbound, theirs_write));
    let pump_out = tokio::spawn(pump_out(theirs_read, frames.clone()));
    let conn = Conn {
        egress,
        sandbox: sandbox.clone(),
        frames,
        refuse: over,
    };
    // The connection lives until both directions are done, not until the HTTP server returns:
    // after a CONNECT the server hands the pipe to the tunnel task and returns at once, and a
    // refusal returns as soon as its response is written. Dropping the daemon's response stream
    // then would cancel the call and lose bytes not yet delivered to the process.
    let mut pump_in = pump_in;
    let mut pump_out = pump_out;
    let finished = async {
        proxy::serve(conn, ours).await;
        // Ends when every holder of our end (the server, a tunnel) is gone; then our frames
        // stop and sandboxd half-closes the process's connection.
        let _ = (&mut pump_out).await;
        // The process closes its side (normally at once); a process that never does is cut.
        let _ = tokio::time::timeout(LINGER, &mut pump_in).await;
    };
    tokio::select! {
        () = sandbox.stop.cancelled() => {}
        () = finished => {}
    }
    pump_in.abort();
    pump_out.abort();
    sandbox.open.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

fn over_cap(egress: &Egress, sandbox: &SandboxEgress) -> Option<String> {
    let open = sandbox.open.load(Ordering::Relaxed);
    if open >= egress.config.max_connections {
        return Some(format!(
            "the sandbox's egress connection limit is reached: {open} proxy connections are open \
             (cap {}); close some and retry",
            egress.config.max_connections
        ));
    }
    let used = sandbox.bytes.load(Ordering::Relaxed);
    let cap = egress.config.max_bytes;
    (cap > 0 && used >= cap).then(|| {
        format!(
            "the sandbox's egress byte limit is reached: {used} of {cap} bytes moved; nothing \
             more leaves this sandbox"
        )
    })
}

/// Daemon → proxy.
async fn pump_in(
    mut inbound: Streaming<EgressFrame>,
    mut to_proxy: tokio::io::WriteHalf<tokio::io::DuplexStream>,
) {
    while let Ok(Some(frame)) = inbound.message().await {
        if !frame.data.is_empty() && to_proxy.write_all(&frame.data).await.is_err() {
            break;
        }
    }
    let _ = to_proxy.shutdown().await;
}

/// Proxy → daemon; ends (dropping its sender) when the proxy closes its end.
async fn pump_out(
    mut from_proxy: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    frames: mpsc::Sender<EgressFrame>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from_proxy.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let frame = EgressFrame {
                    data: buf[..n].to_vec(),
                    ..Default::default()
                };
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
