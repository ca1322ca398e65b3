//! Bodies that watch gRPC messages go by without changing a byte: the request's first message
//! (for the hash of the code a run carries) and a run's events (for how it ended).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use agent_runtime_proto::v1::{exec_event, ExecEvent, ExecRequest, RunCodeRequest};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prost::Message as _;
use sha2::{Digest, Sha256};

/// The largest request a tap decodes; code past this size is not hashed.
const MAX_DECODED: usize = 1 << 20;

/// The largest `ExecEvent` a tap decodes: an exit event is a few dozen bytes, so output chunks
/// above this pass without being copied or decoded.
const MAX_EVENT_DECODED: usize = 4096;

/// What the taps learnt about one call.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Bytes of the request body.
    pub request_bytes: u64,
    /// SHA-256 of the code an Exec or RunCode carried, hex.
    pub code_sha256: Option<String>,
    /// A run's exit code and reason (`oom`, `timeout`, ...), from its exit event.
    pub exit_code: Option<i32>,
    /// Why the run was killed, if it was.
    pub exit_reason: Option<String>,
    /// The sandbox a `Sandboxes` call was about (set by the handler).
    pub sandbox_id: Option<String>,
}

/// Which messages a tap decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decode {
    /// Nothing: bytes are only counted.
    None,
    /// An `ExecRequest` (hash its code).
    ExecRequest,
    /// A `RunCodeRequest` (hash its code).
    RunCodeRequest,
    /// `ExecEvent`s (note the exit).
    ExecEvents,
}

/// Splits a gRPC stream into messages, keeping those up to `max` bytes.
#[derive(Default)]
struct Splitter {
    header: Vec<u8>,
    remaining: usize,
    message: Vec<u8>,
    keep: bool,
    max: usize,
}

impl Splitter {
    /// Feeds bytes; calls `on_message` with each whole kept (uncompressed) message.
    fn feed(&mut self, mut data: &[u8], on_message: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            if self.remaining == 0 && self.header.len() < 5 {
                let take = (5 - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 5 {
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]) as usize;
                    self.keep = self.header[0] == 0 && len <= self.max;
                    self.remaining = len;
                    self.message.clear();
                    if len == 0 {
                        self.header.clear();
                        if self.keep {
                            on_message(&[]);
                        }
                    }
                }
                continue;
            }
            let take = self.remaining.min(data.len());
            if self.keep {
                self.message.extend_from_slice(&data[..take]);
            }
            data = &data[take..];
            self.remaining -= take;
            if self.remaining == 0 {
                self.header.clear();
                if self.keep {
                    on_message(&self.message);
                }
            }
        }
    }
}

/// A body that counts and decodes what passes, into a shared [`Tally`].
pub struct Tap<B> {
    inner: B,
    tally: Arc<Mutex<Tally>>,
    decode: Decode,
    splitter: Splitter,
    /// Request side: count into `request_bytes`.
    count: bool,
}

impl<B> Tap<B> {
    /// Watches `inner`; `count` adds its bytes to `request_bytes`.
    pub fn new(inner: B, tally: Arc<Mutex<Tally>>, decode: Decode, count: bool) -> Self {
        Self {
            inner,
            tally,
            decode,
            splitter: Splitter {
                max: if decode == Decode::ExecEvents {
                    MAX_EVENT_DECODED
                } else {
                    MAX_DECODED
                },
                ..Splitter::default()
            },
            count,
        }
    }

    fn saw(&mut self, data: &[u8]) {
        let decode = self.decode;
        let tally = &self.tally;
        if self.count {
            if let Ok(mut t) = tally.lock() {
                t.request_bytes += data.len() as u64;
            }
        }
        if decode == Decode::None {
            return;
        }
        self.splitter
            .feed(data, &mut |message| note(tally, decode, message));
        // A request carries one message: nothing more to decode after it.
        if decode != Decode::ExecEvents && tally.lock().is_ok_and(|t| t.code_sha256.is_some()) {
            self.decode = Decode::None;
        }
    }
}

fn note(tally: &Mutex<Tally>, decode: Decode, message: &[u8]) {
    let Ok(mut t) = tally.lock() else { return };
    match decode {
        Decode::ExecRequest => {
            if let Ok(req) = ExecRequest::decode(message) {
                t.code_sha256 = Some(hex::encode(Sha256::digest(req.code.as_bytes())));
            }
        }
        Decode::RunCodeRequest => {
            if let Ok(req) = RunCodeRequest::decode(message) {
                t.code_sha256 = Some(hex::encode(Sha256::digest(req.code.as_bytes())));
            }
        }
        Decode::ExecEvents => {
            if let Ok(ExecEvent {
                event: Some(exec_event::Event::Exit(exit)),
                ..
            }) = ExecEvent::decode(message)
            {
                t.exit_code = Some(exit.code);
                t.exit_reason = (!exit.reason.is_empty()).then_some(exit.reason);
            }
        }
        Decode::None => {}
    }
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let data = data.clone();
                self.saw(&data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn messages_split_across_any_frames_are_decoded() {
        let req = ExecRequest {
            language: "python".into(),
            code: "print(1)".into(),
            ..Default::default()
        };
        let bytes = framed(&req.encode_to_vec());
        for cut in 1..bytes.len() {
            let tally = Arc::new(Mutex::new(Tally::default()));
            let mut tap = Tap::new((), tally.clone(), Decode::ExecRequest, true);
            tap.saw(&bytes[..cut]);
            tap.saw(&bytes[cut..]);
            let t = tally.lock().expect("not poisoned").clone();
            assert_eq!(t.request_bytes, bytes.len() as u64);
            assert_eq!(
                t.code_sha256.as_deref(),
                Some(hex::encode(Sha256::digest(b"print(1)")).as_str())
            );
        }
    }

    #[test]
    fn the_exit_event_is_found_among_output() {
        for size in [3000, 1 << 20] {
            exit_after_output(size);
        }
    }

    /// An output chunk of `size` bytes, then the exit event, fed in 7-byte pieces.
    fn exit_after_output(size: usize) {
        let out = ExecEvent {
            event: Some(exec_event::Event::Stdout(vec![b'x'; size])),
            ..Default::default()
        };
        let exit = ExecEvent {
            event: Some(exec_event::Event::Exit(agent_runtime_proto::v1::ExecExit {
                code: 137,
                reason: "oom".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut bytes = framed(&out.encode_to_vec());
        bytes.extend(framed(&exit.encode_to_vec()));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tap = Tap::new((), tally.clone(), Decode::ExecEvents, false);
        for chunk in bytes.chunks(7) {
            tap.saw(chunk);
        }
        let t = tally.lock().expect("not poisoned").clone();
        assert_eq!(
            (t.exit_code, t.exit_reason.as_deref()),
            (Some(137), Some("oom"))
        );
    }
}
