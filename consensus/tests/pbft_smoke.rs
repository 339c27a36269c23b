mod common;
use common::*;
use phalanx_consensus::Engine;

#[test]
fn four_nodes_commit_transactions() {
    let mut c = Cluster::new(4, params());
    let txs: Vec<_> = (0..25).map(|k| transfer(0, 1, 10, k)).collect();
    c.submit(txs);
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 25)));
    c.assert_agreement();
    for i in 0..4 {
        assert_eq!(
            c.nodes[i]
                .state
                .account(&phalanx_ledger::Address(account_key(1).public()))
                .unwrap()
                .balance,
            1_000_250
        );
    }
}

#[test]
fn silent_primary_is_replaced() {
    let mut c = Cluster::new(4, params());
    c.mute.push(0);
    c.submit((0..5).map(|k| transfer(0, 1, 10, k)).collect());
    assert!(
        c.run_until(60_000, |c| (1..4).all(|i| c.committed_tx_count(i) == 5)),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
    assert!(c.nodes[1].engine.status().view >= 1);
}

#[test]
fn view_change_keeps_prepared_requests_and_restart_catches_up() {
    let mut c = Cluster::new(4, params());
    c.submit((0..8).map(|k| transfer(2, 3, 5, k)).collect());
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 8)));
    // Crash node 3, make progress without it, restart: it syncs.
    c.nodes[3].up = false;
    c.submit((8..30).map(|k| transfer(2, 3, 5, k)).collect());
    assert!(c.run_until(30_000, |c| (0..3).all(|i| c.committed_tx_count(i) == 30)));
    c.restart(3);
    c.submit((30..40).map(|k| transfer(2, 3, 5, k)).collect());
    assert!(
        c.run_until(60_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 40)),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
}

#[test]
fn replica_far_behind_notices_from_commits_and_syncs() {
    // No checkpoints in the way (K = window), so only COMMITs beyond the
    // window can tell node 3 it is behind.
    let mut p = params();
    p.checkpoint_interval = 16;
    p.watermark_window = 16;
    let mut c = Cluster::new(4, p);
    c.nodes[3].up = false;
    for k in 0..40 {
        c.submit(vec![transfer(1, 2, 1, k)]);
        c.run();
    }
    assert!(c.run_until(30_000, |c| (0..3).all(|i| c.committed_tx_count(i) == 40)));
    c.restart(3);
    c.sync_requests.clear();
    for k in 40..45 {
        c.submit(vec![transfer(1, 2, 1, k)]);
    }
    assert!(
        c.run_until(30_000, |c| c.committed_tx_count(3) == 45),
        "node 3 at {}",
        c.height(3)
    );
    assert!(!c.sync_requests.is_empty());
    c.assert_agreement();
}
