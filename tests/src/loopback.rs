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
    _rt: Arc<OwnRuntime>,
}

/// The server's runtime, shut down without waiting when the last handle goes: a test may start
/// and drop a server from inside its own async runtime, where a blocking shutdown panics.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
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
        // Bound without the runtime's block_on, which panics when the caller is itself async.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("a loopback listener");
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
            _rt: Arc::new(OwnRuntime(Some(rt))),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
