//! Agent Runtime host: owns sandbox containers and serves the gRPC API and the CLI.

pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod egress;
pub mod error;
pub mod grpc;
pub mod ids;
pub mod limits;
pub mod observe;
pub mod rest;
pub mod sandboxes;
pub mod serve;
pub mod uds;
