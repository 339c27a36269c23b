//! Who may take a pending-connection slot on the p2p port.
//!
//! A connection is "pending" from the TCP accept until the noise handshake
//! names its peer; only then does the allow-list (validators only) apply.
//! Every handshake must finish within [`HANDSHAKE_TIMEOUT`] (the swarm's
//! connection timeout, set in `p2p.rs`), but a stranger who reached the
//! port could open a new stalled handshake as soon as one timed out and so
//! hold every pending slot (64) all the time: validators could not
//! reconnect. So an address that is not a validator's (by the IPs in the
//! genesis multiaddrs) holds at most [`MAX_PENDING_PER_IP`] pending
//! connections at once, and the slots the validators need stay free.

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long a connection may take from accept (or dial) to a finished
/// noise + yamux handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pending incoming connections one non-validator address may hold.
pub const MAX_PENDING_PER_IP: usize = 8;

/// The IP of a multiaddr (`/ip4/…` or `/ip6/…`), if it names one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Why a pending connection was refused.
#[derive(Debug)]
pub struct TooManyPending {
    ip: IpAddr,
}

impl std::fmt::Display for TooManyPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} already holds {MAX_PENDING_PER_IP} unfinished handshakes",
            self.ip
        )
    }
}

impl std::error::Error for TooManyPending {}

/// The behaviour; see the module note.
#[derive(Debug, Default)]
pub struct Admission {
    /// Validators' IPs: never limited here.
    exempt: HashSet<IpAddr>,
    /// Pending incoming connections from limited IPs.
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Limits every address but the validators' `addrs`.
    pub fn new<'a>(addrs: impl IntoIterator<Item = &'a Multiaddr>) -> Admission {
        Admission {
            exempt: addrs.into_iter().filter_map(ip_of).collect(),
            ..Admission::default()
        }
    }

    /// Takes a slot for `id` from `remote`, or refuses.
    fn admit(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyPending> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.exempt.contains(&ip) {
            return Ok(());
        }
        let held = self.per_ip.entry(ip).or_default();
        if *held >= MAX_PENDING_PER_IP {
            return Err(TooManyPending { ip });
        }
        *held += 1;
        self.pending.insert(id, ip);
        Ok(())
    }

    /// The handshake of `id` finished or failed: its slot is free.
    fn release(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id) {
            if let Some(held) = self.per_ip.get_mut(&ip) {
                *held -= 1;
                if *held == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Pending connections held by limited addresses.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr)
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::ListenFailure(failure) = event {
            self.release(failure.connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    /// Issue 18, finding 7: a stranger's address holds a bounded number of
    /// pending slots; a validator's address is never limited; a finished or
    /// failed handshake frees its slot.
    #[test]
    fn a_stranger_holds_a_bounded_number_of_pending_slots() {
        let validators = [
            addr("/ip4/10.0.0.1/tcp/26000"),
            addr("/ip4/10.0.0.2/tcp/26000"),
        ];
        let mut a = Admission::new(&validators);
        let stranger = addr("/ip4/192.0.2.7/tcp/40000");
        let ids: Vec<ConnectionId> = (0..MAX_PENDING_PER_IP + 1)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..MAX_PENDING_PER_IP] {
            a.admit(*id, &stranger).unwrap();
        }
        let refused = a.admit(ids[MAX_PENDING_PER_IP], &stranger).unwrap_err();
        assert!(refused.to_string().contains("192.0.2.7"), "{refused}");
        // Another address, and the validators, are not held up by it.
        a.admit(
            ConnectionId::new_unchecked(rand_id()),
            &addr("/ip4/192.0.2.8/tcp/1"),
        )
        .unwrap();
        for _ in 0..100 {
            a.admit(
                ConnectionId::new_unchecked(rand_id()),
                &addr("/ip4/10.0.0.2/tcp/5"),
            )
            .unwrap();
        }
        assert_eq!(a.pending(), MAX_PENDING_PER_IP + 1);
        // A slot frees when a handshake ends, once.
        a.release(ids[0]);
        a.release(ids[0]);
        a.admit(ids[MAX_PENDING_PER_IP], &stranger).unwrap();
        assert!(a
            .admit(ConnectionId::new_unchecked(rand_id()), &stranger)
            .is_err());
        for id in &ids {
            a.release(*id);
        }
        assert_eq!(a.pending(), 1, "the other stranger's");
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
