//! The MCP tools, one file per family. Each file adds a `ToolRouter` to [`crate::server::Bridge`].

pub mod browser;
pub mod code;
pub mod contexts;
pub mod files;
pub mod processes;
pub mod sandbox;
pub mod stream;
