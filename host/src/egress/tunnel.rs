//! The host end of `Egress.Listen`/`Carry`: one listener per sandbox (re-opened when it drops
//! while the sandbox lives), one Carry stream per proxy connection, served by the HTTP proxy
//! (`proxy.rs`) through a `Pipe` (`pipe.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::v1::egress_client::EgressClient;
use agent_runtime_proto::v1::{EgressFrame, EgressListenRequest, EgressOffer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, PollSender};
use tonic::Streaming;

use super::pipe::Pipe;
use super::proxy::{self, Conn};
use super::{Egress, SandboxEgress};

/// Longest the daemon may take to answer a Listen or a Carry.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

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
    // A connection refused for a cap carries only its refusal, which must get through.
    let cap = if over.is_some() {
        0
    } else {
        egress.config.max_bytes
    };
    let pipe = Pipe::new(
        inbound,
        PollSender::new(frames.clone()),
        sandbox.clone(),
        cap,
        permit,
    );
    let conn = Conn {
        egress,
        sandbox: sandbox.clone(),
        frames,
        refuse: over,
    };
    // After a CONNECT the server returns at once, handing the pipe to the tunnel task, which
    // keeps it (and its place under the caps) until the tunnel closes.
    tokio::select! {
        () = sandbox.stop.cancelled() => {}
        () = proxy::serve(conn, pipe) => {}
    }
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
