//! The proxy's listener inside the sandbox: accepts connections and hands each to [`Offers`]
//! (offered to the host, or answered with a 503 here). It never reads a byte of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::env;
use super::offers::{Conn, Offers};
use super::refuse::{self, Refusal};

/// How long accepting pauses after a failure (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds the proxy's address (`127.0.0.1:0` picks a free port) and returns the listener and the
/// URL processes use to reach it, which is also recorded for their environment.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr).await?;
    let url = url_of(listener.local_addr()?);
    env::set_proxy_url(Some(url.clone()));
    Ok((listener, url))
}

/// The URL of a bound address; an unspecified address is reached on loopback.
fn url_of(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// Accepts proxy connections until `offers`' stop token is cancelled.
pub async fn serve(listener: TcpListener, offers: Arc<Offers>) {
    let stop = offers.stop().clone();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "egress proxy: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match offers.admit() {
            Some(permit) => offers.offer(Conn { stream, permit }),
            None => refuse::spawn(stream, Refusal::TooMany, &stop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_a_reachable_address() {
        let url = |s: &str| url_of(s.parse().expect("address"));
        assert_eq!(url("127.0.0.1:3128"), "http://127.0.0.1:3128");
        assert_eq!(url("0.0.0.0:41000"), "http://127.0.0.1:41000");
        assert_eq!(url("[::]:3128"), "http://[::1]:3128");
    }
}
