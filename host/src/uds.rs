//! gRPC channels to a sandbox's daemon, over a unix socket or TCP.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::backend::Endpoint;

/// Opens a channel to `endpoint`, connecting eagerly so that a failure shows now.
pub async fn connect(
    endpoint: &Endpoint,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector below dials the socket.
            TonicEndpoint::from_static("http://sandbox.local")
                .connect_timeout(connect_timeout)
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
        Endpoint::Tcp(addr) => {
            TonicEndpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(connect_timeout)
                .connect()
                .await
        }
    }
}
