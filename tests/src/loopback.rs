//! A TCP server on 127.0.0.1 at a free port, on a runtime of its own: each accepted connection
//! is handed to a serve function with a clone of the shared state. The loopback release mirror
//! and the stand-in API server are both this with their own protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
pub struct Loopback {
    pub addr: SocketAddr,
    _rt: Arc<tokio::runtime::Runtime>,
}

impl Loopback {
    /// Binds and starts accepting; the server lives as long as any clone of the handle.
    pub fn start<S, F, Fut>(workers: usize, state: S, serve: F) -> Loopback
    where
        S: Clone + Send + 'static,
        F: Fn(TcpStream, S) -> Fut + Send + Copy + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = state.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Loopback {
            addr,
            _rt: Arc::new(rt),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
