//! What a process that is not one of the set's workers sees on its socket.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// Waits until the host closes `stream`; panics if it has not within 10 s.
/// Returns the bytes the host sent before closing (a refused stranger must
/// get none).
pub async fn closed_by_host(mut stream: UnixStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the host kept a stranger's connection open");
    received
}
