//! Sealed gossip: every UDP datagram chitchat sends is encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived from the cluster secret (the join token), and every
//! datagram received must open under that key before chitchat sees it.
//!
//! Wire format (version 1), one UDP datagram:
//!
//! ```text
//! 0xC1 | nonce (24 random bytes) | AEAD( sent-at unix ms (u64 BE) | chitchat datagram )
//! ```
//!
//! The leading format byte is authenticated as associated data. The random 24-byte nonce makes
//! nonce reuse under one key negligible without any per-node counter to persist.
//!
//! Replay: a captured datagram opens again, so it is only accepted while its sent-at time is
//! within [`MAX_SKEW`] of the receiver's clock. Inside that window a replay carries nothing new
//! to chitchat (its heartbeats and key versions are older than or equal to what the receiver
//! already holds, so they are ignored); a replayed `Syn` makes the receiver answer the spoofed
//! source address with a sealed reply the attacker cannot read. Outsiders cannot create, alter
//! or read packets, so they cannot hide a node's heartbeats or vote it out.
//!
//! chitchat 0.13 keeps its datagram encoding private, so [`SealedTransport`] borrows it through
//! loopback: a chitchat `UdpSocket` bound to 127.0.0.1 serialises an outgoing envelope into a
//! capture socket (we seal the bytes and send them from the public socket) and parses opened
//! plaintext that we hand it from a per-peer relay socket (the relay's address tells us which
//! peer it came from). Plaintext never leaves the host; anything reaching the loopback sockets
//! from elsewhere is dropped.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// BLAKE3 key-derivation context for the gossip key (fixed forever for format version 1).
pub const KEY_CONTEXT: &str = "cairn 2026 gossip v1";
/// First byte of every sealed datagram.
pub const FORMAT_V1: u8 = 0xC1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const TIME_LEN: usize = 8;
/// Bytes a sealed datagram adds to chitchat's.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN + TIME_LEN;
/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// How far a packet's sent-at time may be from the receiver's clock. Generous, so ordinary
/// clock drift never partitions gossip; replays older than this are refused.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Peers we keep a loopback relay for; a cluster has far fewer nodes. Only senders whose
/// packets opened get one, so outsiders cannot grow this.
const MAX_RELAYS: usize = 256;
/// At most one warning per reason in this period (a flood must not flood the log too).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a datagram was dropped (the `reason` label of `gossip_packets_dropped`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Too short, or not our format byte: not a sealed Cairn packet at all.
    Malformed,
    /// Did not open under the cluster key: another cluster, an outsider, or tampered bytes.
    Unauthenticated,
    /// Opened, but sent more than `MAX_SKEW` away from now: a replay (or a badly set clock).
    Stale,
    /// Reached one of the loopback codec sockets from somewhere other than our relays.
    Local,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Stale => "stale",
            DropReason::Local => "local",
        }
    }
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: DropReason,
}

/// The drop counter, shared by the socket and the `Gossip` handle that exposes it.
pub type DropCounter = Family<DropLabels, Counter>;

/// The cluster's gossip cipher.
#[derive(Clone)]
pub struct GossipKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(..)")
    }
}

impl GossipKey {
    /// `blake3::derive_key("cairn 2026 gossip v1", secret)`.
    pub fn derive(secret: &str) -> Self {
        let key = blake3::derive_key(KEY_CONTEXT, secret.as_bytes());
        GossipKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Seals `plain` as sent at `now_ms` (unix milliseconds) with a fresh random nonce.
    pub fn seal(&self, plain: &[u8], now_ms: u64) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut msg = Vec::with_capacity(TIME_LEN + plain.len());
        msg.extend_from_slice(&now_ms.to_be_bytes());
        msg.extend_from_slice(plain);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &msg,
                    aad: &[FORMAT_V1],
                },
            )
            // XChaCha20-Poly1305 only fails for messages beyond 256 GiB; datagrams are < 64 KiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a datagram received at `now_ms`, returning chitchat's bytes.
    pub fn open(&self, packet: &[u8], now_ms: u64) -> Result<Vec<u8>, DropReason> {
        if packet.len() < OVERHEAD || packet[0] != FORMAT_V1 {
            return Err(DropReason::Malformed);
        }
        let msg = self.decrypt(packet)?;
        check_time(msg, now_ms)
    }

    /// The AEAD step of [`GossipKey::open`], for a packet already checked to be well formed.
    fn decrypt(&self, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
        let (nonce, sealed) = packet[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[FORMAT_V1],
                },
            )
            .map_err(|_| DropReason::Unauthenticated)
    }
}

/// Splits an opened message into its sent-at time and chitchat's bytes, refusing stale ones.
fn check_time(msg: Vec<u8>, now_ms: u64) -> Result<Vec<u8>, DropReason> {
    let (time, plain) = msg.split_at(TIME_LEN);
    let mut sent = [0u8; TIME_LEN];
    sent.copy_from_slice(time);
    let sent_ms = u64::from_be_bytes(sent);
    if now_ms.abs_diff(sent_ms) > MAX_SKEW.as_millis() as u64 {
        return Err(DropReason::Stale);
    }
    Ok(plain.to_vec())
}

/// The gossip keys of a node, as in Consul's keyring: packets are sealed under the primary
/// (`CLUSTER_JOIN_TOKEN`) only, and open under the primary or any accepted key
/// (`CLUSTER_JOIN_TOKEN_ACCEPT`), so the token can be rotated by rolling restarts without nodes
/// on either token losing sight of each other. The packet format is the same: a node that
/// knows only one of the tokens opens the packets sealed under it.
#[derive(Clone, Debug)]
pub struct GossipKeyring {
    primary: GossipKey,
    accepted: Vec<GossipKey>,
}

impl GossipKeyring {
    /// Derives the primary key from `primary` and one more key from each `accepted` token.
    pub fn derive(primary: &str, accepted: &[String]) -> Self {
        GossipKeyring {
            primary: GossipKey::derive(primary),
            accepted: accepted.iter().map(|t| GossipKey::derive(t)).collect(),
        }
    }

    /// Seals under the primary key only.
    pub fn seal(&self, plain: &[u8], now_ms: u64) -> Vec<u8> {
        self.primary.seal(plain, now_ms)
    }

    /// Opens a datagram sealed under any key of the ring (primary first).
    pub fn open(&self, packet: &[u8], now_ms: u64) -> Result<Vec<u8>, DropReason> {
        if packet.len() < OVERHEAD || packet[0] != FORMAT_V1 {
            return Err(DropReason::Malformed);
        }
        let msg = std::iter::once(&self.primary)
            .chain(&self.accepted)
            .find_map(|k| k.decrypt(packet).ok())
            .ok_or(DropReason::Unauthenticated)?;
        check_time(msg, now_ms)
    }
}

impl From<GossipKey> for GossipKeyring {
    fn from(primary: GossipKey) -> Self {
        GossipKeyring {
            primary,
            accepted: Vec::new(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// chitchat transport whose sockets seal and open every datagram with `key`.
pub struct SealedTransport {
    pub key: GossipKeyring,
    pub dropped: DropCounter,
}

#[async_trait]
impl Transport for SealedTransport {
    async fn open(&self, bind: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = tokio::net::UdpSocket::bind(bind)
            .await
            .with_context(|| format!("failed to bind to {bind}/UDP for gossip"))?;
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let codec = UdpSocket::open(loopback).await?;
        let codec_addr = codec.local_addr()?;
        let capture = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("binding the gossip capture socket on 127.0.0.1")?;
        let capture_addr = capture.local_addr()?;
        Ok(Box::new(SealedSocket {
            key: self.key.clone(),
            dropped: self.dropped.clone(),
            public,
            codec,
            codec_addr,
            capture,
            capture_addr,
            relays: Relays::default(),
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            last_warn: HashMap::new(),
        }))
    }
}

/// Loopback relay sockets, one per peer whose packets opened, so the codec socket's
/// "from" address maps back to the peer.
#[derive(Default)]
struct Relays {
    /// Plain non-blocking std sockets: relays only send, and a std `send_to` goes straight to
    /// the kernel, where a fresh tokio socket would report WouldBlock until the reactor has
    /// seen it writable (losing the first packet from every new peer).
    by_peer: HashMap<SocketAddr, std::net::UdpSocket>,
    peer_of: HashMap<SocketAddr, SocketAddr>,
    /// Insertion order, to evict the oldest when full.
    order: VecDeque<SocketAddr>,
}

impl Relays {
    fn get_or_create(&mut self, peer: SocketAddr) -> io::Result<&std::net::UdpSocket> {
        if !self.by_peer.contains_key(&peer) {
            if self.order.len() >= MAX_RELAYS {
                if let Some(old) = self.order.pop_front() {
                    if let Some(sock) = self.by_peer.remove(&old) {
                        if let Ok(addr) = sock.local_addr() {
                            self.peer_of.remove(&addr);
                        }
                    }
                }
            }
            let sock = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            sock.set_nonblocking(true)?;
            self.peer_of.insert(sock.local_addr()?, peer);
            self.by_peer.insert(peer, sock);
            self.order.push_back(peer);
        }
        self.by_peer
            .get(&peer)
            .ok_or_else(|| io::Error::other("relay vanished"))
    }
}

struct SealedSocket {
    key: GossipKeyring,
    dropped: DropCounter,
    /// The node's gossip address: only sealed bytes go in and out here.
    public: tokio::net::UdpSocket,
    /// chitchat's own socket, used as its codec over loopback.
    codec: UdpSocket,
    codec_addr: SocketAddr,
    /// Receives what `codec` serialises on send.
    capture: tokio::net::UdpSocket,
    capture_addr: SocketAddr,
    relays: Relays,
    buf: Box<[u8]>,
    last_warn: HashMap<DropReason, Instant>,
}

impl SealedSocket {
    fn drop_packet(&mut self, reason: DropReason, from: SocketAddr, len: usize) {
        self.dropped.get_or_create(&DropLabels { reason }).inc();
        let now = Instant::now();
        let due = self
            .last_warn
            .get(&reason)
            .is_none_or(|t| now.duration_since(*t) >= WARN_EVERY);
        if due {
            self.last_warn.insert(reason, now);
            tracing::warn!(%from, len, reason = reason.as_str(),
                "gossip: dropped a packet that is not sealed with this cluster's key (further drops counted in cairn_gossip_packets_dropped_total)");
        } else {
            tracing::debug!(%from, len, reason = reason.as_str(), "gossip: dropped packet");
        }
    }

    /// Opens one datagram from the public socket and hands its plaintext to the codec.
    /// Synchronous after the receive, so a cancelled `recv` loses at most this datagram.
    fn accept(&mut self, len: usize, from: SocketAddr) {
        let plain = match self.key.open(&self.buf[..len], now_ms()) {
            Ok(p) => p,
            Err(reason) => return self.drop_packet(reason, from, len),
        };
        let codec_addr = self.codec_addr;
        match self.relays.get_or_create(from) {
            Ok(relay) => {
                if let Err(e) = relay.send_to(&plain, codec_addr) {
                    tracing::debug!(%from, "gossip: loopback relay busy, packet lost: {e}");
                }
            }
            Err(e) => tracing::warn!(%from, "gossip: no loopback relay: {e}"),
        }
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public
            .local_addr()
            .context("failed to get the gossip socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // Anything left over (a send cancelled half-way, a stray local datagram) must not be
        // mistaken for this envelope's bytes.
        while self.capture.try_recv_from(&mut self.buf).is_ok() {}
        self.codec.send(self.capture_addr, envelope).await?;
        let len = loop {
            let (len, from) = tokio::time::timeout(
                Duration::from_secs(1),
                self.capture.recv_from(&mut self.buf),
            )
            .await
            .context("gossip: loopback encoder did not answer")??;
            if from == self.codec_addr {
                break len;
            }
        };
        let sealed = self.key.seal(&self.buf[..len], now_ms());
        if sealed.len() > MAX_DATAGRAM {
            anyhow::bail!(
                "gossip packet of {} bytes is too large once sealed",
                sealed.len()
            );
        }
        let num_bytes_sent = self
            .public
            .send_to(&sealed, to)
            .await
            .context("failed to send a gossip packet")?;
        Ok(SendOutcome { num_bytes_sent })
    }

    /// Cancel-safe, as chitchat requires: both awaited receives are, and a datagram is either
    /// fully handed on or dropped before the next await.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            tokio::select! {
                biased;
                opened = self.codec.recv() => {
                    let mut outcome = opened?;
                    match self.relays.peer_of.get(&outcome.from_addr) {
                        Some(peer) => {
                            outcome.from_addr = *peer;
                            return Ok(outcome);
                        }
                        None => {
                            let from = outcome.from_addr;
                            let len = outcome.num_bytes_received;
                            self.drop_packet(DropReason::Local, from, len);
                        }
                    }
                }
                received = self.public.recv_from(&mut self.buf) => match received {
                    Ok((len, from)) => self.accept(len, from),
                    // ICMP errors from earlier sends surface here on Linux; the socket is fine.
                    Err(e) if matches!(e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {}
                    Err(e) => return Err(e).context("gossip socket receive failed"),
                },
            }
        }
    }
}

const REASONS: [DropReason; 4] = [
    DropReason::Malformed,
    DropReason::Unauthenticated,
    DropReason::Stale,
    DropReason::Local,
];

/// A drop counter with every reason present (at 0), so dashboards see the series at once.
pub fn drop_counter() -> DropCounter {
    let c = DropCounter::default();
    for reason in REASONS {
        let _ = c.get_or_create(&DropLabels { reason });
    }
    c
}

/// Total of every drop reason.
pub fn total(dropped: &DropCounter) -> u64 {
    REASONS
        .into_iter()
        .map(|reason| dropped.get_or_create(&DropLabels { reason }).get())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn seal_open_round_trip() {
        let k = GossipKey::derive("token");
        for plain in [&b""[..], b"x", &[7u8; 1500][..]] {
            let sealed = k.seal(plain, NOW);
            assert_eq!(sealed.len(), plain.len() + OVERHEAD);
            assert_eq!(k.open(&sealed, NOW + 10).unwrap(), plain);
        }
        // Fresh nonce each time: sealing twice never gives the same bytes.
        assert_ne!(k.seal(b"same", NOW), k.seal(b"same", NOW));
    }

    #[test]
    fn wrong_key_is_dropped() {
        let sealed = GossipKey::derive("token").seal(b"hello", NOW);
        assert_eq!(
            GossipKey::derive("other token").open(&sealed, NOW),
            Err(DropReason::Unauthenticated)
        );
    }

    #[test]
    fn every_tampered_byte_is_dropped() {
        let k = GossipKey::derive("token");
        let sealed = k.seal(b"heartbeat 42", NOW);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            let want = if i == 0 {
                DropReason::Malformed
            } else {
                DropReason::Unauthenticated
            };
            assert_eq!(k.open(&t, NOW), Err(want), "byte {i}");
        }
    }

    #[test]
    fn truncated_or_extended_packets_are_dropped() {
        let k = GossipKey::derive("token");
        let sealed = k.seal(b"heartbeat 42", NOW);
        for len in 0..sealed.len() {
            assert!(k.open(&sealed[..len], NOW).is_err(), "length {len}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(k.open(&longer, NOW), Err(DropReason::Unauthenticated));
    }

    #[test]
    fn plain_chitchat_bytes_are_dropped() {
        // chitchat's magic number starts its datagrams; it is not our format byte.
        let k = GossipKey::derive("token");
        let mut plain = vec![0x5a, 0x16, 0, 0];
        plain.extend_from_slice(&[0u8; 80]);
        assert_eq!(k.open(&plain, NOW), Err(DropReason::Malformed));
    }

    #[test]
    fn replays_outside_the_window_are_dropped() {
        let k = GossipKey::derive("token");
        let sealed = k.seal(b"old", NOW);
        let skew = MAX_SKEW.as_millis() as u64;
        assert!(k.open(&sealed, NOW + skew).is_ok());
        assert_eq!(k.open(&sealed, NOW + skew + 1), Err(DropReason::Stale));
        assert_eq!(k.open(&sealed, NOW - skew - 1), Err(DropReason::Stale));
    }

    #[test]
    fn key_is_the_documented_derivation() {
        // The e2e attacker and other implementations rely on exactly this derivation.
        let k = blake3::derive_key("cairn 2026 gossip v1", b"token");
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&k));
        let sealed = GossipKey::derive("token").seal(b"abc", NOW);
        let msg = cipher
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload {
                    msg: &sealed[25..],
                    aad: &[FORMAT_V1],
                },
            )
            .unwrap();
        assert_eq!(&msg[8..], b"abc");
        assert_eq!(u64::from_be_bytes(msg[..8].try_into().unwrap()), NOW);
    }

    #[test]
    fn keyring_opens_under_any_key_and_seals_under_the_primary_only() {
        let ring = GossipKeyring::derive("new", &["old".to_string()]);
        // Packets from nodes on either token open.
        for token in ["new", "old"] {
            let sealed = GossipKey::derive(token).seal(b"hb", NOW);
            assert_eq!(ring.open(&sealed, NOW).unwrap(), b"hb", "{token}");
        }
        // A stranger's key does not, and is counted as unauthenticated.
        let sealed = GossipKey::derive("other").seal(b"hb", NOW);
        assert_eq!(ring.open(&sealed, NOW), Err(DropReason::Unauthenticated));
        // What the ring seals opens under the primary alone (same format, so nodes that only
        // know the new token read it) and not under an accepted key.
        let sealed = ring.seal(b"hb", NOW);
        assert_eq!(sealed.len(), 2 + OVERHEAD);
        assert_eq!(GossipKey::derive("new").open(&sealed, NOW).unwrap(), b"hb");
        assert_eq!(
            GossipKey::derive("old").open(&sealed, NOW),
            Err(DropReason::Unauthenticated)
        );
        // The other checks still apply whatever key opens the packet.
        let old = GossipKey::derive("old").seal(b"hb", NOW);
        let skew = MAX_SKEW.as_millis() as u64;
        assert_eq!(ring.open(&old, NOW + skew + 1), Err(DropReason::Stale));
        let mut tampered = old.clone();
        tampered[30] ^= 1;
        assert_eq!(ring.open(&tampered, NOW), Err(DropReason::Unauthenticated));
        assert_eq!(ring.open(&old[..10], NOW), Err(DropReason::Malformed));
        // A ring without accepted tokens is the plain key.
        let alone = GossipKeyring::from(GossipKey::derive("new"));
        assert!(alone.open(&old, NOW).is_err());
        assert!(alone.open(&ring.seal(b"x", NOW), NOW).is_ok());
    }

    proptest::proptest! {
        /// Issue 10 item 8: whatever arrives, `open` answers without panicking, and nothing
        /// not sealed under the key opens; whatever is sealed opens to the same bytes.
        #[test]
        fn fuzz_open_arbitrary_datagrams(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            with_format in proptest::prelude::any::<bool>(),
        ) {
            let k = GossipKey::derive("token");
            let mut bytes = bytes;
            if with_format && !bytes.is_empty() {
                bytes[0] = FORMAT_V1;
            }
            proptest::prop_assert!(k.open(&bytes, NOW).is_err());
        }

        #[test]
        fn fuzz_seal_round_trips(
            plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            secret in "\\PC{1,30}",
        ) {
            let k = GossipKey::derive(&secret);
            let sealed = k.seal(&plain, NOW);
            proptest::prop_assert_eq!(k.open(&sealed, NOW), Ok(plain));
        }
    }
}
