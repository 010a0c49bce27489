//! CPU time of one reconcile of the default resource (target: under 10 ms), run as
//! `cargo bench -p foreman-operator --bench reconcile`.
//!
//! The worst case is measured: a fresh resource, so every object is applied and the generated
//! Secrets (tokens, a CA and certificate, an SSH key) are made. The API server is
//! kube-rs's mocked service answering in the same thread, so the figure includes its (small)
//! share: request bodies are echoed back without being parsed. Thread CPU time, median of many.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

use foreman_operator::controller::{reconcile, Context};
use foreman_operator::resources::{desired, read_foreman};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

fn thread_cpu() -> Duration {
    // Nanosecond thread CPU clock; getrusage only ticks per jiffy.
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"foreman"},"data":{"host":"eA==","port":"eA==","name":"eA==","user":"eA==","password":"eA=="}}"#;
const LIST: &str =
    r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"},"items":[]}"#;
const FOREMAN: &str = r#"{"apiVersion":"app.theforeman.org/v1alpha1","kind":"Foreman","metadata":{"name":"foreman","namespace":"foreman"},"spec":{}}"#;

fn main() {
    let fm = read_foreman(
        "default",
        "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {name: foreman, namespace: foreman, uid: u-1, generation: 1}\nspec:\n  hostname: foreman.example.com\n  dynflow_workers: 2\n  plugins: {katello: true, remote_execution: true}\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let mut pure = Vec::new();
    for _ in 0..200 {
        let t = thread_cpu();
        std::hint::black_box(desired(std::hint::black_box(&fm)));
        pure.push(thread_cpu() - t);
    }

    let mut full = Vec::new();
    let mut requests = 0;
    for _ in 0..100 {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = rt.spawn(async move {
            let mut n = 0;
            while let Some((req, send)) = handle.next_request().await {
                n += 1;
                let path = req.uri().path().to_string();
                let (code, body): (u16, Vec<u8>) = match req.method().as_str() {
                    "GET" if req.uri().query().is_some_and(|q| q.contains("labelSelector")) => (200, LIST.into()),
                    "GET" if ["foreman-generated", "foreman-tls", "pulp-symmetric-key", "foreman-proxy-ssh"].iter().any(|s| path.ends_with(s)) => (404, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_vec()),
                    "GET" => (200, SECRET.into()),
                    "PATCH" if path.ends_with("/status") => (200, FOREMAN.into()),
                    _ => (200, req.into_body().collect_bytes().await.unwrap().to_vec()),
                };
                send.send_response(Response::builder().status(code).body(Body::from(body)).unwrap());
            }
            n
        });
        let ctx = Context::new(Client::new(service, "foreman"));
        let fm = Arc::new(fm.clone());
        let t = thread_cpu();
        rt.block_on(reconcile(fm, ctx)).unwrap();
        full.push(thread_cpu() - t);
        requests = rt.block_on(server).unwrap();
    }
    println!(
        "desired() of the default resource: median {:?} CPU ({} objects)",
        median(pure),
        desired(&fm).len()
    );
    println!("one reconcile of a fresh default resource ({requests} API requests, mocked server in-thread): median {:?} CPU", median(full));
}
