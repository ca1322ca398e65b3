//! Integration tests: the real `sandboxd` binary on a temporary unix socket, driven through the
//! generated gRPC client. They need bash, python3 and node on PATH, as the sandbox image has.

mod exec;
mod files;
mod handshake;
mod runs;
mod service;
mod support;
