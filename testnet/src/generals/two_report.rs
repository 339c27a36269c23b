//! Text rendering of `phalanx generals two`: the outcome table for each
//! protocol k and the last-message argument on one concrete run. Lines fit
//! an 80-column terminal.

use super::report::{wrap, wrap_indented};
use super::two::{sender, RunSource, Side, TwoReport, TwoRun};
use std::fmt::Write as _;

/// The table and the trace.
pub(crate) fn render_two(r: &TwoReport) -> String {
    let mut s = String::new();
    s.push_str(&wrap(
        &format!(
            "Two Generals over a lossy channel: each messenger lost with \
             probability {}; {} trials per protocol, seed {}.",
            r.loss, r.trials, r.seed
        ),
        "",
    ));
    s.push_str(&wrap(
        "Protocol k: A sends the order, then B and A alternate k acknowledgements, \
         each messenger sent when the previous one arrives; a general attacks once \
         it holds every message protocol k sends it. Measured fraction of runs \
         (exact probability):",
        "",
    ));
    s.push('\n');
    let _ = writeln!(
        s,
        " k  msgs  both attack       neither           one alone (who)"
    );
    for p in &r.protocols {
        let _ = writeln!(
            s,
            "{:>2}  {:>4}  {:.4} ({:.4})   {:.4} ({:.4})   {:.4} ({:.4}) {}",
            p.k,
            p.messengers,
            p.both,
            p.exact_both,
            p.neither,
            p.exact_neither,
            p.one_alone,
            p.exact_one_alone,
            p.alone
        );
    }
    s.push('\n');
    s.push_str(&wrap(
        "More acknowledgements trade disagreement for not attacking at all; no k \
         makes \"one alone\" impossible while a messenger can be lost.",
        "",
    ));
    s.push('\n');
    s.push_str(&render_last_message(
        &r.last_message_run,
        r.last_message_source,
        r.loss,
    ));
    s
}

fn messenger_text(number: usize) -> String {
    if number == 1 {
        "order \"attack at dawn\"".to_string()
    } else {
        format!("ack of #{}", number - 1)
    }
}

/// The last-message argument, told on `run` (whose last messenger is lost).
fn render_last_message(run: &TwoRun, source: RunSource, loss: f64) -> String {
    let k = run.k;
    let last = k + 1;
    let mut s = String::new();
    let origin = match source {
        RunSource::Seeded { trial } => format!("seeded run, trial {trial}"),
        RunSource::Constructed if loss == 0.0 => {
            "constructed: with loss 0 no messenger is lost, but any channel that can \
             lose one allows this run"
                .to_string()
        }
        RunSource::Constructed => "constructed: no simulated run lost exactly the last \
                                   messenger"
            .to_string(),
    };
    s.push_str(&wrap(
        &format!("Last-message argument, protocol k={k} ({origin}):"),
        "  ",
    ));
    for m in &run.messengers {
        let _ = writeln!(
            s,
            "  #{:<2} {} -> {}  {:<23} {}",
            m.number,
            m.from,
            m.to(),
            messenger_text(m.number),
            if m.delivered { "delivered" } else { "LOST" }
        );
    }
    let who = sender(last);
    let other = match who {
        Side::A => Side::B,
        Side::B => Side::A,
    };
    let expects: Vec<String> = (1..=last)
        .filter(|&n| sender(n) != who)
        .map(|n| format!("#{n}"))
        .collect();
    let expects = if expects.is_empty() {
        "none".to_string()
    } else {
        expects.join(", ")
    };
    let outcome = match (run.a_attacks, run.b_attacks) {
        (true, true) => "both attack".to_string(),
        (false, false) => "neither attacks".to_string(),
        (true, false) => "A attacks alone".to_string(),
        (false, true) => "B attacks alone".to_string(),
    };
    s.push_str(&wrap_indented(
        &format!(
            "{who} holds every message protocol {k} sends it ({expects}) and cannot \
             tell this run from the one where #{last} arrived: {who} attacks."
        ),
        "  ",
        "  ",
    ));
    s.push_str(&wrap_indented(
        &format!(
            "{other} never gets #{last}, which protocol {k} requires before it \
             attacks: {other} does not attack."
        ),
        "  ",
        "  ",
    ));
    s.push_str(&wrap_indented(
        &format!(
            "=> {outcome}. Waiting for an ack of #{last} is protocol {}, whose last \
             messenger can be lost the same way: no finite k rules this run out.",
            k + 1
        ),
        "  ",
        "  ",
    ));
    s
}
