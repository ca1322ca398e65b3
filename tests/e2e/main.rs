//! End-to-end tests: real `agent-runtime serve`, real Docker, real sandboxd in the real image.

mod browser;
mod cli;
mod contexts;
mod deploy;
mod egress;
mod exec;
mod files;
mod isolation;
mod lifecycle;
mod mcp;
mod miniwob;
mod rest;
mod runs;
mod security;
mod telemetry;
