//! Content hashes: of the sandbox image's inputs (its tag) and of the root filesystem's inputs.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::{driver, ImageError, ImageSpec, DOCKERFILE, PACKAGES};

/// Hex digits of a hash that go into a tag.
const SHORT: usize = 12;

/// The first 12 hex digits of a hash.
pub(super) fn short(hash: &str) -> &str {
    hash.get(..SHORT).unwrap_or(hash)
}

/// A hasher fed with named, length-prefixed parts, so no two inputs collide by concatenation.
pub(super) struct Parts(Sha256);

impl Parts {
    pub fn new(domain: &str) -> Self {
        let mut parts = Self(Sha256::new());
        parts.add("domain", domain.as_bytes());
        parts
    }

    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        self.header(name, bytes.len() as u64);
        self.0.update(bytes);
    }

    fn header(&mut self, name: &str, len: u64) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update(len.to_le_bytes());
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// SHA-256 (hex) of everything the sandbox image is made of.
pub(super) fn content_hash(spec: &ImageSpec) -> Result<String, ImageError> {
    let mut file = std::fs::File::open(&spec.sandboxd).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ImageError::SandboxdMissing(spec.sandboxd.clone())
        } else {
            ImageError::io("cannot read sandboxd binary", &spec.sandboxd)(e)
        }
    })?;
    let read_err = ImageError::io("cannot read sandboxd binary", &spec.sandboxd);
    let len = file.metadata().map_err(read_err)?.len();

    let mut parts = Parts::new("agent-runtime-sandbox-image/1");
    parts.add("Dockerfile", DOCKERFILE.as_bytes());
    parts.add("packages.txt", PACKAGES.as_bytes());
    parts.add("driver", driver::specs().as_bytes());
    parts.header("sandboxd", len);
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(ImageError::io(
            "cannot read sandboxd binary",
            &spec.sandboxd,
        ))?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        parts.0.update(&buf[..n]);
    }
    if seen != len {
        return Err(ImageError::io(
            "sandboxd binary changed while hashing",
            &spec.sandboxd,
        )(std::io::Error::other("size changed")));
    }
    Ok(parts.finish())
}
