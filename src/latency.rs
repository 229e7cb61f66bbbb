//! Which probe latency status shows. Status gets a new figure only when the typical latency
//! moves materially, so a healthy connection costs no status writes: the median of the last few
//! probes smooths out one-off spikes, and moves among fast figures are ignored.

use std::{collections::VecDeque, time::Duration};

const WINDOW: usize = 5;
/// A move is material when the new median is at least this many times the old one (or a
/// fraction as large), both counted as at least `FAST`.
const RATIO: u32 = 3;
/// Figures below this are all "fast": 2 ms against 9 ms is noise, not news. Measuring from a
/// floor (not requiring a minimum distance) also means a figure that was worth writing on the
/// way up is always worth writing on the way back: with a 50 ms step instead, 10,000
/// connections that showed 55 ms after a busy start went back to 5 ms only when a median
/// happened to dip 50 ms below, a few status writes a minute long after the start.
const FAST: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, Default)]
pub struct LatencyTracker {
    recent: VecDeque<Duration>,
    recorded: Option<Duration>,
    /// Started from status after a restart: the figure shown stands until a full window of
    /// this process's own probes says otherwise (a few probes of a busy start are noise).
    restored: bool,
}

impl LatencyTracker {
    /// Starts from the figure status already shows (e.g. `3ms`), so a restarted operator does
    /// not rewrite every connection's status to refresh it.
    pub fn restored(shown: Option<&str>) -> Self {
        let mut tracker = Self::default();
        tracker.shown(shown);
        tracker.restored = tracker.recorded.is_some();
        tracker
    }

    /// Compares from now on against the figure status shows (e.g. `3ms`), whoever wrote it: a
    /// figure forged by another writer, or one whose write failed, is not mistaken for the truth.
    pub fn shown(&mut self, shown: Option<&str>) {
        let figure = shown.and_then(parse_figure);
        if figure != self.recorded {
            // Someone else's figure (or none): not the one carried over a restart.
            self.restored = false;
        }
        self.recorded = figure;
    }

    /// The typical latency including a probe that had to open its connection first: that one
    /// is not representative, so it counts only while nothing else is known, not even the
    /// figure status shows (after a restart every probe is cold, and 50 connections opened at
    /// once are slow ones: rewriting their status for that would be noise).
    pub fn observe_cold(&mut self, latency: Duration) -> Duration {
        self.median().or(self.recorded).unwrap_or(latency)
    }

    /// Adds a probe's latency; returns the median of the recent ones.
    pub fn observe(&mut self, latency: Duration) -> Duration {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(latency);
        self.median().expect("a latency was just added")
    }

    /// The median of the recent probes, `None` before the first.
    pub fn median(&self) -> Option<Duration> {
        median_of(self.recent.iter().copied())
    }

    /// The median the recent probes would have with `latency` added, leaving them as they are.
    fn median_with(&self, latency: Duration) -> Duration {
        let keep = self.recent.len().min(WINDOW - 1);
        let skip = self.recent.len() - keep;
        median_of(self.recent.iter().skip(skip).copied().chain([latency]))
            .expect("a latency was added")
    }

    /// True when `typical` differs materially from what status shows (or status shows none).
    pub fn worth_recording(&self, typical: Duration) -> bool {
        self.material(typical, self.recent.len())
    }

    /// Whether observing `latency` would make a figure worth recording, leaving the tracker as
    /// it is: the question a probe between reconciles asks before it wakes one.
    pub fn would_record(&self, latency: Duration) -> bool {
        self.material(self.median_with(latency), self.recent.len() + 1)
    }

    fn material(&self, typical: Duration, probes: usize) -> bool {
        let Some(recorded) = self.recorded else {
            return true;
        };
        if self.restored && probes < WINDOW {
            return false;
        }
        let (recorded, typical) = (recorded.max(FAST), typical.max(FAST));
        recorded.max(typical) >= recorded.min(typical) * RATIO
    }
}

/// Reads a figure as status shows it: `850µs`, or a duration `duration::parse` reads (`3ms`).
pub fn parse_figure(text: &str) -> Option<Duration> {
    match text.strip_suffix("µs") {
        Some(micros) => micros.parse().ok().map(Duration::from_micros),
        None => crate::duration::parse(text).ok(),
    }
}

/// The median of at most `WINDOW` figures, sorted on the stack: it runs on every probe.
fn median_of(figures: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut window = [Duration::ZERO; WINDOW];
    let mut count = 0;
    for figure in figures.take(WINDOW) {
        window[count] = figure;
        count += 1;
    }
    let window = &mut window[..count];
    window.sort_unstable();
    window.get(count / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_first_figure_is_always_worth_recording() {
        assert!(LatencyTracker::default().worth_recording(MS(3)));
    }

    #[test]
    fn small_or_proportionally_small_moves_are_ignored() {
        let mut tracker = LatencyTracker::default();
        tracker.shown(Some("3ms"));
        assert!(!tracker.worth_recording(MS(45)), "under 3x a fast figure");
        assert!(tracker.worth_recording(MS(60)));
        tracker.shown(Some("100ms"));
        assert!(!tracker.worth_recording(MS(200)), "under 3x");
        assert!(tracker.worth_recording(MS(400)));
        assert!(tracker.worth_recording(MS(10)));
    }

    #[test]
    fn a_figure_written_on_the_way_up_is_written_on_the_way_back_to_any_fast_one() {
        let mut written = 0;
        for busy in [55, 60, 75, 300].map(MS) {
            let mut tracker = LatencyTracker::default();
            tracker.shown(Some("2ms"));
            if !tracker.worth_recording(busy) {
                continue;
            }
            written += 1;
            tracker.shown(Some(&crate::duration::human(busy)));
            for back in [1, 4, 6, 12, 19].map(MS) {
                assert!(tracker.worth_recording(back), "{busy:?} -> {back:?}");
            }
        }
        assert_eq!(
            written, 3,
            "60, 75 and 300 ms are news after 2 ms, 55 ms is not"
        );
    }

    #[test]
    fn status_figures_are_read_back_after_a_restart() {
        let tracker = LatencyTracker::restored(Some("850µs"));
        assert!(!tracker.worth_recording(MS(2)));
        let mut tracker = LatencyTracker::restored(Some("1.2s"));
        for _ in 0..WINDOW {
            tracker.observe(MS(2));
        }
        assert!(tracker.worth_recording(MS(2)));
        assert!(LatencyTracker::restored(None).worth_recording(MS(2)));
    }

    #[test]
    fn the_figure_status_shows_counts_whoever_wrote_it() {
        let mut tracker = LatencyTracker::restored(Some("2ms"));
        assert!(!tracker.worth_recording(MS(2)));
        tracker.shown(Some("9m"));
        assert!(
            tracker.worth_recording(MS(2)),
            "a forged figure is replaced"
        );
        tracker.shown(None);
        assert!(
            tracker.worth_recording(MS(2)),
            "a removed figure is written again"
        );
    }

    #[test]
    fn a_cold_probe_does_not_enter_the_window() {
        let mut tracker = LatencyTracker::default();
        assert_eq!(
            tracker.observe_cold(MS(300)),
            MS(300),
            "nothing else known yet"
        );
        tracker.observe(MS(2));
        assert_eq!(tracker.observe_cold(MS(300)), MS(2));
    }

    #[test]
    fn a_cold_probe_after_a_restart_keeps_the_figure_status_shows() {
        let mut tracker = LatencyTracker::restored(Some("3ms"));
        let typical = tracker.observe_cold(MS(240));
        assert_eq!(typical, MS(3));
        assert!(!tracker.worth_recording(typical));
    }

    #[test]
    fn after_a_restart_the_figure_shown_stands_until_a_full_window_disagrees() {
        let mut tracker = LatencyTracker::restored(Some("3ms"));
        for _ in 0..WINDOW - 1 {
            let typical = tracker.observe(MS(400));
            assert!(
                !tracker.worth_recording(typical),
                "a few busy probes are noise"
            );
        }
        let typical = tracker.observe(MS(400));
        assert!(tracker.worth_recording(typical), "a full window is not");
    }

    #[test]
    fn asking_ahead_agrees_with_observing() {
        let figures = [3, 4, 400, 2, 500, 600, 3, 700, 2, 2, 2];
        for restored in [None, Some("3ms")] {
            let mut tracker = LatencyTracker::restored(restored);
            for figure in figures.map(MS) {
                let asked = tracker.would_record(figure);
                let median = tracker.median_with(figure);
                let typical = tracker.observe(figure);
                assert_eq!(median, typical, "{figure:?} after {restored:?}");
                assert_eq!(
                    asked,
                    tracker.worth_recording(typical),
                    "{figure:?} after {restored:?}"
                );
            }
        }
    }

    #[test]
    fn a_single_spike_does_not_move_the_median() {
        let mut tracker = LatencyTracker::default();
        for _ in 0..4 {
            tracker.observe(MS(2));
        }
        assert_eq!(tracker.observe(MS(900)), MS(2));
    }

    #[test]
    fn a_lasting_change_moves_the_median() {
        let mut tracker = LatencyTracker::default();
        for _ in 0..5 {
            tracker.observe(MS(2));
        }
        let medians: Vec<_> = (0..3).map(|_| tracker.observe(MS(300))).collect();
        assert_eq!(medians.last(), Some(&MS(300)));
    }
}
