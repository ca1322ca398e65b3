//! The sandbox image `agent-runtime-sandbox:<content hash>` (DESIGN.md §5): stages the Node +
//! playwright-core driver with npm, picks a base (the offline mmdebstrap root filesystem, or
//! `debian:bookworm-slim` when Docker has it), and builds `docker/Dockerfile` on it.
//!
//! The Dockerfile and the package list are compiled in, so an installed binary needs no checkout.

mod build;
mod context;
mod driver;
mod hash;
mod process;
mod rootfs;

use std::path::PathBuf;
use std::time::Instant;

use bollard::Docker;

/// The Dockerfile, shared by both build paths.
pub const DOCKERFILE: &str = include_str!("../../../../docker/Dockerfile");
/// The Debian packages of the image, one per line (`#` comments).
pub const PACKAGES: &str = include_str!("../../../../docker/packages.txt");

/// Repository of the sandbox image; the tag is a content hash.
pub const IMAGE_REPO: &str = "agent-runtime-sandbox";
/// Label carrying the full content hash of the sandbox image.
pub const LABEL_CONTENT_HASH: &str = "agent-runtime.content-hash";

/// What the image is built from.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The sandboxd binary baked into the image.
    pub sandboxd: PathBuf,
    /// Where the npm staging, build contexts and root filesystem tars may live.
    pub cache_dir: PathBuf,
}

/// Why the image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The sandboxd binary to bake in is missing.
    #[error("sandboxd binary not found at {0}: build it with cargo build -p sandboxd")]
    SandboxdMissing(PathBuf),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// npm is not installed.
    #[error("npm not found: apt-get install npm (it fetches Node and playwright-core from the npm registry)")]
    NpmMissing,
    /// npm ran but failed, or left an incomplete install.
    #[error("npm failed: {0}")]
    Npm(String),
    /// No prebuilt Node for this machine.
    #[error("no Node package for architecture {0}: the sandbox image supports x86_64 and aarch64")]
    UnsupportedArch(&'static str),
    /// mmdebstrap is needed (no debian:bookworm-slim) but not installed.
    #[error("mmdebstrap not found: apt-get install mmdebstrap (or make debian:bookworm-slim available: docker pull debian:bookworm-slim)")]
    MmdebstrapMissing,
    /// mmdebstrap ran but failed.
    #[error("mmdebstrap failed: {0}")]
    Mmdebstrap(String),
    /// Importing the root filesystem into Docker failed.
    #[error("docker import of the root filesystem failed: {0}")]
    Import(String),
    /// The Dockerfile build failed.
    #[error("docker build failed: {0}")]
    Build(String),
    /// Another Docker API call failed.
    #[error("docker {what} failed: {source} (is dockerd running and reachable?)")]
    Docker {
        what: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

impl ImageError {
    fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
}

/// Tag `agent-runtime-sandbox:<12 hex>` from a content hash of the Dockerfile, packages.txt, the
/// sandboxd binary and the Node/playwright-core versions. Touches neither network nor Docker.
pub fn image_tag(spec: &ImageSpec) -> Result<String, ImageError> {
    Ok(tag_of(&hash::content_hash(spec)?))
}

fn tag_of(content_hash: &str) -> String {
    format!("{IMAGE_REPO}:{}", hash::short(content_hash))
}

/// Builds the image unless one with its tag already exists (then returns at once); `force`
/// rebuilds anyway. Reports one human-readable line per step or build output line.
pub async fn ensure_image(
    docker: &Docker,
    spec: &ImageSpec,
    force: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, ImageError> {
    let hashed = spec.clone();
    let content_hash = tokio::task::spawn_blocking(move || hash::content_hash(&hashed))
        .await
        .map_err(|e| ImageError::Build(format!("hashing task failed: {e}")))??;
    let tag = tag_of(&content_hash);
    if !force && build::image_exists(docker, &tag).await? {
        progress(&format!("image {tag} is up to date"));
        return Ok(tag);
    }
    let started = Instant::now();
    progress(&format!("building {tag}"));
    std::fs::create_dir_all(&spec.cache_dir).map_err(ImageError::io(
        "cannot create cache directory",
        &spec.cache_dir,
    ))?;

    let step = Instant::now();
    let driver = driver::stage(&spec.cache_dir, progress).await?;
    progress(&format!(
        "driver ready in {:.1}s",
        step.elapsed().as_secs_f64()
    ));

    let base = rootfs::ensure_base(docker, &spec.cache_dir, progress).await?;

    let step = Instant::now();
    let context = context::write(&spec.cache_dir, &spec.sandboxd, &driver, progress).await?;
    build::build(docker, &context, &base, &tag, &content_hash, progress).await?;
    progress(&format!(
        "built {tag} in {:.1}s (whole build {:.1}s)",
        step.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    Ok(tag)
}

/// The host image's Dockerfile (deploy/Dockerfile).
pub const HOST_DOCKERFILE: &str = include_str!("../../../../deploy/Dockerfile");
/// Repository of the host image; `latest` points at the newest build.
pub const HOST_IMAGE_REPO: &str = "agent-runtime-host";

/// Builds the host image (the sandbox image plus `agent-runtime`, for deploy/docker-compose.yml)
/// unless current, and points `agent-runtime-host:latest` at it.
pub async fn ensure_host_image(
    docker: &Docker,
    spec: &ImageSpec,
    agent_runtime: &std::path::Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, ImageError> {
    let base = ensure_image(docker, spec, false, progress).await?;
    let bin = std::fs::read(agent_runtime).map_err(ImageError::io(
        "cannot read the agent-runtime binary",
        agent_runtime,
    ))?;
    let mut parts = hash::Parts::new("agent-runtime-host image");
    parts.add("base", base.as_bytes());
    parts.add("Dockerfile", HOST_DOCKERFILE.as_bytes());
    parts.add("agent-runtime", &bin);
    let content_hash = parts.finish();
    let tag = format!("{HOST_IMAGE_REPO}:{}", hash::short(&content_hash));
    if build::image_exists(docker, &tag).await? {
        progress(&format!("image {tag} is up to date"));
    } else {
        let context = context::write_host(&spec.cache_dir, agent_runtime).await?;
        build::build(docker, &context, &base, &tag, &content_hash, progress).await?;
    }
    let latest = bollard::query_parameters::TagImageOptionsBuilder::new()
        .repo(HOST_IMAGE_REPO)
        .tag("latest")
        .build();
    docker
        .tag_image(&tag, Some(latest))
        .await
        .map_err(|source| ImageError::Docker {
            what: "image tag",
            source,
        })?;
    progress(&format!("{tag} is {HOST_IMAGE_REPO}:latest"));
    Ok(tag)
}

/// A Docker client whose per-request timeout suits uploads of gigabytes.
fn long_running(docker: &Docker) -> Docker {
    docker
        .clone()
        .with_timeout(std::time::Duration::from_secs(3 * 3600))
}

/// A suffix no other build (in this process or another) uses for its temporary files.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// The package names of packages.txt, comments and blanks dropped.
fn package_names() -> Vec<&'static str> {
    PACKAGES
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_image_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let docker = Docker::connect_with_local_defaults();
        if let Ok(docker) = docker {
            let spec = ImageSpec {
                sandboxd: PathBuf::from("/nonexistent"),
                cache_dir: PathBuf::from("/nonexistent"),
            };
            let progress = |_: &str| {};
            let fut = ensure_image(&docker, &spec, false, &progress);
            assert_send(&fut);
        }
    }

    #[test]
    fn package_list_drops_comments() {
        let names = package_names();
        assert!(names.contains(&"chromium"));
        assert!(names.contains(&"python3-ipykernel"));
        assert!(names.iter().all(|n| !n.contains('#') && !n.contains(' ')));
    }

    #[test]
    fn tag_follows_the_sandboxd_bytes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("ar-image-tag-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let sandboxd = dir.join("sandboxd");
        let spec = ImageSpec {
            sandboxd: sandboxd.clone(),
            cache_dir: dir.join("cache"),
        };
        assert!(matches!(
            image_tag(&spec),
            Err(ImageError::SandboxdMissing(_))
        ));
        std::fs::write(&sandboxd, b"one")?;
        let first = image_tag(&spec)?;
        assert_eq!(first, image_tag(&spec)?);
        assert!(first.starts_with("agent-runtime-sandbox:"));
        assert_eq!(first.len(), "agent-runtime-sandbox:".len() + 12);
        std::fs::write(&sandboxd, b"two")?;
        assert_ne!(first, image_tag(&spec)?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
