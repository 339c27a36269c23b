//! Issue 18, finding 7: a stranger who reaches the validators' p2p ports
//! and opens connections that never finish their handshake must not keep
//! validators from (re)connecting. Before, 64 such sockets per node held
//! every pending-connection slot for good (no handshake timeout; the
//! allow-list applies only once the handshake names the peer).

mod common;

use common::Testnet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 4;

/// A free block of ports: p2p base..base+N, API base+100.., probed.
fn base_port() -> u16 {
    let start = (std::process::id() % 8) as u16;
    (0..8)
        .map(|k| 17_000 + ((start + k) % 8) * 120)
        .find(|p| {
            (0..N as u16).all(|i| {
                std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", p + 100 + i)).is_ok()
            })
        })
        .expect("a free block of ports")
}

fn peers(t: &Testnet, i: usize) -> usize {
    t.status(i)
        .and_then(|s| s["peers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Keeps `per_node` connections that never say a word open to every
/// port in `ports` from 127.0.0.2 (not a validator's address), opening a
/// new one as soon as a node closes one, until `stop`. Returns how many
/// the nodes closed or refused.
fn stranger(
    ports: Vec<u16>,
    per_node: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut held: Vec<Vec<tokio::net::TcpStream>> =
                ports.iter().map(|_| Vec::new()).collect();
            let mut closed = 0;
            while !stop.load(Ordering::Relaxed) {
                for (k, port) in ports.iter().enumerate() {
                    // Drop the ones the node closed.
                    let before = held[k].len();
                    held[k].retain(|s| {
                        let mut buf = [0u8; 8];
                        match s.try_read(&mut buf) {
                            Ok(0) => false,
                            Ok(_) => true,
                            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                        }
                    });
                    closed += before - held[k].len();
                    while held[k].len() < per_node {
                        let socket = tokio::net::TcpSocket::new_v4().unwrap();
                        socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
                        match socket.connect(([127, 0, 0, 1], *port).into()).await {
                            Ok(s) => held[k].push(s),
                            Err(_) => {
                                closed += 1;
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            closed
        })
    })
}

#[test]
fn a_stranger_holding_unfinished_handshakes_does_not_keep_validators_apart() {
    let mut t = Testnet::init(N, base_port(), false);
    t.wait_until("every node to see the other three", 60, || {
        (0..N).all(|i| peers(&t, i) == N - 1)
    });
    // 80 silent connections per node, more than the 64 pending slots,
    // renewed as fast as the nodes close them.
    let stop = Arc::new(AtomicBool::new(false));
    let ports: Vec<u16> = (0..N as u16).map(|i| t.base_port + i).collect();
    let attack = stranger(ports, 80, stop.clone());
    std::thread::sleep(Duration::from_secs(2));

    // A validator restarts while the stranger holds on: it gets back in.
    t.kill(1);
    t.start(1);
    let back = Instant::now();
    let rejoined = t.poll(45, || peers(&t, 1) == N - 1);
    stop.store(true, Ordering::Relaxed);
    let closed = attack.join().unwrap();
    assert!(
        rejoined,
        "node1 did not reconnect in 45 s while a stranger held handshakes\n{}{}",
        t.statuses(),
        t.logs()
    );
    eprintln!(
        "node1 reconnected in {:?}; the nodes closed or refused {closed} of the stranger's connections",
        back.elapsed()
    );
    assert!(
        closed > 0,
        "the nodes refused none of the stranger's connections"
    );
}
