//! Reconcile against a mocked API server (tower-test): every request the operator makes is
//! recorded and answered from a small in-memory cluster, and the tests assert on the exact
//! requests.

mod contract;
mod integrity;
mod read;
mod reconcile;
mod render;
