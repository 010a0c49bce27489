//! End-to-end scenarios: the real `foreman-box` binary against a temp-dir host root, a loopback
//! release mirror and a throwaway PostgreSQL server.

mod k3s;
mod operator;
mod postgres;
mod storage;
