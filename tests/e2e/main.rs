//! End-to-end scenarios: the real `foreman-box` binary against a temp-dir host root, a loopback
//! release mirror and a throwaway PostgreSQL server.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

mod k3s;
mod operator;
mod postgres;
mod storage;
mod bad_input;
