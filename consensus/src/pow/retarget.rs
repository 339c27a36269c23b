//! The per-block retarget (issue 19): the next block's target from the
//! work and the time of the last `window` blocks, so the block interval
//! returns to `block_time_ms` after the hash rate changes — for example
//! when a node with most of it crashes.
//!
//! It is a moving average over work rather than over targets (the approach
//! of Bitcoin Cash's 2017 difficulty adjustment): the work the window did,
//! divided by the time it took, is the hash rate; the next target is the
//! one that rate meets once per `block_time_ms`. The time span is clamped
//! to a quarter and four times the expected span, so one step changes the
//! difficulty by at most four times, and a lying timestamp (bounded anyway
//! by median-time-past and the future-drift rule) moves it little.

use super::work::{target_for_work, work, Compact, U256};

/// What the retarget aims for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetargetParams {
    /// The target block interval (ms).
    pub block_time_ms: u64,
    /// How many recent blocks the average spans.
    pub window: usize,
    /// The easiest target allowed (also the genesis target).
    pub limit: Compact,
}

/// The default averaging window.
pub const WINDOW: usize = 17;

/// The target of the block after `recent`: `recent` holds (timestamp ms,
/// target) of the last blocks, oldest first, the tip last — at least the
/// last `window + 1` when the chain is that long (more are ignored).
pub fn next_target(params: &RetargetParams, recent: &[(u64, Compact)]) -> Compact {
    let limit = params.limit.target().unwrap_or(U256::MAX);
    let clamp = |t: U256| {
        if t > limit {
            params.limit
        } else {
            Compact::from_target(t)
        }
    };
    // Until a full window exists, keep the tip's target: a handful of
    // early blocks found by luck would otherwise raise the difficulty
    // fourfold per block (a fresh local testnet went from 65,000 to
    // 3,000,000 hashes a block in five blocks, and stalled).
    if recent.len() < params.window.max(1) + 1 {
        return recent.last().map_or(params.limit, |(_, c)| *c);
    }
    let take = recent.len().min(params.window.max(1) + 1);
    let window = &recent[recent.len() - take..];
    let blocks = (window.len() - 1) as u64;
    let total: u128 = window[1..]
        .iter()
        .map(|(_, c)| work(c.target().unwrap_or(limit)))
        .fold(0u128, u128::saturating_add);
    let expected = blocks.saturating_mul(params.block_time_ms.max(1));
    let span = window[window.len() - 1]
        .0
        .saturating_sub(window[0].0)
        .clamp(expected / 4, expected.saturating_mul(4))
        .max(1);
    // Work per block at the window's hash rate: total / span * block_time,
    // ordered to keep precision without overflowing.
    let t = u128::from(params.block_time_ms.max(1));
    let per_block = match total.checked_mul(t) {
        Some(p) => p / u128::from(span),
        None => (total / u128::from(span)).saturating_mul(t),
    };
    clamp(target_for_work(per_block.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000;

    fn params() -> RetargetParams {
        RetargetParams {
            block_time_ms: T,
            window: WINDOW,
            limit: Compact(0x2100_ffff),
        }
    }

    /// Mines `blocks` blocks deterministically: each takes the expected
    /// time at `rate` hashes per ms (work / rate), starting from `chain`.
    fn mine(chain: &mut Vec<(u64, Compact)>, blocks: usize, rate: u128) {
        for _ in 0..blocks {
            let target = next_target(&params(), chain);
            let w = work(target.target().unwrap());
            let dt = (w / rate).max(1) as u64;
            let last = chain.last().map_or(0, |(ts, _)| *ts);
            chain.push((last + dt, target));
        }
    }

    fn interval(chain: &[(u64, Compact)], last: usize) -> u64 {
        let n = chain.len();
        (chain[n - 1].0 - chain[n - 1 - last].0) / last as u64
    }

    #[test]
    fn a_steady_chain_keeps_its_target() {
        let start = Compact::from_target(target_for_work(1_000_000));
        let chain: Vec<(u64, Compact)> = (0..=WINDOW as u64).map(|i| (i * T, start)).collect();
        let next = next_target(&params(), &chain);
        let (a, b) = (work(start.target().unwrap()), work(next.target().unwrap()));
        assert!(a.abs_diff(b) <= a / 1_000, "{a} vs {b}");
    }

    #[test]
    fn the_interval_returns_to_target_after_the_hash_rate_drops_tenfold() {
        let mut chain = vec![(0, Compact::from_target(target_for_work(1_000)))];
        mine(&mut chain, 200, 1_000);
        let before = interval(&chain, 50);
        assert!(before.abs_diff(T) <= T / 10, "settled at {before} ms");
        // The node with 90% of the hash rate crashes.
        mine(&mut chain, 1, 100);
        let first = chain[chain.len() - 1].0 - chain[chain.len() - 2].0;
        assert!(
            first >= 9 * T,
            "the first block after the crash is slow: {first}"
        );
        mine(&mut chain, 3 * WINDOW, 100);
        let after = interval(&chain, 20);
        assert!(after.abs_diff(T) <= T / 5, "recovered to {after} ms");
        // And back when it returns.
        mine(&mut chain, 3 * WINDOW, 1_000);
        let back = interval(&chain, 20);
        assert!(back.abs_diff(T) <= T / 5, "back to {back} ms");
    }

    #[test]
    fn one_step_moves_the_difficulty_at_most_fourfold() {
        let start = Compact::from_target(target_for_work(1_000_000));
        let w0 = work(start.target().unwrap());
        // Blocks a hundred times too slow, then a hundred times too fast.
        let slow: Vec<(u64, Compact)> = (0..=WINDOW as u64).map(|i| (i * 100 * T, start)).collect();
        let w = work(next_target(&params(), &slow).target().unwrap());
        assert!(w >= w0 / 4 - w0 / 1_000 && w < w0, "{w0} -> {w}");
        let fast: Vec<(u64, Compact)> = (0..=WINDOW as u64).map(|i| (i * T / 100, start)).collect();
        let w = work(next_target(&params(), &fast).target().unwrap());
        assert!(w <= w0 * 4 + w0 / 1_000 && w > w0, "{w0} -> {w}");
        // Timestamps that go backwards count as the shortest span.
        let back: Vec<(u64, Compact)> = (0..=WINDOW as u64)
            .map(|i| (1_000_000 - i * T, start))
            .collect();
        assert_eq!(next_target(&params(), &back), next_target(&params(), &fast));
    }

    #[test]
    fn the_target_never_gets_easier_than_the_limit() {
        let limit = params().limit;
        let chain: Vec<(u64, Compact)> = (0..=WINDOW as u64)
            .map(|i| (i * 1_000 * T, limit))
            .collect();
        assert_eq!(next_target(&params(), &chain), limit);
        // Short chains keep the tip's target (genesis: the limit).
        assert_eq!(next_target(&params(), &[]), limit);
        let one = [(0, Compact(0x1d00_ffff))];
        assert_eq!(next_target(&params(), &one), Compact(0x1d00_ffff));
    }
}
