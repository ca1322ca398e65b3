//! Streaming file transfers, Upload and Download, in constant memory.
//!
//! Both sides hand chunks between the gRPC stream and a blocking-pool worker (which does the file
//! I/O and the hashing) over small bounded channels, so a 200 MiB transfer holds a few chunks at a
//! time, never the file. Paths are opened and files created as the sandbox user (`files::blocking`
//! runs its work through `privileges::as_user`); Download takes regular files only.

use std::io::{Read, Write};
use std::path::PathBuf;

use agent_runtime_proto::v1::{upload_request::Part, DownloadChunk, UploadRequest, UploadResponse};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::files::{blocking, file_mode, Files, TempFile};

/// Download chunk size when the request gives none.
pub const DEFAULT_CHUNK: u32 = 1024 * 1024;
/// Largest download chunk a request may ask for.
pub const MAX_CHUNK: u32 = 4 * 1024 * 1024;
/// Chunks in flight between the gRPC stream and the file worker.
const IN_FLIGHT: usize = 4;

/// The stream of chunks one Download produces.
pub type DownloadStream = ReceiverStream<Result<DownloadChunk, tonic::Status>>;

/// Receives an upload: header first, then data, written to a temporary file and renamed into
/// place once complete and (when announced) checked against its SHA-256.
pub async fn upload<S>(files: &Files, mut stream: S) -> Result<UploadResponse>
where
    S: Stream<Item = Result<UploadRequest, tonic::Status>> + Unpin,
{
    let header = match stream.next().await {
        Some(Ok(UploadRequest {
            part: Some(Part::Header(header)),
        })) => header,
        Some(Ok(_)) => {
            return Err(Error::invalid(
                "the first upload message must be the header (path, mode, sha256)",
            ))
        }
        Some(Err(status)) => return Err(Error::invalid(format!("upload aborted: {status}"))),
        None => {
            return Err(Error::invalid(
                "upload stream is empty; the first message must be the header",
            ))
        }
    };
    let path = files.workspace().resolve(&header.path)?;
    let expected = header.sha256.trim().to_ascii_lowercase();
    let mode = file_mode(header.mode);

    let (tx, rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let writer = {
        let files = files.clone();
        let path = path.clone();
        blocking(move || write_chunks(&files, path, mode, rx))
    };
    let received = async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(UploadRequest {
                    part: Some(Part::Data(data)),
                }) => {
                    if tx.send(data).await.is_err() {
                        // The writer failed; its error is the one to report.
                        return Ok(());
                    }
                }
                Ok(UploadRequest {
                    part: Some(Part::Header(_)),
                }) => return Err(Error::invalid("the upload header came twice")),
                Ok(UploadRequest { part: None }) => {}
                Err(status) => return Err(Error::invalid(format!("upload aborted: {status}"))),
            }
        }
        Ok(())
    };
    // Dropping the sender (end of `received`) tells the writer the stream ended; whether it ended
    // well is decided here, and only then is the file renamed into place.
    let (received, written) = tokio::join!(received, writer);
    let (temp, size, actual) = written?;
    received?;
    if !expected.is_empty() && expected != actual {
        return Err(Error::ChecksumMismatch { expected, actual });
    }
    let this = files.clone();
    let dest = path.clone();
    blocking(move || {
        temp.persist(&dest)
            .map_err(|e| this.io_error("writing", &dest, e))
    })
    .await?;
    Ok(UploadResponse {
        path: path.display().to_string(),
        size,
        sha256: actual,
    })
}

/// Writes received chunks to a temporary file beside `path`, hashing as it goes.
fn write_chunks(
    files: &Files,
    path: PathBuf,
    mode: u32,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> Result<(TempFile, u64, String)> {
    let err = |e| files.io_error("writing", &path, e);
    files.create_parent(&path)?;
    if path.is_dir() {
        return Err(Error::IsADirectory(path));
    }
    let mut temp = TempFile::create_beside(&path, mode).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        temp.file.write_all(&chunk).map_err(err)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((temp, size, hex::encode(hasher.finalize())))
}

/// Starts streaming a file out in chunks of `chunk_size` (0: 1 MiB); the last message carries
/// the total size and SHA-256. Errors about the path come before any chunk.
pub async fn download(files: &Files, path: &str, chunk_size: u32) -> Result<DownloadStream> {
    let chunk = match chunk_size {
        0 => DEFAULT_CHUNK,
        n if n > MAX_CHUNK => {
            return Err(Error::invalid(format!(
                "chunk_size {n} is over the limit of {MAX_CHUNK} bytes (4 MiB)"
            )))
        }
        n => n,
    } as usize;
    let path = files.workspace().resolve(path)?;
    let file = {
        let files = files.clone();
        let path = path.clone();
        blocking(move || files.open_regular(&path).map(|(file, _)| file)).await?
    };
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let files = files.clone();
    // Ends on its own: at end of file, on an error, or when the client drops the stream.
    tokio::task::spawn_blocking(move || match read_chunks(file, chunk, &tx) {
        Ok(()) | Err(ReadError::ClientGone) => {}
        Err(ReadError::Io(e)) => {
            let _ = tx.blocking_send(Err(files.io_error("reading", &path, e).into()));
        }
    });
    Ok(ReceiverStream::new(rx))
}

enum ReadError {
    Io(std::io::Error),
    ClientGone,
}

fn read_chunks(
    mut file: std::fs::File,
    chunk: usize,
    tx: &mpsc::Sender<Result<DownloadChunk, tonic::Status>>,
) -> std::result::Result<(), ReadError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut data = vec![0; chunk];
        let mut filled = 0;
        // Fill whole chunks, so the client sees the size it asked for.
        while filled < chunk {
            match file.read(&mut data[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        data.truncate(filled);
        hasher.update(&data);
        size += filled as u64;
        let last = filled < chunk;
        let message = if last {
            DownloadChunk {
                data,
                size,
                sha256: hex::encode(hasher.finalize_reset()),
                last: true,
            }
        } else {
            DownloadChunk {
                data,
                ..DownloadChunk::default()
            }
        };
        tx.blocking_send(Ok(message))
            .map_err(|_| ReadError::ClientGone)?;
        if last {
            return Ok(());
        }
    }
}
