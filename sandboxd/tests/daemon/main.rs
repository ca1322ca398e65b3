//! Integration tests: the real `sandboxd` binary on a temporary unix socket, driven through the
//! generated gRPC client. They need bash, python3 (with ipykernel) and node on PATH, as the
//! sandbox image has; the egress browser test also needs Chromium and the Playwright driver
//! `agent-runtime image build` stages (.ci/setup installs both).

mod egress;
mod exec;
mod files;
mod handshake;
mod runs;
mod service;
mod support;
mod zygote;
