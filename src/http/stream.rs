//! The stream hyper reads and writes: a plain TCP stream or TLS over one, so the server's
//! accept logic and the client's pool hold one type either way. On both sides the byte
//! counters sit below TLS (`MaybeTls<CountingStream<TcpStream>>`) and count what crosses
//! the wire, handshakes and record overhead included, so a client's bytes sent are the
//! server's bytes received. Certificates are left to `tls`.

use std::io;
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::rc::Rc;
use std::task::{Context, Poll};

#[cfg(feature = "tls")]
use super::tls::ServerTls;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream, with or without TLS.
#[derive(Debug)]
pub enum MaybeTls<S> {
    Plain(S),
    #[cfg(feature = "tls")]
    Client(Box<futures_rustls::client::TlsStream<S>>),
    #[cfg(feature = "tls")]
    Server(Box<futures_rustls::server::TlsStream<S>>),
}

/// A stream that knows whether it is TLS, so the server can tell its handlers.
pub trait Secured {
    fn is_secure(&self) -> bool;
}

impl Secured for smol::net::TcpStream {
    fn is_secure(&self) -> bool {
        false
    }
}

impl<S: Secured> Secured for super::wire::CountingStream<S> {
    fn is_secure(&self) -> bool {
        self.get_ref().is_secure()
    }
}

impl<S> Secured for MaybeTls<S> {
    fn is_secure(&self) -> bool {
        !matches!(self, MaybeTls::Plain(_))
    }
}

/// Calls `$method` on whichever stream `$self` holds.
macro_rules! delegate {
    ($self:ident, $stream:ident => $call:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($stream) => $call,
            #[cfg(feature = "tls")]
            MaybeTls::Client($stream) => $call,
            #[cfg(feature = "tls")]
            MaybeTls::Server($stream) => $call,
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => Pin::new(stream).poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => Pin::new(stream).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => Pin::new(stream).poll_write_vectored(cx, bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => Pin::new(stream).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => Pin::new(stream).poll_close(cx))
    }
}

/// What a server speaks on its accepted connections.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    #[default]
    Plain,
    /// TLS with the certificate [`ServerTls`] holds at the time of each accept.
    #[cfg(feature = "tls")]
    Tls(Rc<ServerTls>),
}

impl Transport {
    /// The stream hyper gets for an accepted connection: `stream` itself, or `stream`
    /// after a TLS handshake; the `prepare` of `serve_streams`, whose head deadline
    /// bounds the handshake.
    pub async fn prepare<S>(&self, stream: S) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self {
            Transport::Plain => Ok(MaybeTls::Plain(stream)),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => {
                let stream = tls.acceptor().accept(stream).await?;
                Ok(MaybeTls::Server(Box::new(stream)))
            }
        }
    }
}
