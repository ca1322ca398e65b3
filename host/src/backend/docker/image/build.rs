//! `docker build` of the sandbox image from a build context tar, with the build log forwarded.

use std::collections::HashMap;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use super::context::Context;
use super::{long_running, ImageError, LABEL_CONTENT_HASH};

/// Label naming the base the image was built on.
const LABEL_BASE: &str = "agent-runtime.base";

/// Whether Docker has an image by this name.
pub(super) async fn image_exists(docker: &Docker, name: &str) -> Result<bool, ImageError> {
    match docker.inspect_image(name).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(source) => Err(ImageError::Docker {
            what: "image inspect",
            source,
        }),
    }
}

/// Builds `docker/Dockerfile` from `context` on `base`, tagging the result `tag`.
pub(super) async fn build(
    docker: &Docker,
    context: &Context,
    base: &str,
    tag: &str,
    content_hash: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ImageError> {
    let file = tokio::fs::File::open(&context.path)
        .await
        .map_err(ImageError::io("cannot open build context", &context.path))?;
    let body = bollard::body_try_stream(ReaderStream::with_capacity(file, 1 << 20));
    let buildargs = HashMap::from([("BASE", base)]);
    let labels = HashMap::from([(LABEL_CONTENT_HASH, content_hash), (LABEL_BASE, base)]);
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&buildargs)
        .labels(&labels)
        .build();
    let docker = long_running(docker);
    let mut stream = docker.build_image(options, None, Some(body));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(ImageError::Build(detail));
                }
                for line in info.stream.iter().flat_map(|s| s.lines()) {
                    let line = line.trim();
                    if !line.is_empty() {
                        progress(&format!("build: {line}"));
                    }
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(ImageError::Build(error))
            }
            Err(source) => {
                return Err(ImageError::Docker {
                    what: "build",
                    source,
                })
            }
        }
    }
    if !image_exists(&docker, tag).await? {
        return Err(ImageError::Build(format!(
            "dockerd reported no error but {tag} does not exist"
        )));
    }
    Ok(())
}
