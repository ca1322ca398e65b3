//! Daemon authentication across the host↔sandbox boundary (DESIGN.md §2.1).
//!
//! Every sandbox has a secret the host derives from its own key and hands to sandboxd in a file
//! only the daemon's uid can read. Before any HTTP/2 byte flows on a connection, the host sends a
//! fresh nonce and the daemon answers with its sandbox id and an HMAC over the nonce and that id.
//! The host refuses the connection unless both match the sandbox it meant to reach, so a socket
//! swapped for another sandbox's (or a process that took over a TCP port) is never spoken to. The
//! same exchange works on a unix socket and over TCP. `Hello` repeats the proof over its own
//! nonce, so the check is also visible to a gRPC client.

use std::io;
use std::time::Duration;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of a sandbox secret, a nonce and a proof, in bytes.
pub const KEY_LEN: usize = 32;
/// What a host sends first on every connection: magic, version, then a nonce.
const MAGIC: &[u8; 8] = b"AGRTHS\x00\x01";
/// Longest sandbox id a daemon may announce.
const MAX_ID_LEN: usize = 64;
/// Purpose strings keep a handshake proof from ever being valid as a Hello proof and back.
const HANDSHAKE_PURPOSE: &str = "agent-runtime handshake v1";
const HELLO_PURPOSE: &str = "agent-runtime hello v1";
const EGRESS_PURPOSE: &str = "agent-runtime egress v1";
const TELEMETRY_PURPOSE: &str = "agent-runtime telemetry v1";
/// Environment variable naming the file sandboxd reads its secret from.
pub const SECRET_FILE_ENV: &str = "SANDBOXD_SECRET_FILE";
/// Environment variable carrying the sandbox id sandboxd serves.
pub const SANDBOX_ID_ENV: &str = "SANDBOX_ID";

/// A per-sandbox secret.
#[derive(Clone)]
pub struct Secret(hmac::Key, [u8; KEY_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret from its bytes (a file holds them hex-encoded, see [`Secret::from_hex`]).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes), bytes)
    }

    /// Parses the hex form written by [`Secret::to_hex`].
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 {
            return None;
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self::from_bytes(bytes))
    }

    /// The hex form, for the secret file.
    pub fn to_hex(&self) -> String {
        self.1.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret of sandbox `id` under a host key: HMAC(host key, id). The host keeps only its
    /// key and can re-derive every sandbox's secret after a restart.
    pub fn derive(host_key: &Secret, id: &str) -> Self {
        let tag = hmac::sign(&host_key.0, id.as_bytes());
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&tag.as_ref()[..KEY_LEN]);
        Self::from_bytes(bytes)
    }

    /// A new random secret.
    pub fn generate() -> io::Result<Self> {
        Ok(Self::from_bytes(random()?))
    }

    fn proof(&self, purpose: &str, nonce: &[u8], id: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(nonce);
        ctx.update(&[0]);
        ctx.update(id.as_bytes());
        ctx.sign()
    }

    /// The proof a daemon returns in `Hello` for `nonce`.
    pub fn hello_proof(&self, nonce: &[u8], id: &str) -> Vec<u8> {
        self.proof(HELLO_PURPOSE, nonce, id).as_ref().to_vec()
    }

    /// Checks a `Hello` proof in constant time.
    pub fn verify_hello(&self, nonce: &[u8], id: &str, proof: &[u8]) -> bool {
        verify(self, HELLO_PURPOSE, nonce, id, proof)
    }

    /// The proof the host sends on every `Egress` call (hex), so only a holder of the secret can
    /// take the host's place as the sandbox's egress proxy.
    pub fn egress_proof(&self, id: &str) -> String {
        hex::encode(self.proof(EGRESS_PURPOSE, &[], id).as_ref())
    }

    /// Checks an `Egress` call's proof in constant time.
    pub fn verify_egress(&self, id: &str, proof_hex: &str) -> bool {
        hex::decode(proof_hex).is_ok_and(|proof| verify(self, EGRESS_PURPOSE, &[], id, &proof))
    }

    /// The proof the host sends on `Telemetry.Spans` (hex), so only a holder of the secret can
    /// read the sandbox's spans.
    pub fn telemetry_proof(&self, id: &str) -> String {
        hex::encode(self.proof(TELEMETRY_PURPOSE, &[], id).as_ref())
    }

    /// Checks a `Telemetry` call's proof in constant time.
    pub fn verify_telemetry(&self, id: &str, proof_hex: &str) -> bool {
        hex::decode(proof_hex).is_ok_and(|proof| verify(self, TELEMETRY_PURPOSE, &[], id, &proof))
    }
}

fn verify(secret: &Secret, purpose: &str, nonce: &[u8], id: &str, proof: &[u8]) -> bool {
    let mut msg = Vec::with_capacity(purpose.len() + nonce.len() + id.len() + 2);
    msg.extend_from_slice(purpose.as_bytes());
    msg.push(0);
    msg.extend_from_slice(nonce);
    msg.push(0);
    msg.extend_from_slice(id.as_bytes());
    hmac::verify(&secret.0, &msg, proof).is_ok()
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(out)
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection failed or closed.
    #[error("handshake i/o: {0}")]
    Io(#[from] io::Error),
    /// No answer in time.
    #[error("no handshake answer within {0:?}")]
    Timeout(Duration),
    /// The peer did not speak the handshake.
    #[error("the peer does not speak the agent-runtime handshake")]
    Protocol,
    /// A daemon of another sandbox answered.
    #[error("the daemon answered as sandbox {found:?}, not {expected}")]
    WrongSandbox {
        /// The sandbox we dialled.
        expected: String,
        /// The id it announced.
        found: String,
    },
    /// The proof did not match the secret.
    #[error("the daemon could not prove it holds the sandbox's secret")]
    BadProof,
}

/// The host's side: sends a nonce on `io` and checks that the daemon of sandbox `id` answered.
pub async fn client_handshake<S>(
    io: &mut S,
    secret: &Secret,
    id: &str,
    timeout: Duration,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let nonce: [u8; KEY_LEN] = random()?;
        let mut hello = Vec::with_capacity(MAGIC.len() + KEY_LEN);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&nonce);
        io.write_all(&hello).await?;
        io.flush().await?;
        let mut head = [0u8; KEY_LEN + 1];
        io.read_exact(&mut head).await?;
        let id_len = usize::from(head[KEY_LEN]);
        if id_len == 0 || id_len > MAX_ID_LEN {
            return Err(HandshakeError::Protocol);
        }
        let mut found = vec![0u8; id_len];
        io.read_exact(&mut found).await?;
        let found = String::from_utf8_lossy(&found).into_owned();
        if found != id {
            return Err(HandshakeError::WrongSandbox {
                expected: id.to_owned(),
                found,
            });
        }
        if !verify(secret, HANDSHAKE_PURPOSE, &nonce, id, &head[..KEY_LEN]) {
            return Err(HandshakeError::BadProof);
        }
        Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

/// The daemon's side: reads the host's nonce from `io` and answers with `id` and the proof.
pub async fn server_handshake<S>(
    io: &mut S,
    secret: &Secret,
    id: &str,
    timeout: Duration,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(HandshakeError::Protocol);
    }
    let exchange = async {
        let mut hello = [0u8; MAGIC.len() + KEY_LEN];
        io.read_exact(&mut hello).await?;
        if &hello[..MAGIC.len()] != MAGIC {
            return Err(HandshakeError::Protocol);
        }
        let tag = secret.proof(HANDSHAKE_PURPOSE, &hello[MAGIC.len()..], id);
        let mut answer = Vec::with_capacity(KEY_LEN + 1 + id.len());
        answer.extend_from_slice(tag.as_ref());
        answer.push(id.len() as u8);
        answer.extend_from_slice(id.as_bytes());
        io.write_all(&answer).await?;
        io.flush().await?;
        Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_daemon_passes_and_others_fail() {
        let key = Secret::generate().expect("random");
        let a = Secret::derive(&key, "sb-a");
        let b = Secret::derive(&key, "sb-b");
        let t = Duration::from_secs(2);

        let (mut host, mut daemon) = tokio::io::duplex(256);
        let (h, d) = tokio::join!(
            client_handshake(&mut host, &a, "sb-a", t),
            server_handshake(&mut daemon, &a, "sb-a", t)
        );
        assert!(h.is_ok() && d.is_ok(), "{h:?} {d:?}");

        // B's daemon (its own secret and id) behind A's socket.
        let (mut host, mut daemon) = tokio::io::duplex(256);
        let (h, _) = tokio::join!(
            client_handshake(&mut host, &a, "sb-a", t),
            server_handshake(&mut daemon, &b, "sb-b", t)
        );
        assert!(
            matches!(h, Err(HandshakeError::WrongSandbox { .. })),
            "{h:?}"
        );

        // Claims to be A without A's secret.
        let (mut host, mut daemon) = tokio::io::duplex(256);
        let (h, _) = tokio::join!(
            client_handshake(&mut host, &a, "sb-a", t),
            server_handshake(&mut daemon, &b, "sb-a", t)
        );
        assert!(matches!(h, Err(HandshakeError::BadProof)), "{h:?}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let a = Secret::generate().expect("random");
        let (mut host, _daemon) = tokio::io::duplex(256);
        let h = client_handshake(&mut host, &a, "sb-a", Duration::from_millis(50)).await;
        assert!(matches!(h, Err(HandshakeError::Timeout(_))), "{h:?}");
    }

    #[test]
    fn secrets_round_trip_and_hello_proofs_check() {
        let s = Secret::generate().expect("random");
        let back = Secret::from_hex(&s.to_hex()).expect("hex");
        let p = s.hello_proof(b"nonce", "sb-1");
        assert!(back.verify_hello(b"nonce", "sb-1", &p));
        assert!(!back.verify_hello(b"nonce", "sb-2", &p));
        assert!(Secret::from_hex("zz").is_none());
    }

    #[test]
    fn a_telemetry_proof_is_not_an_egress_proof() {
        let s = Secret::generate().expect("random");
        let p = s.telemetry_proof("sb-1");
        assert!(s.verify_telemetry("sb-1", &p));
        assert!(!s.verify_telemetry("sb-2", &p));
        assert!(!s.verify_egress("sb-1", &p));
        assert!(!s.verify_telemetry("sb-1", &s.egress_proof("sb-1")));
    }
}
