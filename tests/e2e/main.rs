//! End-to-end scenarios: the real `foreman-box` binary against a temp-dir host root, a loopback
//! release mirror and a throwaway PostgreSQL server.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

mod bad_input;
mod bundle;
mod crash;
mod daytwo;
mod edge;
mod foreman;
mod host;
mod image;
mod k3s;
mod layers;
mod lock;
mod messages;
mod operator;
mod postgres;
mod pulp;
mod scripts;
mod settings;
mod storage;
mod terminal;
mod uninstall;
