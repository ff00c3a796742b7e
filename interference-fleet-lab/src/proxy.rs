//! A TCP proxy in front of the controller that can lose acknowledgements: it forwards
//! every request, waits for the controller's answer (so the batch is committed), and
//! with the chosen probability closes the client's connection instead of passing the
//! answer on. The client sees a cut connection and must resend; nothing may double.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct FaultProxy {
    pub addr: SocketAddr,
    drop_per_mille: Arc<AtomicU32>,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (any port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let drop_per_mille = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (d, n) = (drop_per_mille.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            while let Ok((client, _)) = listener.accept().await {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (d, n) = (d.clone(), n.clone());
                tokio::spawn(relay(client, upstream, d, n, seed));
            }
        });
        Ok(Self {
            addr,
            drop_per_mille,
            dropped,
            task,
        })
    }

    /// Share of answers lost, 0.0..=1.0.
    pub fn set_drop(&self, share: f64) {
        self.drop_per_mille
            .store((share.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::Relaxed);
    }

    /// Answers lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    drop_per_mille: Arc<AtomicU32>,
    dropped: Arc<AtomicU64>,
    mut seed: u64,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if buf[..n].starts_with(b"HTTP/1.1 ") {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if (seed % 1000) < u64::from(drop_per_mille.load(Ordering::Relaxed)) {
                dropped.fetch_add(1, Ordering::Relaxed);
                break; // the answer (and the connection) is lost
            }
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
