//! The machine's load while a task runs: /proc/loadavg's 1-minute average, sampled in the
//! background, so that a time can be printed with how busy the machine was meanwhile.

use std::{
    fs,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

/// How often the load is sampled.
const EVERY: Duration = Duration::from_secs(10);

/// Samples of the 1-minute load average, taken every [`EVERY`] until the process exits.
pub struct LoadSampler {
    samples: Arc<Mutex<Vec<f64>>>,
}

impl LoadSampler {
    /// Starts sampling (the first sample now).
    pub fn start() -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&samples);
        thread::spawn(move || loop {
            if let Some(load) = one_minute_load() {
                if let Ok(mut samples) = shared.lock() {
                    samples.push(load);
                }
            }
            thread::sleep(EVERY);
        });
        Self { samples }
    }

    /// A mark for [`LoadSampler::mean_since`]: the samples so far.
    pub fn mark(&self) -> usize {
        self.samples.lock().map_or(0, |samples| samples.len())
    }

    /// The mean of the samples taken since `mark`, or the current load when none was.
    pub fn mean_since(&self, mark: usize) -> Option<f64> {
        let samples = self.samples.lock().ok()?;
        let since = samples.get(mark..).unwrap_or_default();
        if since.is_empty() {
            return one_minute_load();
        }
        Some(since.iter().sum::<f64>() / since.len() as f64)
    }
}

/// The first field of /proc/loadavg.
fn one_minute_load() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
