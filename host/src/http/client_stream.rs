//! A client connection's socket, with a deadline on writes that make no progress.
//!
//! hyper's HTTP/1 server bounds how long a request head may take to arrive, but nothing about
//! writing: a client that stops reading (after pipelining requests for large responses) leaves
//! the response write pending forever and the connection open. hyper 1.x has no write timeout
//! (`http1::Builder` offers only the header read timeout), so the socket is wrapped: while a
//! write is pending a timer runs, any progress stops it, and when it fires the write fails
//! with [`ResponseWriteStalled`] and hyper closes the connection. Each write's progress is
//! also told to the connection's slot, so the connection table knows how long the connection
//! has been waiting on its client (see `connection_slots`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::connection_slots::ConnectionSlot;

/// The error a write fails with when the client has not taken any byte for the whole limit.
#[derive(Debug)]
pub struct ResponseWriteStalled {
    limit: Duration,
}

impl fmt::Display for ResponseWriteStalled {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "the client read nothing of the response for {} s",
            self.limit.as_secs_f64()
        )
    }
}

impl std::error::Error for ResponseWriteStalled {}

impl ResponseWriteStalled {
    /// Whether `error` (hyper's, from a connection) is a stalled response write.
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(current) = cause {
            if let Some(io_error) = current.downcast_ref::<io::Error>() {
                return io_error
                    .get_ref()
                    .is_some_and(|inner| inner.is::<ResponseWriteStalled>());
            }
            cause = current.source();
        }
        false
    }
}

/// What the socket reports about its writes.
pub trait WriteProgress {
    /// Bytes were written: the client is reading.
    fn wrote(&self);
}

impl WriteProgress for ConnectionSlot {
    fn wrote(&self) {
        self.client_took_bytes();
    }
}

impl WriteProgress for () {
    fn wrote(&self) {}
}

pub struct ClientStream<S, P = ConnectionSlot> {
    stream: S,
    progress: Arc<P>,
    write_stall_limit: Duration,
    /// Armed while a write is pending; dropped at the first byte written.
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl<S, P> ClientStream<S, P> {
    pub fn new(stream: S, progress: Arc<P>, write_stall_limit: Duration) -> Self {
        Self {
            stream,
            progress,
            write_stall_limit,
            write_stalled: None,
        }
    }
}

impl<S: AsyncWrite + Unpin, P: WriteProgress> ClientStream<S, P> {
    /// The outcome of a write attempt, with the stall deadline applied.
    fn bounded(
        &mut self,
        context: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Pending => {
                let limit = self.write_stall_limit;
                let deadline = self
                    .write_stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                // Polled with the write's context: the task wakes when the deadline passes.
                match deadline.as_mut().poll(context) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        ResponseWriteStalled { limit },
                    ))),
                }
            }
            Poll::Ready(Ok(count)) if count > 0 => {
                self.write_stalled = None;
                self.progress.wrote();
                Poll::Ready(Ok(count))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin, P: WriteProgress> AsyncWrite for ClientStream<S, P> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(context, buffer);
        self.bounded(context, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        self.bounded(context, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket has nothing to flush: its writes are what stall.
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

impl<S: AsyncRead + Unpin, P> AsyncRead for ClientStream<S, P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_write_the_client_never_takes_fails_after_the_limit() {
        let (host_side, _client_side) = tokio::io::duplex(64);
        let mut stream = ClientStream::new(host_side, Arc::new(()), LIMIT);
        let started = std::time::Instant::now();
        let error = stream
            .write_all(&[b'x'; 1024])
            .await
            .expect_err("a stalled write fails");
        assert!(started.elapsed() >= LIMIT);
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(ResponseWriteStalled::caused(&error));
        assert!(!ResponseWriteStalled::caused(&io::Error::from(
            io::ErrorKind::TimedOut
        )));
    }

    /// Counts the writes that made progress.
    #[derive(Default)]
    struct Progress(std::sync::atomic::AtomicUsize);

    impl WriteProgress for Progress {
        fn wrote(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_client_that_keeps_reading_slowly_is_never_cut() {
        let (host_side, mut client_side) = tokio::io::duplex(64);
        let progress = Arc::new(Progress::default());
        let mut stream = ClientStream::new(host_side, Arc::clone(&progress), LIMIT);
        let reader = tokio::spawn(async move {
            let mut taken = 0;
            let mut buffer = [0u8; 64];
            while taken < 1024 {
                // Each pause is under the limit; the whole write takes far longer than it.
                tokio::time::sleep(LIMIT / 6).await;
                taken += client_side.read(&mut buffer).await.expect("read");
            }
        });
        stream
            .write_all(&[b'x'; 1024])
            .await
            .expect("progress keeps the write alive");
        reader.await.expect("the reader");
        assert!(
            progress.0.load(std::sync::atomic::Ordering::Relaxed) >= 1024 / 64,
            "each write that made progress was told"
        );
    }
}
