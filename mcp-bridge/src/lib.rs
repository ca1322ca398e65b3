//! mcp-bridge: an MCP server (stdio or Streamable HTTP) whose tools are Agent Runtime gRPC calls.
//!
//! `cli` parses flags and picks a transport; `server` is the MCP handler; `tools/` holds one file
//! per tool family; `session` owns what one MCP session created; `host_conn` finds (or starts)
//! the host; `results` shapes tool results and errors.

pub mod call;
pub mod cli;
pub mod error;
pub mod host_conn;
pub mod http;
pub mod results;
pub mod schema;
pub mod server;
pub mod session;
pub mod stdio;
pub mod tools;
