//! The `Egress` gRPC service: the host's calls, each proving the sandbox's secret, so that code
//! inside a pod that reaches sandboxd's TCP port cannot take the host's place.

use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::v1::egress_server::Egress;
use agent_runtime_proto::v1::{EgressFrame, EgressListenRequest};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::carry;
use super::env;
use super::error::EgressError;
use super::offers::{OfferStream, Offers};
use super::proxy;
use crate::cli::Listen;
use crate::identity::Identity;

/// How long Carry waits for the host's first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(10);

/// The `Egress` service.
#[derive(Clone)]
pub struct EgressService {
    /// `None` when the proxy does not listen.
    offers: Option<Arc<Offers>>,
    identity: Option<Identity>,
}

impl EgressService {
    /// The service for the proxy's `offers` (`None`: the proxy is off), checking proofs against
    /// `identity` (`None`: development mode, where every call is refused).
    pub fn new(offers: Option<Arc<Offers>>, identity: Option<Identity>) -> Self {
        Self { offers, identity }
    }

    /// Binds the proxy (`listen`), starts accepting on it until `stop` is cancelled, and returns
    /// the service the host calls. An address that cannot be bound leaves egress off (logged):
    /// the rest of the daemon works without it, and Listen says so.
    pub async fn start(
        listen: Listen,
        identity: Option<Identity>,
        stop: CancellationToken,
    ) -> Self {
        let Listen::On(addr) = listen else {
            tracing::info!("egress proxy off (--egress-listen none)");
            return Self::new(None, identity);
        };
        let (listener, url) = match proxy::bind(addr).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "egress proxy off: cannot listen on its address");
                return Self::new(None, identity);
            }
        };
        tracing::info!(proxy_url = %url, "egress proxy listening");
        let offers = Arc::new(Offers::new(url, stop));
        tokio::spawn(proxy::serve(listener, offers.clone()));
        Self::new(Some(offers), identity)
    }

    /// The offers, once the caller proved it is the host.
    fn authorize(&self, proof: &str) -> Result<&Arc<Offers>, EgressError> {
        let identity = self.identity.as_ref().ok_or(EgressError::NoIdentity)?;
        if !identity.verify_egress(proof) {
            return Err(EgressError::BadProof);
        }
        self.offers.as_ref().ok_or(EgressError::ProxyOff)
    }
}

#[tonic::async_trait]
impl Egress for EgressService {
    type ListenStream = OfferStream;

    async fn listen(
        &self,
        request: Request<EgressListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        let request = request.into_inner();
        let offers = self.authorize(&request.proof)?;
        env::set_proxy_env(request.proxy_env);
        tracing::info!(
            proxy_env = request.proxy_env,
            "the host listens for egress connections"
        );
        Ok(Response::new(offers.listen()))
    }

    type CarryStream = carry::CarryStream;

    async fn carry(
        &self,
        request: Request<Streaming<EgressFrame>>,
    ) -> Result<Response<Self::CarryStream>, Status> {
        if self.identity.is_none() {
            return Err(EgressError::NoIdentity.into());
        }
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(FIRST_FRAME_WAIT, inbound.next()).await {
            Ok(Some(frame)) => frame?,
            Ok(None) | Err(_) => return Err(EgressError::NoFirstFrame.into()),
        };
        let offers = self.authorize(&first.proof)?;
        let conn = offers
            .take(first.conn_id)
            .ok_or(EgressError::NotOffered(first.conn_id))?;
        let stream = carry::start(conn, first, inbound, offers.stop());
        Ok(Response::new(stream))
    }
}
