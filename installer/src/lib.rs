//! foreman-box: one command from a fresh Linux host to a working Foreman on k3s.
//!
//! `cli` is the user interface, `steps` the install order and each step's plan/apply, `host`
//! every touch of the machine. The operator (crate `foreman-operator`) is linked in and runs as
//! `foreman-box operator` inside the cluster.

pub mod action;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod desired;
pub mod diagnosis;
pub mod download;
pub mod error;
pub mod facts;
pub mod health;
pub mod host;
pub mod inspect;
pub mod kept;
pub mod maintenance;
pub mod manifests;
mod postgres_error;
pub mod report;
pub mod secret;
pub mod steps;
pub mod support;
pub mod upgrade;
pub mod validate;

pub use error::{Error, Result};
