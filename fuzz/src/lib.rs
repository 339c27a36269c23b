//! Fuzzing every decoder of bytes that come from a peer, a client or a
//! file: consensus messages (PBFT and the CFT baseline), catch-up requests
//! and answers, pushed transaction batches, the HTTP API's JSON bodies,
//! key files, genesis files and config files (issue 18).
//!
//! This is a mutation fuzzer that knows the formats (AFL++ adds coverage
//! feedback for five of its targets: fuzz/afl, `scripts/fuzz-afl.sh`): each target starts from valid encodings of real values
//! (signed votes, proposals with transactions and evidence, view changes
//! carrying certificates, blocks, files as the tools write them) and
//! mutates them — bit flips, boundary bytes, huge length prefixes,
//! insertions, deletions, splices of two seeds, truncations. Every input
//! must be refused or accepted without a panic (an abort, say on a huge
//! allocation, ends the run), an accepted value must encode back to
//! itself, and the process's peak memory must stay under
//! [`MAX_RESIDENT`] (the `phalanx-fuzz` binary checks it).

#![forbid(unsafe_code)]

mod seeds;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The most memory a fuzzing process may have held at its peak (its
/// `VmHWM`): a decoder must not trust a length prefix it has not read the
/// bytes for.
pub const MAX_RESIDENT: u64 = 256 << 20;

/// The process's peak resident memory in bytes (Linux `VmHWM`), if known.
pub fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One decoder under test.
#[derive(Debug)]
pub struct Target {
    /// Its name (`phalanx-fuzz --target NAME`).
    pub name: &'static str,
    /// What it decodes.
    pub about: &'static str,
    /// Valid inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Decodes one input: whether it was accepted. Panics only on a bug
    /// (a decoder's own, or a round trip that differs).
    pub run: fn(&[u8]) -> bool,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pbft-message",
        about: "a PBFT consensus message from a peer (postcard)",
        seeds: seeds::pbft_messages,
        run: run::pbft_message,
    },
    Target {
        name: "cft-message",
        about: "a CFT-baseline consensus message from a peer (postcard)",
        seeds: seeds::cft_messages,
        run: run::cft_message,
    },
    Target {
        name: "pow-message",
        about: "a proof-of-work block from a peer (postcard)",
        seeds: seeds::pow_messages,
        run: run::pow_message,
    },
    Target {
        name: "pos-message",
        about: "a proof-of-stake block or evidence from a peer (postcard)",
        seeds: seeds::pos_messages,
        run: run::pos_message,
    },
    Target {
        name: "tx-batch",
        about: "a transaction batch pushed by a peer (postcard)",
        seeds: seeds::tx_batches,
        run: run::tx_batch,
    },
    Target {
        name: "sync-request",
        about: "a catch-up request from a peer, with its block locator (postcard)",
        seeds: seeds::sync_requests,
        run: run::sync_request,
    },
    Target {
        name: "sync-blocks",
        about: "a catch-up answer: certified blocks (postcard)",
        seeds: seeds::blocks,
        run: run::sync_blocks,
    },
    Target {
        name: "http-tx",
        about: "POST /txs: one signed transaction (JSON)",
        seeds: seeds::http_txs,
        run: run::http_tx,
    },
    Target {
        name: "http-batch",
        about: "POST /txs/batch: signed transactions (JSON)",
        seeds: seeds::http_batches,
        run: run::http_batch,
    },
    Target {
        name: "key-file",
        about: "a key file (JSON), read as every key kind",
        seeds: seeds::key_files,
        run: run::key_file,
    },
    Target {
        name: "genesis",
        about: "a genesis file (JSON), parsed and validated",
        seeds: seeds::genesis_files,
        run: run::genesis,
    },
    #[cfg(feature = "node")]
    Target {
        name: "config",
        about: "a node's config.toml",
        seeds: seeds::config_files,
        run: run::config,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A small deterministic generator (xorshift*), so a run is reproducible
/// from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A mutation of `input` (with `other`, another seed, for splices).
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            // A huge varint where a length prefix may be.
            2 => {
                let i = rng.below(len + 1);
                let huge: &[u8] = [
                    &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                    &[0x80, 0x80, 0x80, 0x80, 0x08][..],
                ][rng.below(3)];
                out.splice(i..i, huge.iter().copied());
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                out.drain(a..b);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = out[a..b].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, chunk);
            }
            6 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                let n = rng.below(64);
                out = (0..n).map(|_| rng.next_u64() as u8).collect();
            }
        }
    }
    out
}

/// What a run found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs the decoder accepted (the rest it refused with an error).
    pub accepted: u64,
    /// Inputs that panicked, with the first one (hex).
    pub panics: u64,
    /// The first panicking input, hex-encoded.
    pub first_panic: Option<String>,
}

/// Runs `inputs` inputs of `target` from `seed`; `check` is called after
/// each input.
pub fn fuzz(target: &Target, inputs: u64, seed: u64, mut check: impl FnMut(u64, &[u8])) -> Report {
    let seeds = (target.seeds)();
    let mut rng = Rng::new(seed ^ target.name.len() as u64);
    let mut report = Report::default();
    for k in 0..inputs {
        let input = if (k as usize) < seeds.len() {
            seeds[k as usize].clone()
        } else {
            let a = &seeds[rng.below(seeds.len())];
            let b = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, a, b)
        };
        let result = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        report.inputs += 1;
        report.accepted += u64::from(result.as_ref().is_ok_and(|ok| *ok));
        if result.is_err() {
            report.panics += 1;
            report
                .first_panic
                .get_or_insert_with(|| input.iter().map(|b| format!("{b:02x}")).collect());
        }
        check(k, &input);
    }
    report
}

mod run {
    use phalanx_consensus::{CftMessage, PbftMessage, PosMessage, PowMessage};
    use phalanx_crypto::{decode, encode, Hash, KeyKind};
    use phalanx_ledger::{Block, Genesis, Height, SignedTransaction};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::fmt::Debug;

    /// Decodes; an accepted value must encode to bytes that decode to it.
    fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
        let value: T = decode(bytes).ok()?;
        let again: T = decode(&encode(&value)).expect("a re-encoded value decodes");
        assert_eq!(again, value, "a decoded value does not survive re-encoding");
        Some(value)
    }

    pub(super) fn pbft_message(bytes: &[u8]) -> bool {
        use phalanx_consensus::Message as _;
        let m = round_trip::<PbftMessage>(bytes);
        if let Some(m) = &m {
            let _ = (m.summary(), m.describe(), PbftMessage::wire_kind(bytes));
        }
        m.is_some()
    }

    pub(super) fn cft_message(bytes: &[u8]) -> bool {
        use phalanx_consensus::Message as _;
        let m = round_trip::<CftMessage>(bytes);
        if let Some(m) = &m {
            let _ = (m.summary(), m.describe());
        }
        m.is_some()
    }

    pub(super) fn pow_message(bytes: &[u8]) -> bool {
        use phalanx_consensus::Message as _;
        let m = round_trip::<PowMessage>(bytes);
        if let Some(m) = &m {
            let PowMessage::Block {
                payload,
                justification,
            } = m;
            let _ = (
                m.summary(),
                m.describe(),
                phalanx_consensus::pow::block_id(payload, justification),
            );
        }
        m.is_some()
    }

    pub(super) fn pos_message(bytes: &[u8]) -> bool {
        use phalanx_consensus::Message as _;
        let m = round_trip::<PosMessage>(bytes);
        if let Some(m) = &m {
            let _ = (m.summary(), m.describe(), m.statements());
        }
        m.is_some()
    }

    pub(super) fn tx_batch(bytes: &[u8]) -> bool {
        let txs = round_trip::<Vec<SignedTransaction>>(bytes);
        for t in txs.iter().flatten() {
            let _ = t.hash();
        }
        txs.is_some()
    }

    pub(super) fn sync_request(bytes: &[u8]) -> bool {
        // The node's `SyncRequest`: from, most blocks, the locator.
        round_trip::<(Height, u64, Vec<(Height, Hash)>)>(bytes).is_some()
    }

    pub(super) fn sync_blocks(bytes: &[u8]) -> bool {
        let blocks = round_trip::<Vec<Block>>(bytes);
        for b in blocks.iter().flatten() {
            let _ = (b.hash(), b.body_matches_header());
        }
        blocks.is_some()
    }

    pub(super) fn http_tx(bytes: &[u8]) -> bool {
        serde_json::from_slice::<SignedTransaction>(bytes)
            .map(|t| t.hash())
            .is_ok()
    }

    pub(super) fn http_batch(bytes: &[u8]) -> bool {
        let Ok(txs) = serde_json::from_slice::<Vec<SignedTransaction>>(bytes) else {
            return false;
        };
        for t in &txs {
            let _ = t.hash();
        }
        true
    }

    thread_local! {
        /// One directory per fuzzing thread: the key file is rewritten in it.
        static KEY_DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary directory");
    }

    pub(super) fn key_file(bytes: &[u8]) -> bool {
        let path = KEY_DIR.with(|d| d.path().join("key.json"));
        std::fs::write(&path, bytes).expect("write the key file");
        [KeyKind::Account, KeyKind::Validator, KeyKind::Node]
            .into_iter()
            .filter(|kind| phalanx_crypto::read_key_file(&path, *kind).is_ok())
            .count()
            > 0
    }

    /// Parsed and validated; a valid one also builds its genesis block,
    /// as a node does at start.
    pub(super) fn genesis(bytes: &[u8]) -> bool {
        let Ok(g) = Genesis::from_json(&String::from_utf8_lossy(bytes)) else {
            return false;
        };
        if g.validate().is_err() {
            return false;
        }
        let _ = g.block().hash();
        true
    }

    #[cfg(feature = "node")]
    pub(super) fn config(bytes: &[u8]) -> bool {
        phalanx_node::home::NodeConfig::from_toml(&String::from_utf8_lossy(bytes)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short pass CI runs: every target, a few thousand inputs each,
    /// no panic. (`scripts/fuzz.sh` runs a million per target.)
    #[test]
    fn every_decoder_survives_a_short_fuzz_run() {
        for t in TARGETS {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{} has seeds", t.name);
            let inputs = 3_000;
            let report = fuzz(t, inputs, 7, |_, _| {});
            assert_eq!(report.panics, 0, "{}: {:?}", t.name, report.first_panic);
            assert_eq!(report.inputs, inputs);
            // The mutations leave some inputs decodable (the decoder's
            // accepting paths run too) and break most.
            assert!(
                report.accepted >= seeds.len() as u64 && report.accepted < inputs,
                "{}: {} of {inputs} accepted",
                t.name,
                report.accepted
            );
        }
    }

    /// The seeds are valid: each decodes (so mutations start from real
    /// encodings, not from noise).
    #[test]
    fn the_seeds_decode() {
        use phalanx_crypto::decode;
        for b in seeds::pbft_messages() {
            decode::<phalanx_consensus::PbftMessage>(&b).expect("a PBFT seed decodes");
        }
        for b in seeds::cft_messages() {
            decode::<phalanx_consensus::CftMessage>(&b).expect("a CFT seed decodes");
        }
        for b in seeds::blocks() {
            decode::<Vec<phalanx_ledger::Block>>(&b).expect("a block seed decodes");
        }
        for b in seeds::pow_messages() {
            decode::<phalanx_consensus::PowMessage>(&b).expect("a PoW seed decodes");
        }
        for b in seeds::pos_messages() {
            decode::<phalanx_consensus::PosMessage>(&b).expect("a PoS seed decodes");
        }
        for b in seeds::genesis_files() {
            phalanx_ledger::Genesis::from_json(std::str::from_utf8(&b).unwrap())
                .expect("the genesis seed parses")
                .validate()
                .expect("and is valid");
        }
        #[cfg(feature = "node")]
        for b in seeds::config_files() {
            phalanx_node::home::NodeConfig::from_toml(std::str::from_utf8(&b).unwrap())
                .expect("a config seed parses");
        }
    }

    /// A planted bug is found: the fuzzer's mutations reach a decoder's
    /// error paths (a target that panics on any refused input).
    #[test]
    fn a_panicking_decoder_is_reported() {
        let planted = Target {
            name: "planted",
            about: "panics on any input that does not decode",
            seeds: seeds::tx_batches,
            run: |b| {
                phalanx_crypto::decode::<Vec<phalanx_ledger::SignedTransaction>>(b)
                    .expect("planted");
                true
            },
        };
        std::panic::set_hook(Box::new(|_| {}));
        let report = fuzz(&planted, 500, 1, |_, _| {});
        let _ = std::panic::take_hook();
        assert!(report.panics > 0 && report.first_panic.is_some());
    }
}
