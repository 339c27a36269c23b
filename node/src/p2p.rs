//! The libp2p network: TCP + noise + yamux between validators only.
//!
//! - Only the validators named in genesis may connect (allow-list by peer id).
//! - Consensus messages go point to point over request-response
//!   (`/phalanx/consensus/1`, acknowledged with an empty response).
//! - Transaction batches go from the node that accepted them straight to
//!   every other validator over request-response (`/phalanx/txs/1`),
//!   acknowledged and retried (see `txpush.rs`); transactions carry their
//!   own signatures, so nothing else signs them.
//! - Block sync is request-response (`/phalanx/sync/1`), served from the store.
//! - Dropped connections are redialled with exponential backoff.
//! - Caps: message size, connections, outstanding messages per peer; a
//!   handshake must finish in time and a stranger's address holds few
//!   pending slots (`admission.rs`).
//!
//! This task never interprets consensus messages; it hands bytes to the driver.

use crate::metrics::DropReason;
use crate::txpush::PushQueues;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
};
use phalanx_ledger::{Block, Height, Store, ValidatorIndex};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const CONSENSUS_PROTOCOL: &str = "/phalanx/consensus/1";
const SYNC_PROTOCOL: &str = "/phalanx/sync/1";
const TXS_PROTOCOL: &str = "/phalanx/txs/1";
/// Most blocks in one sync response.
const SYNC_MAX_BLOCKS: u64 = phalanx_runtime::SYNC_MAX_BLOCKS;

/// What the driver asks the network to do.
#[derive(Debug)]
pub enum NetCommand {
    /// Send consensus bytes to one validator.
    Send {
        /// The recipient.
        to: ValidatorIndex,
        /// Encoded message.
        bytes: Arc<Vec<u8>>,
    },
    /// Send consensus bytes to every other validator.
    Broadcast(Arc<Vec<u8>>),
    /// Push an encoded batch of transactions to every other validator.
    PushTxs(Vec<u8>),
    /// Fetch certified blocks from `from` upwards from some peer.
    Sync {
        /// First height wanted.
        from: Height,
    },
    /// Fault injection (a partition): close every connection to these
    /// validators and refuse new ones; validators left out are allowed
    /// again. An empty list heals.
    Block(Vec<ValidatorIndex>),
}

/// What the network reports to the driver.
#[derive(Debug)]
pub enum NetEvent {
    /// Consensus bytes from a validator (authenticated by noise as that peer).
    Consensus {
        /// The sending validator.
        from: ValidatorIndex,
        /// Encoded message.
        bytes: Vec<u8>,
        /// Its bytes in the sender's inbound budget, given back when the
        /// event is dropped (`None` where no budget applies, in tests).
        _held: Option<crate::inbound::Held>,
    },
    /// An encoded batch of transactions pushed by a validator.
    Txs(Vec<u8>),
    /// Blocks from a sync response (untrusted; the engine verifies them).
    SyncBlocks(Vec<Block>),
    /// The set of connected validators changed.
    Peers(Vec<u32>),
    /// Something from (or for) a peer was dropped.
    Dropped(DropReason),
}

#[derive(Serialize, Deserialize)]
struct SyncRequest {
    from: Height,
    max_blocks: u64,
    /// A block locator (Bitcoin's getheaders idea): the requester's block
    /// hashes at heights `from − 1`, `from − 2`, `from − 4`, … down to
    /// genesis. The server answers from just above the highest one it
    /// also has, so a node on another branch (proof of work or stake)
    /// gets the blocks from the fork point in one round trip.
    locator: Vec<(Height, phalanx_crypto::Hash)>,
}

/// Length-prefixed raw bytes with a size cap.
#[derive(Clone, Debug)]
struct BytesCodec {
    max: usize,
}

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| std::io::Error::other("message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Arc<Vec<u8>>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Arc<Vec<u8>>> {
        read_frame(io, self.max).await.map(Arc::new)
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io, self.max).await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Arc<Vec<u8>>,
    ) -> std::io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &res).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    admission: crate::admission::Admission,
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    txs: request_response::Behaviour<BytesCodec>,
    consensus: request_response::Behaviour<BytesCodec>,
    sync: request_response::Behaviour<BytesCodec>,
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This node's libp2p identity.
    pub keypair: libp2p::identity::Keypair,
    /// Where to listen.
    pub listen: Multiaddr,
    /// Every validator's peer id and address, in index order.
    pub validators: Vec<(PeerId, Multiaddr)>,
    /// This node's index.
    pub me: ValidatorIndex,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Most established connections.
    pub max_connections: u32,
    /// Most outstanding messages per peer.
    pub peer_queue: usize,
    /// Bytes each validator may have queued for the driver.
    pub inbound: std::sync::Arc<crate::inbound::InboundBudget>,
}

/// The peer id of an ed25519 node key.
pub fn peer_id_of(node_key: &phalanx_crypto::PublicKey) -> anyhow::Result<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(node_key.as_bytes())?;
    Ok(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        ed,
    )))
}

struct Net {
    swarm: libp2p::Swarm<Behaviour>,
    cfg: NetConfig,
    store: Arc<dyn Store>,
    events: mpsc::Sender<NetEvent>,
    index_of: HashMap<PeerId, ValidatorIndex>,
    connected: HashMap<PeerId, usize>,
    outstanding: HashMap<PeerId, usize>,
    redial: HashMap<PeerId, (Instant, Duration)>,
    push: PushQueues<PeerId, OutboundRequestId>,
    sync_rotation: usize,
}

/// Starts the network task; returns the command channel.
pub fn spawn(
    cfg: NetConfig,
    store: Arc<dyn Store>,
    events: mpsc::Sender<NetEvent>,
) -> anyhow::Result<mpsc::Sender<NetCommand>> {
    let max = cfg.max_message_bytes;
    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for (i, (peer, _)) in cfg.validators.iter().enumerate() {
        if i != cfg.me.as_usize() {
            allow.allow_peer(*peer);
        }
    }
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        // Both sides dialling makes two; a validator key run twice (a
        // Twin, e.g. an operator's failover gone wrong) makes up to four,
        // and the honest nodes must hear both processes to prove the
        // double signing.
        .with_max_established_per_peer(Some(4))
        .with_max_pending_incoming(Some(cfg.max_connections));
    let rr_config = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(10))
        .with_max_concurrent_streams(1024);
    let behaviour = Behaviour {
        admission: crate::admission::Admission::new(cfg.validators.iter().map(|(_, a)| a)),
        allow,
        limits: connection_limits::Behaviour::new(limits),
        txs: request_response::Behaviour::with_codec(
            BytesCodec { max },
            [(StreamProtocol::new(TXS_PROTOCOL), ProtocolSupport::Full)],
            rr_config.clone(),
        ),
        consensus: request_response::Behaviour::with_codec(
            BytesCodec { max },
            [(
                StreamProtocol::new(CONSENSUS_PROTOCOL),
                ProtocolSupport::Full,
            )],
            rr_config.clone(),
        ),
        sync: request_response::Behaviour::with_codec(
            BytesCodec {
                max: max.max(64 * 1024 * 1024),
            },
            [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            rr_config,
        ),
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        // A connection must finish its handshake in this time (libp2p's
        // default too; pinned here because `admission` relies on it).
        .with_connection_timeout(crate::admission::HANDSHAKE_TIMEOUT)
        .build();
    swarm.listen_on(cfg.listen.clone()).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for p2p on {} (port in use? another node running?): {e}",
            cfg.listen
        )
    })?;
    let mut index_of = HashMap::new();
    let mut redial = HashMap::new();
    let now = Instant::now();
    for (i, (peer, addr)) in cfg.validators.iter().enumerate() {
        index_of.insert(*peer, ValidatorIndex(i as u32));
        if i != cfg.me.as_usize() {
            swarm.add_peer_address(*peer, addr.clone());
            // Stagger the first dials a little; both sides dialling is fine.
            redial.insert(*peer, (now, Duration::from_millis(500)));
        }
    }
    let (tx, rx) = mpsc::channel(cfg.peer_queue.max(1024));
    let net = Net {
        swarm,
        cfg,
        store,
        events,
        index_of,
        connected: HashMap::new(),
        outstanding: HashMap::new(),
        redial,
        push: PushQueues::default(),
        sync_rotation: 0,
    };
    tokio::spawn(net.run(rx));
    Ok(tx)
}

impl Net {
    async fn run(mut self, mut commands: mpsc::Receiver<NetCommand>) {
        let mut dial_tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = dial_tick.tick() => self.redial_due(),
            }
        }
    }

    fn peer(&self, v: ValidatorIndex) -> Option<PeerId> {
        self.cfg.validators.get(v.as_usize()).map(|(p, _)| *p)
    }

    fn send_to(&mut self, peer: PeerId, bytes: Arc<Vec<u8>>) {
        let n = self.outstanding.entry(peer).or_default();
        if *n >= self.cfg.peer_queue {
            let _ = self
                .events
                .try_send(NetEvent::Dropped(DropReason::PeerQueueFull));
            return;
        }
        *n += 1;
        self.swarm
            .behaviour_mut()
            .consensus
            .send_request(&peer, bytes);
    }

    fn on_command(&mut self, cmd: NetCommand) {
        match cmd {
            NetCommand::Send { to, bytes } => {
                if let Some(peer) = self.peer(to) {
                    self.send_to(peer, bytes);
                }
            }
            NetCommand::Broadcast(bytes) => {
                let peers: Vec<PeerId> = (0..self.cfg.validators.len())
                    .filter(|i| *i != self.cfg.me.as_usize())
                    .filter_map(|i| self.peer(ValidatorIndex(i as u32)))
                    .collect();
                for p in peers {
                    self.send_to(p, bytes.clone());
                }
            }
            NetCommand::PushTxs(data) => {
                let data = Arc::new(data);
                let me = self.cfg.me.as_usize();
                let peers: Vec<PeerId> = (0..self.cfg.validators.len())
                    .filter(|i| *i != me)
                    .filter_map(|i| self.peer(ValidatorIndex(i as u32)))
                    .collect();
                for peer in peers {
                    // Queued for unreachable peers too: sent once they connect.
                    for _ in 0..self.push.enqueue(peer, data.clone()) {
                        let _ = self
                            .events
                            .try_send(NetEvent::Dropped(DropReason::TxsQueueFull));
                    }
                    self.pump_txs(peer);
                }
            }
            NetCommand::Block(blocked) => self.set_blocked(&blocked),
            NetCommand::Sync { from } => {
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                if peers.is_empty() {
                    return;
                }
                let mut sorted = peers;
                sorted.sort();
                self.sync_rotation = self.sync_rotation.wrapping_add(1);
                let peer = sorted[self.sync_rotation % sorted.len()];
                let req = phalanx_crypto::encode(&SyncRequest {
                    from,
                    max_blocks: SYNC_MAX_BLOCKS,
                    locator: phalanx_runtime::locator(from, |h| {
                        self.store.block(h).ok().flatten().map(|b| b.hash())
                    }),
                });
                self.swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, Arc::new(req));
            }
        }
    }

    /// A partition at the transport: the allow-list drops blocked peers'
    /// connections and refuses new ones; a healed peer is redialled at once.
    fn set_blocked(&mut self, blocked: &[ValidatorIndex]) {
        let now = Instant::now();
        for (i, (peer, _)) in self.cfg.validators.iter().enumerate() {
            if i == self.cfg.me.as_usize() {
                continue;
            }
            let allow = &mut self.swarm.behaviour_mut().allow;
            if blocked.contains(&ValidatorIndex(i as u32)) {
                allow.disallow_peer(*peer);
            } else if allow.allow_peer(*peer) {
                self.redial.insert(*peer, (now, Duration::from_millis(500)));
            }
        }
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(p, (at, _))| *at <= now && !self.connected.contains_key(*p))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let Some(v) = self.index_of.get(&peer) else {
                continue;
            };
            let addr = self.cfg.validators[v.as_usize()].1.clone();
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .build();
            let _ = self.swarm.dial(opts);
            if let Some((at, backoff)) = self.redial.get_mut(&peer) {
                *at = now + *backoff;
                *backoff = (*backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    /// Sends the batches waiting for `peer` if it is connected.
    fn pump_txs(&mut self, peer: PeerId) {
        if !self.connected.contains_key(&peer) {
            return;
        }
        let txs = &mut self.swarm.behaviour_mut().txs;
        self.push
            .pump(&peer, |bytes| txs.send_request(&peer, bytes));
    }

    async fn on_txs(&mut self, ev: request_response::Event<Arc<Vec<u8>>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .txs
                        .send_response(channel, Vec::new());
                    let bytes = Arc::try_unwrap(request).unwrap_or_else(|a| (*a).clone());
                    let _ = self.events.send(NetEvent::Txs(bytes)).await;
                }
                request_response::Message::Response { request_id, .. } => {
                    self.push.acked(&peer, &request_id);
                    self.pump_txs(peer);
                }
            },
            request_response::Event::OutboundFailure {
                peer, request_id, ..
            } => {
                if !self.push.failed(&peer, &request_id) {
                    let _ = self
                        .events
                        .try_send(NetEvent::Dropped(DropReason::TxsSendFailed));
                }
                self.pump_txs(peer);
            }
            request_response::Event::InboundFailure { .. } => {
                let _ = self
                    .events
                    .try_send(NetEvent::Dropped(DropReason::InboundFailure));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn publish_peers(&self) {
        let mut peers: Vec<u32> = self
            .connected
            .keys()
            .filter_map(|p| self.index_of.get(p))
            .map(|v| v.0)
            .collect();
        peers.sort_unstable();
        let _ = self.events.try_send(NetEvent::Peers(peers));
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                *self.connected.entry(peer_id).or_default() += 1;
                if let Some((_, backoff)) = self.redial.get_mut(&peer_id) {
                    *backoff = Duration::from_millis(500);
                }
                self.publish_peers();
                self.pump_txs(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.outstanding.remove(&peer_id);
                if let Some((at, backoff)) = self.redial.get_mut(&peer_id) {
                    *at = Instant::now() + *backoff;
                }
                self.publish_peers();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Consensus(ev)) => self.on_consensus(ev).await,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev).await,
            SwarmEvent::Behaviour(BehaviourEvent::Txs(ev)) => self.on_txs(ev).await,
            SwarmEvent::IncomingConnectionError { .. } => {
                let _ = self
                    .events
                    .try_send(NetEvent::Dropped(DropReason::IncomingConnectionError));
            }
            _ => {}
        }
    }

    async fn on_consensus(&mut self, ev: request_response::Event<Arc<Vec<u8>>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .consensus
                        .send_response(channel, Vec::new());
                    match self.index_of.get(&peer) {
                        Some(from) => {
                            let bytes = Arc::try_unwrap(request).unwrap_or_else(|a| (*a).clone());
                            let Some(held) = self.cfg.inbound.take(from.as_usize(), bytes.len())
                            else {
                                let _ = self
                                    .events
                                    .try_send(NetEvent::Dropped(DropReason::PeerInboundFull));
                                return;
                            };
                            let _ = self
                                .events
                                .send(NetEvent::Consensus {
                                    from: *from,
                                    bytes,
                                    _held: Some(held),
                                })
                                .await;
                        }
                        None => {
                            let _ = self
                                .events
                                .try_send(NetEvent::Dropped(DropReason::NotAValidator));
                        }
                    }
                }
                request_response::Message::Response { .. } => self.done(&peer),
            },
            request_response::Event::OutboundFailure { peer, .. } => self.done(&peer),
            request_response::Event::InboundFailure { .. } => {
                let _ = self
                    .events
                    .try_send(NetEvent::Dropped(DropReason::InboundFailure));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn done(&mut self, peer: &PeerId) {
        if let Some(n) = self.outstanding.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    async fn on_sync(&mut self, ev: request_response::Event<Arc<Vec<u8>>, Vec<u8>>) {
        let request_response::Event::Message { message, .. } = ev else {
            return;
        };
        match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let blocks = match phalanx_crypto::decode::<SyncRequest>(&request) {
                    Ok(req) => self.read_blocks(req),
                    Err(_) => {
                        let _ = self
                            .events
                            .try_send(NetEvent::Dropped(DropReason::MalformedSyncRequest));
                        Vec::new()
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, phalanx_crypto::encode(&blocks));
            }
            request_response::Message::Response { response, .. } => {
                match phalanx_crypto::decode::<Vec<Block>>(&response) {
                    Ok(blocks) => {
                        let _ = self.events.send(NetEvent::SyncBlocks(blocks)).await;
                    }
                    Err(_) => {
                        let _ = self
                            .events
                            .try_send(NetEvent::Dropped(DropReason::MalformedSyncResponse));
                    }
                }
            }
        }
    }

    /// Blocks from `req.from` — or from just above the highest locator
    /// entry this store shares, if that is lower (the requester is on
    /// another branch) — within the block and byte caps.
    fn read_blocks(&self, req: SyncRequest) -> Vec<Block> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let budget = self.cfg.max_message_bytes.max(1 << 20);
        let ours = |h: Height| self.store.block(h).ok().flatten().map(|b| b.hash());
        let from = phalanx_runtime::sync_start(req.from, &req.locator, ours);
        for h in from.0..from.0.saturating_add(req.max_blocks.min(SYNC_MAX_BLOCKS)) {
            match self.store.block(Height(h)) {
                Ok(Some(block)) => {
                    bytes += phalanx_crypto::encode(&block).len();
                    if bytes > budget && !out.is_empty() {
                        break;
                    }
                    out.push(block);
                }
                _ => break,
            }
        }
        out
    }
}
