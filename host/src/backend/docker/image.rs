//! PLACEHOLDER until the image builder lands (being written in parallel); replaced this session.

use std::path::PathBuf;

/// What the image is built from.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The sandboxd binary baked into the image.
    pub sandboxd: PathBuf,
    /// Cache for staged files.
    pub cache_dir: PathBuf,
}

/// Image repository name.
pub const IMAGE_REPO: &str = "agent-runtime-sandbox";

/// Image errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not built.
    #[error("image {0} missing")]
    Missing(String),
}

/// Content-hash tag.
pub fn image_tag(_spec: &ImageSpec) -> Result<String, ImageError> {
    Ok(format!("{IMAGE_REPO}:dev"))
}

/// Builds when missing.
pub async fn ensure_image(
    docker: &bollard::Docker,
    spec: &ImageSpec,
    _force: bool,
    _progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, ImageError> {
    let tag = image_tag(spec)?;
    docker
        .inspect_image(&tag)
        .await
        .map_err(|_| ImageError::Missing(tag.clone()))?;
    Ok(tag)
}
