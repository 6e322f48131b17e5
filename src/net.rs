//! Connections, between the listening socket and the services: accepting
//! them (TLS or plain text), the per-node and per-address connection caps,
//! the first-request and idle timeouts, closing them all when a shutdown's
//! grace runs out, and the size limits on what a request may carry.
//!
//! [`Incoming`] accepts TCP connections and hands tonic's server a [`Conn`]
//! for each. A `Conn` carries a [`ConnInfo`] that tonic puts into every
//! request's extensions, where [`ConnectionLayer`] reads it: to refuse the
//! calls of a connection over a cap, and to count the calls in flight, so
//! that the `Conn` knows whether it has sent a first request in time, when
//! it has been idle long enough to close, and whether it may be closed to
//! make room at the cap. tonic offers no way to close one connection, so a
//! `Conn` closes itself: its reads end and its writes fail, and hyper drops
//! the connection.
//!
//! The per-address cap counts the peer address of the TCP connection: behind
//! a reverse proxy or a load balancer that does not pass it through, every
//! client shares the proxy's address, and it is the operator's to raise or
//! turn off the cap (`--max-connections-per-ip=0`) and limit clients there.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use atomic_waker::AtomicWaker;
use bytes::{Buf as _, Bytes};
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic::Status;
use tower::{Layer, Service};

use crate::config::Limits;
use crate::metrics::{Limit, Metrics};
use crate::poll_on_wake::PollOnWake;

/// Connections a newcomer at the node cap looks at, at most, for an idle
/// one to close in its place: enough to find one among a few dozen busy
/// ones, few enough that an accept at the cap costs no scan of every
/// connection. Busy ones looked at go to the back of the line, so the next
/// newcomer looks at others.
const EVICTION_CANDIDATES: usize = 64;

/// How long a connection over the cap stays open after its first refused
/// call: long enough for the answer to reach the client before the close,
/// short because it holds one of the few places kept for refusals.
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// How long accepting pauses after the listener fails (out of file
/// descriptors, most likely) instead of retrying in a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The cap a refused connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The node's: at most this many connections.
    Node(usize),
    /// The client address's: at most this many connections from it.
    Address(usize),
}

impl Refusal {
    /// What a refused call is told.
    fn message(self) -> String {
        match self {
            Self::Node(max) => {
                format!("too many connections to this server: at most {max}; retry later")
            }
            Self::Address(max) => {
                format!("too many connections from your address: at most {max}; retry later")
            }
        }
    }

    fn limit(self) -> Limit {
        match self {
            Self::Node(_) => Limit::Connections,
            Self::Address(_) => Limit::ConnectionsPerAddress,
        }
    }
}

/// A client as the per-address cap counts it: an IPv4 address, or the /64
/// of an IPv6 one, since a single host is commonly given a whole /64 and
/// may use any address in it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ClientKey {
    V4(Ipv4Addr),
    V6(u64),
}

impl ClientKey {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(v4),
            // A dual-stack listener sees IPv4 clients as mapped addresses.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// Reads the PEM certificate chain and private key, and makes the TLS
/// acceptor: HTTP/2 and HTTP/1.1 (for grpc-web) offered by ALPN.
///
/// # Errors
/// When a file cannot be read, holds no certificate or key, or the key does
/// not match the certificate.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading the TLS certificate chain from {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key from {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("choosing the TLS versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .with_context(|| {
        format!(
            "using the TLS certificate {} with the key {}",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The caps: how many connections are served, in all and per client
/// address, and how many more are kept just long enough to be told why
/// they are refused.
struct Cap {
    max: usize,
    /// 0 when off.
    max_per_address: usize,
    served: AtomicUsize,
    refused: AtomicUsize,
    /// Served connections per client, while the per-address cap is on.
    per_address: Mutex<HashMap<ClientKey, usize>>,
    metrics: Arc<Metrics>,
}

impl Cap {
    /// Takes a place for `client` under the per-address cap; the cap if it
    /// is full.
    fn take_address(&self, client: Option<ClientKey>) -> Result<(), usize> {
        let Some(client) = client else {
            return Ok(());
        };
        let mut per_address = self.per_address.lock().expect("per-address counts");
        let count = per_address.entry(client).or_default();
        if *count >= self.max_per_address {
            return Err(self.max_per_address);
        }
        *count += 1;
        Ok(())
    }

    fn give_back_address(&self, client: Option<ClientKey>) {
        let Some(client) = client else {
            return;
        };
        let mut per_address = self.per_address.lock().expect("per-address counts");
        if let Some(count) = per_address.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&client);
            }
        }
    }

    /// Gives back a served connection's places, once: when it closes, or
    /// when it is closed to make room.
    fn release(&self, conn: &Shared) {
        if conn.released.swap(true, Ordering::AcqRel) {
            return;
        }
        self.served.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections_open.dec();
        self.give_back_address(conn.client);
    }
}

enum Admission {
    Served(Slot),
    Refused(Slot),
    Dropped,
}

/// Admits new connections. Owned by the accept loop, so a check and its
/// increment cannot interleave with another admission; closing connections
/// only make room.
struct Admissions {
    cap: Arc<Cap>,
    /// The served connections, oldest first but for those found busy at
    /// the cap, which went to the back: where a newcomer at the cap looks
    /// for an idle one. Entries of closed connections linger until looked
    /// at or swept.
    line: VecDeque<Weak<Shared>>,
}

impl Admissions {
    fn new(cap: Arc<Cap>) -> Self {
        Self {
            cap,
            line: VecDeque::new(),
        }
    }

    /// Admits a connection from `tcp.remote_addr`: served, or kept only to
    /// be told which cap it is over, or dropped at once.
    fn admit(&mut self, tcp: TcpConnectInfo) -> Admission {
        let cap = Arc::clone(&self.cap);
        let client = tcp
            .remote_addr
            .filter(|_| cap.max_per_address > 0)
            .map(|address| ClientKey::of(address.ip()));
        let refusal = match cap.take_address(client) {
            Err(max) => Some(Refusal::Address(max)),
            Ok(()) if cap.served.load(Ordering::Acquire) < cap.max || self.evict_idle() => None,
            Ok(()) => {
                cap.give_back_address(client);
                Some(Refusal::Node(cap.max))
            }
        };
        let Some(refusal) = refusal else {
            cap.served.fetch_add(1, Ordering::AcqRel);
            cap.metrics.connections_open.inc();
            let conn = Shared::new(tcp, client, None);
            self.line.push_back(Arc::downgrade(&conn));
            self.sweep();
            return Admission::Served(Slot { cap, conn });
        };
        // As many refused connections as served ones at most: beyond twice
        // the cap, telling clients why costs more than it helps.
        if cap.refused.load(Ordering::Acquire) < cap.max {
            cap.refused.fetch_add(1, Ordering::AcqRel);
            let conn = Shared::new(tcp, None, Some(refusal));
            return Admission::Refused(Slot { cap, conn });
        }
        cap.metrics.rejected(refusal.limit());
        Admission::Dropped
    }

    /// Closes the connection that has waited longest without a call in
    /// flight among the first [`EVICTION_CANDIDATES`] in line, to make room
    /// for a newcomer at the node cap: those that never sent a request
    /// first, oldest first, then the longest idle. Whether one was closed.
    fn evict_idle(&mut self) -> bool {
        let mut looked = Vec::with_capacity(EVICTION_CANDIDATES.min(self.line.len()));
        while looked.len() < EVICTION_CANDIDATES {
            let Some(entry) = self.line.pop_front() else {
                break;
            };
            if let Some(conn) = entry.upgrade() {
                if !conn.released.load(Ordering::Acquire) {
                    looked.push(conn);
                }
            }
        }
        let chosen = looked
            .iter()
            .enumerate()
            .filter_map(|(at, conn)| conn.calls.idle_for_eviction().map(|key| (key, at)))
            .min()
            .map(|(_, at)| at);
        let mut idle = Vec::new();
        for (at, conn) in looked.into_iter().enumerate() {
            if Some(at) == chosen {
                tracing::debug!(peer = ?conn.tcp.remote_addr, "closing an idle connection to make room");
                self.cap.release(&conn);
                self.cap.metrics.connections_evicted.inc();
                conn.calls.connection.wake();
            } else if conn.calls.in_flight.load(Ordering::Acquire) == 0 {
                idle.push(Arc::downgrade(&conn));
            } else {
                self.line.push_back(Arc::downgrade(&conn));
            }
        }
        for entry in idle.into_iter().rev() {
            self.line.push_front(entry);
        }
        chosen.is_some()
    }

    /// Forgets closed connections once they make up half the line, so that
    /// it stays within twice the connections served, at a cost spread over
    /// the admissions.
    fn sweep(&mut self) {
        let served = self.cap.served.load(Ordering::Acquire);
        if self.line.len() > 2 * served.max(EVICTION_CANDIDATES) {
            self.line.retain(|entry| {
                entry
                    .upgrade()
                    .is_some_and(|conn| !conn.released.load(Ordering::Acquire))
            });
        }
    }
}

/// A connection's places under the caps, given back when it is dropped.
struct Slot {
    cap: Arc<Cap>,
    conn: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.conn.refused.is_some() {
            self.cap.refused.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.cap.release(&self.conn);
        }
    }
}

/// What every connection is accepted with.
struct Settings {
    tls: Option<TlsAcceptor>,
    idle_timeout: Duration,
    /// From acceptance to the first call (TLS handshake included); the
    /// life of a refused connection too.
    first_request_timeout: Duration,
    /// Cancelled when the shutdown's grace is over: every connection closes.
    closing: CancellationToken,
}

/// The accepted connections, as tonic's server takes them. TLS handshakes
/// run concurrently, each in its own task, so a slow one delays nobody.
pub struct Incoming {
    tcp: TcpIncoming,
    admissions: Admissions,
    settings: Arc<Settings>,
    handshakes: JoinSet<Option<Conn>>,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    /// Accepts on `listener`; plain text unless `tls` is given. Every
    /// connection closes once `closing` is cancelled.
    pub fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        limits: &Limits,
        metrics: Arc<Metrics>,
        closing: CancellationToken,
    ) -> Self {
        // Set here because tonic ignores its own TCP settings for a
        // stream of connections it did not accept itself.
        let tcp = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(limits.tcp_keepalive));
        let cap = Cap {
            max: limits.max_connections,
            max_per_address: limits.max_connections_per_ip,
            served: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            metrics,
        };
        Self {
            tcp,
            admissions: Admissions::new(Arc::new(cap)),
            settings: Arc::new(Settings {
                tls,
                idle_timeout: limits.idle_timeout,
                // A connection without calls closes at the idle timeout in
                // any case.
                first_request_timeout: limits.first_request_timeout.min(limits.idle_timeout),
                closing,
            }),
            handshakes: JoinSet::new(),
            pause: None,
        }
    }

    /// Takes a new TCP connection: a `Conn` at once in plain text, or later
    /// from its handshake task with TLS.
    fn accepted(&mut self, stream: TcpStream) -> Option<Conn> {
        let settings = Arc::clone(&self.settings);
        let tcp = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        };
        let slot = match self.admissions.admit(tcp) {
            Admission::Served(slot) | Admission::Refused(slot) => slot,
            Admission::Dropped => {
                tracing::debug!(
                    peer = ?stream.peer_addr().ok(),
                    "connection dropped: too many refused connections"
                );
                return None;
            }
        };
        let deadline = Instant::now() + settings.first_request_timeout;
        let Some(acceptor) = settings.tls.clone() else {
            return Some(Conn::new(Io::Plain(stream), slot, deadline, &settings));
        };
        self.handshakes.spawn(async move {
            let peer = stream.peer_addr().ok();
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(Conn::new(Io::Tls(Box::new(tls)), slot, deadline, &settings)),
                Ok(Err(error)) => {
                    tracing::debug!(?peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(?peer, "TLS handshake timed out");
                    None
                }
            }
        });
        None
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Some(conn)) => return Poll::Ready(Some(Ok(conn))),
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::error!(%error, "a TLS handshake task failed");
                        continue;
                    }
                }
            }
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(Pin::new(&mut this.tcp).poll_next(cx)) {
                Some(Ok(stream)) => {
                    if let Some(conn) = this.accepted(stream) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Some(Err(error)) if is_connection_error(&error) => {
                    tracing::debug!(%error, "a connection failed before it was accepted");
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "accepting connections failed; pausing");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

/// Errors of one connection, not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One accepted connection. It closes itself (its reads end, its writes
/// fail) when it has had no call in flight for the idle timeout, when it
/// started no call before the first-request timeout, when the cap closes it
/// to make room, some time after refusing a call over a cap, or when the
/// shutdown's grace is over.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    /// Resolves when the shutdown's grace is over.
    shutdown: PollOnWake<WaitForCancellationFutureOwned>,
    /// Why else it closes: idle for too long, or refused.
    ending: Ending,
    /// Until its first call has started: the deadline for it.
    first_request: Option<Pin<Box<Sleep>>>,
    closed: Option<&'static str>,
    _slot: Slot,
}

impl Conn {
    fn new(io: Io, slot: Slot, deadline: Instant, settings: &Settings) -> Self {
        let info = ConnInfo(Arc::clone(&slot.conn));
        let shutdown = Box::pin(settings.closing.clone().cancelled_owned());
        let ending = if info.0.refused.is_none() {
            Ending::Idle(IdleTimer::new(settings.idle_timeout))
        } else {
            let shared = Arc::clone(&info.0);
            let lifetime = settings.first_request_timeout;
            Ending::Refused(PollOnWake::new(Box::pin(async move {
                tokio::select! {
                    () = tokio::time::sleep(lifetime) => {}
                    () = async {
                        shared.answered.notified().await;
                        tokio::time::sleep(REFUSED_LINGER).await;
                    } => {}
                }
            })))
        };
        Self {
            io,
            info,
            shutdown: PollOnWake::new(shutdown),
            ending,
            first_request: Some(Box::pin(tokio::time::sleep_until(deadline))),
            closed: None,
            _slot: slot,
        }
    }

    /// Whether the connection is closed, or must close now.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        if self.closed.is_some() {
            return self.closed;
        }
        let reason = if self.shutdown.poll(cx).is_ready() {
            Some("the shutdown's grace period is over")
        } else if let Some(reason) = self.poll_ending(cx) {
            Some(reason)
        } else if self.info.0.released.load(Ordering::Acquire) {
            Some("closed to make room for a new connection")
        } else {
            self.poll_first_request(cx)
        };
        if let Some(reason) = reason {
            tracing::debug!(peer = ?self.info.0.tcp.remote_addr, reason, "closing the connection");
            self.closed = Some(reason);
        }
        self.closed
    }

    /// Whether it must close for having started no call in time.
    fn poll_first_request(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        let deadline = self.first_request.as_mut()?;
        if self.info.0.calls.started.load(Ordering::Acquire) > 0 {
            self.first_request = None;
            return None;
        }
        deadline
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some("no request before the first-request timeout")
    }

    /// Whether it must close for want of calls: idle, or refused.
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        match &mut self.ending {
            Ending::Idle(timer) => timer.poll_expired(&self.info.0.calls, cx).then_some("idle"),
            Ending::Refused(refused) => refused
                .poll(cx)
                .is_ready()
                .then_some("over the connection cap"),
        }
    }

    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(
            Pin<&mut (dyn AsyncWrite + Send + Unpin)>,
            &mut Context<'_>,
        ) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(reason) = self.poll_closed(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                reason,
            )));
        }
        match &mut self.io {
            Io::Plain(stream) => write(Pin::new(stream), cx),
            Io::Tls(stream) => write(Pin::new(stream.as_mut()), cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.poll_closed(cx).is_some() {
            // The end of the stream: hyper ends the connection.
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_with(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection closes, besides the shutdown.
enum Ending {
    /// Admitted: when it has had no call in flight for a while.
    Idle(IdleTimer),
    /// Over a cap: some time after its refusal is answered, or at the
    /// first-request timeout.
    Refused(PollOnWake<dyn Future<Output = ()> + Send>),
}

/// The calls of one connection, counted by the calls and read by the
/// connection and by the cap.
#[derive(Default)]
struct Calls {
    in_flight: AtomicUsize,
    /// Calls started so far: tells the connection that calls came and went
    /// between two of its polls, and whether it ever sent a request.
    started: AtomicUsize,
    /// When its last call ended, as [`clock`] counts.
    idle_since: AtomicU64,
    /// The connection's task, woken when its last call in flight ends, and
    /// when the cap closes it.
    connection: AtomicWaker,
}

impl Calls {
    fn start(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(clock(), Ordering::Release);
            self.connection.wake();
        }
    }

    /// Without a call in flight: which goes first when the cap makes room,
    /// the least first. Those that never sent a request go before those
    /// that did, and of these the longest idle.
    fn idle_for_eviction(&self) -> Option<(bool, u64)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.started.load(Ordering::Acquire) == 0 {
            return Some((false, 0));
        }
        Some((true, self.idle_since.load(Ordering::Acquire)))
    }
}

/// Nanoseconds since the first call: a time that fits an atomic. The
/// system's clock, not tokio's, which tests pause and move.
fn clock() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Expires once a connection has had no call in flight for `after`. Its
/// timer exists only while no call is in flight: a connection holding a
/// stream open holds no timer.
struct IdleTimer {
    after: Duration,
    /// While idle: how many calls had started when the timer was set, and
    /// the timer.
    armed: Option<(usize, Pin<Box<Sleep>>)>,
}

impl IdleTimer {
    fn new(after: Duration) -> Self {
        Self { after, armed: None }
    }

    /// Whether the connection has been idle for long enough. The task is
    /// woken when its last call ends, and when the timer expires.
    fn poll_expired(&mut self, calls: &Calls, cx: &mut Context<'_>) -> bool {
        // Registered before the counts are read: an end in between wakes it.
        calls.connection.register(cx.waker());
        let started = calls.started.load(Ordering::Acquire);
        if calls.in_flight.load(Ordering::Acquire) > 0 {
            self.armed = None;
            return false;
        }
        let timer = match &mut self.armed {
            // Idle since the timer was set: no call started meanwhile.
            Some((armed_at, timer)) if *armed_at == started => timer,
            _ => {
                let timer = Box::pin(tokio::time::sleep(self.after));
                &mut self.armed.insert((started, timer)).1
            }
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

/// What the services know of a connection, in every request's extensions.
#[derive(Clone)]
pub struct ConnInfo(Arc<Shared>);

struct Shared {
    tcp: TcpConnectInfo,
    /// Whom the per-address cap counts it for, while that cap is on.
    client: Option<ClientKey>,
    /// The cap this connection is over, if it is.
    refused: Option<Refusal>,
    calls: Calls,
    /// Notified when a refused call has been answered.
    answered: Notify,
    /// Set once its places under the caps are given back: when it closes,
    /// or when the cap closes it to make room, which it then must.
    released: AtomicBool,
}

impl Shared {
    fn new(tcp: TcpConnectInfo, client: Option<ClientKey>, refused: Option<Refusal>) -> Arc<Self> {
        Arc::new(Self {
            tcp,
            client,
            refused,
            calls: Calls::default(),
            answered: Notify::new(),
            released: AtomicBool::new(false),
        })
    }
}

impl ConnInfo {
    /// The client's address (tonic's `Request::remote_addr` works too).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.tcp.remote_addr
    }

    fn call_started(&self) -> InFlight {
        self.0.calls.start();
        InFlight(Arc::clone(&self.0))
    }
}

/// One call in flight, until its response has been sent or dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.calls.end();
    }
}

/// Refuses the calls of connections over a cap, counts the calls in
/// flight on each connection, and holds HTTP/1.1 headers to the same size
/// limit that HTTP/2 applies to its header lists.
#[derive(Clone)]
pub struct ConnectionLayer {
    metrics: Arc<Metrics>,
    max_header_list_size: usize,
}

impl ConnectionLayer {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            max_header_list_size: limits.max_header_list_size as usize,
        }
    }
}

impl<S> Layer<S> for ConnectionLayer {
    type Service = ConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ConnectionLayer`].
#[derive(Clone)]
pub struct ConnectionService<S> {
    inner: S,
    layer: ConnectionLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for ConnectionService<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let info = request.extensions().get::<ConnInfo>().cloned();
        if let Some(refused) = info.as_ref().and_then(|info| info.0.refused) {
            self.layer.metrics.rejected(refused.limit());
            let response = refusal(&request, refused);
            if let Some(info) = &info {
                info.0.answered.notify_one();
            }
            return Box::pin(std::future::ready(Ok(response)));
        }
        // HTTP/2 enforces the limit itself (431 and a reset stream).
        if request.version() < Version::HTTP_2
            && header_list_size(request.headers()) > self.layer.max_header_list_size
        {
            let mut response = Response::new(tonic::body::Body::empty());
            *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Box::pin(std::future::ready(Ok(response)));
        }
        let in_flight = info.map(|info| {
            request.extensions_mut().insert(info.0.tcp.clone());
            info.call_started()
        });
        let responding = self.inner.call(request);
        Box::pin(async move {
            let response = responding.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(CallBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// The answer to a call on a connection over a cap: RESOURCE_EXHAUSTED
/// for gRPC and grpc-web, 503 for anything else.
fn refusal<B>(request: &Request<B>, refused: Refusal) -> Response<tonic::body::Body> {
    let message = refused.message();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .filter(|value| value.as_bytes().starts_with(b"application/grpc"));
    let mut response = match content_type {
        Some(content_type) => {
            let mut response = Status::resource_exhausted(message).into_http();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
            response
        }
        None => {
            let mut response =
                Response::new(tonic::body::Body::new(axum::body::Body::from(message)));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    };
    if request.version() < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The size of a header list as HTTP/2 counts it (RFC 9113, 6.5.2): each
/// name and value, plus 32 bytes per field.
fn header_list_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// A response body that keeps its call counted as in flight.
struct CallBody {
    inner: tonic::body::Body,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for CallBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Holds gRPC messages to `max` bytes: a call that sends a larger one fails
/// with RESOURCE_EXHAUSTED naming the limit, as the gRPC spec asks (tonic's
/// own check answers OUT_OF_RANGE). Goes inside grpc-web's translation, so
/// it sees the plain gRPC framing of every call.
#[derive(Clone)]
pub struct MessageLimitLayer {
    max: usize,
}

impl MessageLimitLayer {
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            max: self.max,
        }
    }
}

/// The service of [`MessageLimitLayer`].
#[derive(Clone)]
pub struct MessageLimit<S> {
    inner: S,
    max: usize,
}

impl<S> Service<Request<axum::body::Body>> for MessageLimit<S>
where
    S: Service<Request<axum::body::Body>, Response = Response<axum::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<axum::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<axum::body::Body>) -> Self::Future {
        let too_large = Arc::new(TooLarge {
            max: self.max,
            found: OnceLock::new(),
            response: AtomicWaker::new(),
        });
        let request = request.map(|body| {
            axum::body::Body::new(LimitedBody {
                inner: body,
                frames: FrameReader::default(),
                too_large: Arc::clone(&too_large),
                done: false,
            })
        });
        let responding = self.inner.call(request);
        Box::pin(async move {
            let response = responding.await?;
            // A trailers-only answer already carries the call's status.
            if response.headers().contains_key("grpc-status") {
                return Ok(response);
            }
            Ok(response.map(|body| {
                axum::body::Body::new(EndsWhenTooLarge {
                    inner: body,
                    too_large,
                    done: false,
                })
            }))
        })
    }
}

/// A call's message over the limit, once its request body has shown one.
struct TooLarge {
    max: usize,
    found: OnceLock<usize>,
    /// The response body's task, woken when the request body finds one.
    response: AtomicWaker,
}

impl TooLarge {
    fn status(&self) -> Status {
        let found = self.found.get().copied().unwrap_or_default();
        Status::resource_exhausted(format!(
            "message too large: {found} bytes, the limit is {} bytes",
            self.max
        ))
    }
}

/// Follows the gRPC framing of a request body (a flag byte and a 4-byte
/// length before each message) to see each message's length first.
#[derive(Default)]
struct FrameReader {
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    payload_left: usize,
}

impl FrameReader {
    /// Reads a chunk; the length of the first message over `max`, if any.
    fn read(&mut self, mut chunk: &[u8], max: usize) -> Option<usize> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(chunk.len());
                self.payload_left -= skip;
                chunk.advance(skip);
                continue;
            }
            let take = (5 - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk.advance(take);
            if self.header_len == 5 {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > max {
                    return Some(len);
                }
                self.payload_left = len;
            }
        }
        None
    }
}

/// A request body that fails at the first message over the limit.
struct LimitedBody {
    inner: axum::body::Body,
    frames: FrameReader,
    too_large: Arc<TooLarge>,
    done: bool,
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(Status::from_error(error.into())))),
            None => return Poll::Ready(None),
        };
        let max = this.too_large.max;
        if let Some(found) = frame
            .data_ref()
            .and_then(|data| this.frames.read(data, max))
        {
            this.done = true;
            let _ = this.too_large.found.set(found);
            this.too_large.response.wake();
            return Poll::Ready(Some(Err(this.too_large.status())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

/// A response that ends with the request's RESOURCE_EXHAUSTED as soon as
/// its request sent a message over the limit. The handler of a stream only
/// sees its input fail; the client must learn why.
struct EndsWhenTooLarge {
    inner: axum::body::Body,
    too_large: Arc<TooLarge>,
    done: bool,
}

impl http_body::Body for EndsWhenTooLarge {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        // Registered before the check: a message found in between wakes it.
        this.too_large.response.register(cx.waker());
        if this.too_large.found.get().is_some() {
            this.done = true;
            let mut trailers = HeaderMap::new();
            if let Err(error) = this.too_large.status().add_header(&mut trailers) {
                tracing::error!(%error, "encoding a status");
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() {
            this.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use chat_fanout::test_support::WakeCounter;

    const IDLE: Duration = Duration::from_secs(10);
    const TICK: Duration = Duration::from_millis(1);

    fn expired(timer: &mut IdleTimer, calls: &Calls) -> bool {
        timer.poll_expired(calls, &mut Context::from_waker(Waker::noop()))
    }

    /// Not expired a tick before `IDLE` has passed, expired once it has.
    async fn expires_one_idle_time_from_now(timer: &mut IdleTimer, calls: &Calls) {
        tokio::time::advance(IDLE - TICK).await;
        assert!(!expired(timer, calls));
        tokio::time::advance(TICK).await;
        assert!(expired(timer, calls));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_calls_expires_after_the_idle_time() {
        let (calls, mut timer) = (Calls::default(), IdleTimer::new(IDLE));
        assert!(!expired(&mut timer, &calls));
        expires_one_idle_time_from_now(&mut timer, &calls).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_flight_holds_no_timer_and_its_end_starts_the_wait() {
        let (calls, mut timer) = (Calls::default(), IdleTimer::new(IDLE));
        assert!(!expired(&mut timer, &calls));
        calls.start();
        assert!(!expired(&mut timer, &calls));
        assert!(timer.armed.is_none(), "no timer while a call is in flight");
        tokio::time::advance(IDLE * 2).await;
        assert!(!expired(&mut timer, &calls));

        calls.end();
        assert!(!expired(&mut timer, &calls));
        expires_one_idle_time_from_now(&mut timer, &calls).await;
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_came_and_went_between_two_polls_restart_the_wait() {
        let (calls, mut timer) = (Calls::default(), IdleTimer::new(IDLE));
        assert!(!expired(&mut timer, &calls));
        tokio::time::advance(IDLE - TICK).await;
        calls.start();
        calls.end();
        tokio::time::advance(TICK).await;
        assert!(!expired(&mut timer, &calls));
        expires_one_idle_time_from_now(&mut timer, &calls).await;
    }

    #[test]
    fn the_connection_is_woken_when_its_last_call_ends() {
        let (calls, mut timer) = (Calls::default(), IdleTimer::new(IDLE));
        let (woken, waker) = WakeCounter::new();
        calls.start();
        calls.start();
        assert!(!timer.poll_expired(&calls, &mut Context::from_waker(&waker)));
        calls.end();
        assert_eq!(woken.wakes(), 0, "a call is still in flight");
        calls.end();
        assert_eq!(woken.wakes(), 1);
    }

    fn framed(len: u32) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.resize(5 + len as usize, b'x');
        frame
    }

    #[test]
    fn the_frame_reader_finds_a_message_over_the_limit_across_chunks() {
        let mut stream = framed(10);
        stream.extend(framed(3));
        stream.extend(&framed(100)[..5]);
        let mut reader = FrameReader::default();

        let found: Vec<_> = stream
            .chunks(2)
            .map(|chunk| reader.read(chunk, 10))
            .collect();

        assert_eq!(found.iter().flatten().collect::<Vec<_>>(), [&100]);
        assert_eq!(found.last(), Some(&Some(100)));
    }

    #[test]
    fn the_frame_reader_lets_messages_at_the_limit_pass() {
        let mut reader = FrameReader::default();

        assert_eq!(reader.read(&framed(10), 10), None);
        assert_eq!(reader.read(&framed(0), 10), None);
        assert_eq!(reader.read(&framed(11)[..5], 10), Some(11));
    }

    #[test]
    fn the_header_list_size_counts_32_bytes_per_field() {
        let mut headers = HeaderMap::new();
        headers.insert("a", HeaderValue::from_static("bc"));
        headers.insert("de", HeaderValue::from_static(""));

        assert_eq!(header_list_size(&headers), 3 + 32 + 2 + 32);
    }

    fn admissions(max: usize, max_per_address: usize) -> Admissions {
        Admissions::new(Arc::new(Cap {
            max,
            max_per_address,
            served: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            per_address: Mutex::default(),
            metrics: Metrics::new(),
        }))
    }

    fn from(address: &str) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(SocketAddr::new(address.parse().unwrap(), 40_000)),
        }
    }

    fn served(admission: Admission) -> Slot {
        match admission {
            Admission::Served(slot) => slot,
            Admission::Refused(slot) => panic!("refused: {:?}", slot.conn.refused),
            Admission::Dropped => panic!("dropped"),
        }
    }

    fn refused(admission: Admission) -> Refusal {
        match admission {
            Admission::Refused(slot) => slot.conn.refused.unwrap(),
            Admission::Served(_) => panic!("served"),
            Admission::Dropped => panic!("dropped"),
        }
    }

    fn closed_to_make_room(slot: &Slot) -> bool {
        slot.conn.released.load(Ordering::Acquire)
    }

    #[test]
    fn a_newcomer_at_the_cap_closes_an_idle_connection_and_never_a_busy_one() {
        let mut admissions = admissions(2, 0);
        let busy = served(admissions.admit(from("10.0.0.1")));
        busy.conn.calls.start();
        let idle = served(admissions.admit(from("10.0.0.2")));

        let newcomer = served(admissions.admit(from("10.0.0.3")));
        newcomer.conn.calls.start();
        let refusal = refused(admissions.admit(from("10.0.0.4")));

        assert!(closed_to_make_room(&idle));
        assert!(!closed_to_make_room(&busy) && !closed_to_make_room(&newcomer));
        assert_eq!(refusal, Refusal::Node(2));
        drop(idle);
        assert_eq!(
            admissions.cap.served.load(Ordering::Acquire),
            2,
            "released once"
        );
    }

    #[test]
    fn connections_that_never_called_make_room_first_then_the_longest_idle() {
        let mut admissions = admissions(3, 0);
        let first_idle = served(admissions.admit(from("10.0.0.1")));
        let silent = served(admissions.admit(from("10.0.0.2")));
        let last_idle = served(admissions.admit(from("10.0.0.3")));
        for slot in [&first_idle, &last_idle] {
            slot.conn.calls.start();
        }
        first_idle.conn.calls.end();
        std::thread::sleep(Duration::from_millis(2));
        last_idle.conn.calls.end();

        let (mut closed, mut newcomers) = (Vec::new(), Vec::new());
        for address in ["10.0.1.1", "10.0.1.2"] {
            let newcomer = served(admissions.admit(from(address)));
            newcomer.conn.calls.start();
            newcomers.push(newcomer);
            closed.push([&first_idle, &silent, &last_idle].map(closed_to_make_room));
        }

        assert_eq!(closed, [[false, true, false], [true, true, false]]);
    }

    #[test]
    fn a_client_address_over_its_cap_is_refused_and_an_ipv6_client_is_its_64() {
        let mut admissions = admissions(100, 2);
        let mut open = Vec::new();
        for address in ["10.0.0.1", "10.0.0.1", "2001:db8::1", "2001:db8::ffff:1"] {
            open.push(served(admissions.admit(from(address))));
        }

        let refusals = ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::2"]
            .map(|address| refused(admissions.admit(from(address))));

        assert_eq!(refusals, [Refusal::Address(2); 3]);
        for other in ["10.0.0.2", "2001:db8:0:1::1"] {
            served(admissions.admit(from(other)));
        }
        open.remove(0);
        served(admissions.admit(from("10.0.0.1")));
    }

    #[test]
    fn a_client_address_at_its_cap_closes_no_idle_connection_of_others() {
        let mut admissions = admissions(2, 1);
        let idle = served(admissions.admit(from("10.0.0.1")));
        let _busy = served(admissions.admit(from("10.0.0.2")));

        let refusal = refused(admissions.admit(from("10.0.0.2")));

        assert_eq!(refusal, Refusal::Address(1));
        assert!(!closed_to_make_room(&idle));
    }

    #[test]
    fn the_line_of_connections_keeps_no_more_than_twice_those_served() {
        let mut admissions = admissions(10_000, 0);
        let kept: Vec<_> = (0..10)
            .map(|_| served(admissions.admit(from("10.0.0.1"))))
            .collect();

        for _ in 0..1_000 {
            drop(served(admissions.admit(from("10.0.0.2"))));
        }

        assert!(admissions.line.len() <= 2 * EVICTION_CANDIDATES + 1);
        assert_eq!(admissions.cap.served.load(Ordering::Acquire), kept.len());
    }
}
