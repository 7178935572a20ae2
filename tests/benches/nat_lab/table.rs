//! Per-pair summaries of the trials and the printed tables.

use std::time::Duration;

use relay_tests::lab::public::Topology;
use relay_tests::lab::NatPreset;

use crate::trial::Trial;

/// What RFC 4787 predicts for a pair, without port mapping: a punch fails
/// only when one side maps per destination (symmetric) and the other
/// filters by address and port (port-restricted cone or symmetric), since
/// the filtering side's probes go to a port the mapping side will not use
/// towards it.
pub fn predicted_direct(a: NatPreset, b: NatPreset) -> bool {
    let hard = |x: NatPreset, y: NatPreset| {
        x.translates() && !x.endpoint_independent_mapping() && !y.endpoint_independent_filtering()
    };
    !(hard(a, b) || hard(b, a))
}

/// Whether both sides are cone NATs (full or port-restricted): the pairs
/// the ≤ 1 s target is about.
pub fn cone_x_cone(a: NatPreset, b: NatPreset) -> bool {
    let cone = |x: NatPreset| x.translates() && x.endpoint_independent_mapping();
    cone(a) && cone(b)
}

/// One pair's results.
#[derive(Debug)]
pub struct PairSummary {
    /// Site 0's preset (the pinging side).
    pub a: NatPreset,
    /// Site 1's preset.
    pub b: NatPreset,
    /// Which public nodes the pair's lab ran.
    pub topology: Topology,
    /// Trials that ran (setup errors excluded).
    pub trials: Vec<Trial>,
    /// Trials whose setup failed, with the reason.
    pub setup_errors: Vec<String>,
}

impl PairSummary {
    fn direct(&self) -> usize {
        self.trials.iter().filter(|t| t.direct()).count()
    }

    fn to_direct(&self) -> Vec<Duration> {
        sorted(self.trials.iter().filter_map(|t| t.to_direct).collect())
    }

    fn first_relayed(&self) -> Vec<Duration> {
        sorted(self.trials.iter().filter_map(|t| t.first_relayed).collect())
    }

    fn switch_logged(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .trials
            .iter()
            .filter_map(|t| t.switch_logged_ms)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Birthday packets (both sides) of the direct trials that ran
    /// birthday probing: (successes, mean, min, max).
    fn birthday(&self) -> Option<(usize, u64, u64, u64)> {
        let won: Vec<u64> = self
            .trials
            .iter()
            .filter(|t| t.direct() && t.birthday_runs > 0)
            .map(|t| t.birthday_packets)
            .collect();
        let n = won.len();
        let mean = won
            .iter()
            .sum::<u64>()
            .checked_div(u64::try_from(n).ok()?)?;
        Some((n, mean, *won.iter().min()?, *won.iter().max()?))
    }

    /// p50 of the time from relayed to direct, if any trial went direct.
    pub fn p50_to_direct(&self) -> Option<Duration> {
        percentile(&self.to_direct(), 50)
    }

    /// p95 of the time from relayed to direct, counting a trial that never
    /// went direct as [`Duration::MAX`].
    pub fn p95_to_direct(&self) -> Option<Duration> {
        let mut all = self.to_direct();
        let failed = self.trials.len() - all.len();
        all.extend(std::iter::repeat_n(Duration::MAX, failed));
        percentile(&all, 95).filter(|_| !self.to_direct().is_empty())
    }

    /// The distinct errors of failed trials, with counts.
    pub fn errors(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for e in self.trials.iter().filter_map(|t| t.error.as_deref()) {
            let key = error_kind(e);
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => out.push((key, 1)),
            }
        }
        out
    }

    /// The markdown row of the main table.
    pub fn row(&self) -> String {
        let n = self.trials.len();
        let direct = self.direct();
        let rate = if n == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * direct as f64 / n as f64)
        };
        let td = self.to_direct();
        let slow = td.iter().filter(|d| **d >= SLOW).count();
        let fr = self.first_relayed();
        let sw = self.switch_logged();
        let predicted = if predicted_direct(self.a, self.b) {
            "direct"
        } else {
            "relayed"
        };
        let birthday = self.birthday().map_or("-".into(), |(n, mean, min, max)| {
            format!("{mean} / {min} / {max} ({n})")
        });
        format!(
            "| {} x {} | {} | {} | {direct} ({rate}) | {} | {} | {} | {slow} | {} | {} | {} | {birthday} | {predicted} |",
            self.a,
            self.b,
            self.topology.name(),
            n,
            ms(percentile(&td, 50)),
            ms(percentile(&td, 95)),
            ms(td.last().copied()),
            ms_f(percentile_f(&sw, 50)),
            ms(percentile(&fr, 50)),
            ms(fr.last().copied()),
        )
    }
}

/// Direct upgrades at least this slow are counted apart (the lab shows a
/// fast mode of tens of ms and a slow one near 1 s).
const SLOW: Duration = Duration::from_millis(500);

/// The header of the main table.
pub const HEADER: &str = "| pair (A pings B) | topology | trials | direct (rate) | relayed->direct p50 | p95 | max | ≥ 0.5 s | switch logged p50 | first relayed pong p50 | max | birthday packets per success mean / min / max (n) | plain punch (RFC 4787) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// The kind of a CLI error line `error: kind: detail`.
fn error_kind(line: &str) -> String {
    let rest = line.strip_prefix("error: ").unwrap_or(line);
    rest.split(": ").next().unwrap_or(rest).to_string()
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    rank(sorted.len(), p).and_then(|i| sorted.get(i).copied())
}

fn percentile_f(sorted: &[f64], p: usize) -> Option<f64> {
    rank(sorted.len(), p).and_then(|i| sorted.get(i).copied())
}

/// The nearest-rank index of percentile `p` among `n` samples.
fn rank(n: usize, p: usize) -> Option<usize> {
    (n > 0).then(|| (n * p).div_ceil(100).clamp(1, n) - 1)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

fn ms_f(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}
