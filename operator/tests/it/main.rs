//! The operator's tests: rendering and its contracts with the programs that read the objects,
//! and reconcile against the stand-in API server (`foreman_box_tests::apiserver`), which records
//! every request and keeps what the operator writes.

mod contract;
mod database_url;
mod integrity;
mod keys;
mod read;
mod reconcile;
mod render;
mod sizing;
