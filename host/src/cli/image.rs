//! `agent-runtime image build`.

use clap::Subcommand;

use super::StateArgs;
use crate::backend::Backend;
use crate::serve::docker_backend;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the sandbox image unless the current one (same content hash) exists; prints its tag.
    Build {
        #[command(flatten)]
        state: StateArgs,
        /// Rebuild even when the image is current.
        #[arg(long)]
        force: bool,
        /// Also build the host image (agent-runtime-host:latest) for deploy/docker-compose.yml.
        #[arg(long)]
        host: bool,
    },
    /// Print the tag the current sources and sandboxd binary produce, without building.
    Tag {
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Runs an image subcommand.
pub async fn run(cmd: ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Build { state, force, host } => {
            let backend = docker_backend(
                &state.state_dir(),
                "default",
                None,
                state.sandboxd.as_deref(),
                None,
                None,
            )
            .await?;
            let started = std::time::Instant::now();
            let progress =
                |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
            let tag = backend.ensure_image(force, &progress).await?;
            println!("{tag}");
            if host {
                let exe = std::env::current_exe()?;
                println!("{}", backend.ensure_host_image(&exe, &progress).await?);
            }
            Ok(0)
        }
        ImageCommand::Tag { state } => {
            let spec = crate::config::image_spec(&state.state_dir(), state.sandboxd.as_deref());
            println!("{}", crate::backend::docker::image::image_tag(&spec)?);
            Ok(0)
        }
    }
}
