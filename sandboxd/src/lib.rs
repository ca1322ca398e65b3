//! sandboxd: the daemon inside every Agent Runtime sandbox. It serves the `Sandbox` gRPC service
//! (exec, files, contexts and the browser) on TCP and on a unix socket.

pub mod browser;
pub mod cli;
pub mod contexts;
pub mod daemon;
pub mod egress;
pub mod environment;
pub mod error;
pub mod exec;
pub mod exit_notice;
pub mod files;
pub mod identity;
pub mod oom;
pub mod privileges;
pub mod process_tree;
pub mod processes;
pub mod run_events;
pub mod run_limits;
pub mod runs;
pub mod service;
pub mod spans;
pub mod transfer;
pub mod workspace;
pub mod zygote;

pub use daemon::run;
pub use error::{Error, Result};
