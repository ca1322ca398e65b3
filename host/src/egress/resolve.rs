//! Resolving and dialling for the egress proxy: every address a name resolves to is checked
//! (`addr.rs`) and only a checked address is ever dialled. The one exception is the test-only
//! override map (`serve --egress-test-resolve NAME=ADDR`), the only way a loopback destination
//! can be reached, and only under the exact names the operator listed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::addr::refusal;
use super::policy::normalize;

/// Longest a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why nothing was dialled.
#[derive(Debug)]
pub enum DialError {
    /// The destination is never allowed (its address is inward); the line the caller sees.
    Refused(String),
    /// The destination could not be reached.
    Unreachable(String),
}

/// Resolver and dialler.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    /// Test-only: `name` or `name:port` → address to dial instead, unchecked.
    overrides: HashMap<String, SocketAddr>,
}

impl Resolver {
    /// A resolver with the test-only overrides (`NAME=ADDR:PORT` or `NAME:PORT=ADDR:PORT`).
    pub fn with_test_overrides(entries: &[String]) -> Result<Self, String> {
        let mut overrides = HashMap::new();
        for entry in entries {
            let (name, addr) = entry
                .split_once('=')
                .ok_or_else(|| format!("--egress-test-resolve {entry:?}: use NAME=IP:PORT"))?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| format!("--egress-test-resolve {entry:?}: {addr:?} is not IP:PORT"))?;
            overrides.insert(normalize(name), addr);
        }
        Ok(Self { overrides })
    }

    /// Whether any test override is configured (the host logs it loudly).
    pub fn has_overrides(&self) -> bool {
        !self.overrides.is_empty()
    }

    /// Opens a connection to `host:port`, refusing inward addresses.
    pub async fn dial(&self, host: &str, port: u16) -> Result<(TcpStream, SocketAddr), DialError> {
        let name = normalize(host);
        let forced = self
            .overrides
            .get(&format!("{name}:{port}"))
            .or_else(|| self.overrides.get(&name));
        if let Some(addr) = forced {
            return connect(&name, *addr).await;
        }
        let candidates: Vec<SocketAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        return Err(DialError::Unreachable(format!(
                            "cannot resolve {name}: {e}"
                        )))
                    }
                    Err(_) => {
                        return Err(DialError::Unreachable(format!(
                            "cannot resolve {name}: no answer within {}s",
                            RESOLVE_TIMEOUT.as_secs()
                        )))
                    }
                }
            }
        };
        let mut refused = None;
        let mut last_error = None;
        for addr in candidates {
            // An IPv4-mapped IPv6 address is judged (and dialled) as the IPv4 address it is.
            let addr = match addr.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
                    None => addr,
                },
                IpAddr::V4(_) => addr,
            };
            if let Some(why) = refusal(addr.ip()) {
                refused.get_or_insert_with(|| {
                    let via = if name == addr.ip().to_string() {
                        String::new()
                    } else {
                        format!(" resolves to {} which", addr.ip())
                    };
                    format!(
                        "blocked by the sandbox's egress policy: {name}{via} is {why}; \
                         loopback, private, link-local, CGNAT, multicast and metadata addresses \
                         are refused under every policy"
                    )
                });
                continue;
            }
            match connect(&name, addr).await {
                Ok(ok) => return Ok(ok),
                Err(e) => last_error = Some(e),
            }
        }
        match (refused, last_error) {
            (_, Some(e)) => Err(e),
            (Some(why), None) => Err(DialError::Refused(why)),
            (None, None) => Err(DialError::Unreachable(format!(
                "cannot resolve {name}: no addresses"
            ))),
        }
    }
}

async fn connect(name: &str, addr: SocketAddr) -> Result<(TcpStream, SocketAddr), DialError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok((stream, addr))
        }
        Ok(Err(e)) => Err(DialError::Unreachable(format!(
            "cannot connect to {name} ({addr}): {e}"
        ))),
        Err(_) => Err(DialError::Unreachable(format!(
            "cannot connect to {name} ({addr}): no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inward_destinations_are_refused_before_dialling() {
        let r = Resolver::default();
        for host in [
            "127.0.0.1",
            "localhost",
            "2130706433",
            "0x7f.1",
            "[::1]",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
        ] {
            match r.dial(host, 80).await {
                Err(DialError::Refused(why)) => assert!(why.contains("egress policy"), "{why}"),
                other => panic!("{host}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn overrides_reach_loopback_under_their_exact_name_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let addr = listener.local_addr().expect("test setup");
        let r =
            Resolver::with_test_overrides(&[format!("allowed.test={addr}")]).expect("test setup");
        assert!(r.dial("Allowed.Test.", 443).await.is_ok());
        assert!(matches!(
            r.dial("x.allowed.test", 443).await,
            Err(DialError::Unreachable(_))
        ));
        assert!(Resolver::with_test_overrides(&["nope".into()]).is_err());
    }
}
