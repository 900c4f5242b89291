//! Medians and spreads over rounds run back to back: on these shared VMs one run per mode is
//! not a measurement (the same binary has read 0.70× and 1.13× of `none` in two runs), but the
//! median of rounds that alternate the modes is.

use std::collections::BTreeMap;

/// The median and the range of a set of figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many figures (rounds) it is made of.
    pub count: usize,
}

impl Spread {
    /// `None` when there is no finite figure.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        Some(Spread {
            median,
            min,
            max,
            count,
        })
    }

    /// `0.973× (0.951–0.990)`: a ratio, its range in brackets (none for one round).
    pub fn ratio_text(&self) -> String {
        if self.count == 1 {
            format!("{:.3}×", self.median)
        } else {
            format!("{:.3}× ({:.3}–{:.3})", self.median, self.min, self.max)
        }
    }

    /// The median and range of an absolute figure, with `digits` decimals.
    pub fn value_text(&self, digits: usize) -> String {
        if self.count == 1 {
            format!("{:.digits$}", self.median)
        } else {
            format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                self.median, self.min, self.max
            )
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "rounds": self.count,
        })
    }
}

/// Per-round ratios `numerator / denominator` of the rounds that have both figures (and a
/// denominator above zero): each round's figure is compared with its own round's, which ran
/// next to it, not with another round's.
pub fn paired_ratios(numerators: &[(u32, f64)], denominators: &[(u32, f64)]) -> Vec<f64> {
    let by_round: BTreeMap<u32, f64> = denominators.iter().copied().collect();
    numerators
        .iter()
        .filter_map(|&(round, value)| {
            let base = *by_round.get(&round)?;
            (base > 0.0).then(|| value / base)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).expect("three figures");
        assert_eq!(
            odd,
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                count: 3
            }
        );
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).expect("four figures");
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        let with_nan = Spread::of(&[f64::NAN, 5.0]).expect("one finite figure");
        assert_eq!((with_nan.median, with_nan.count), (5.0, 1));
    }

    #[test]
    fn ratios_pair_rounds_and_skip_gaps() {
        let fwlog = [(1, 90.0), (2, 80.0), (3, 50.0), (4, 10.0)];
        let none = [(1, 100.0), (2, 100.0), (4, 0.0), (5, 100.0)];
        // Round 3 has no `none` figure, round 4's is zero.
        assert_eq!(paired_ratios(&fwlog, &none), [0.9, 0.8]);
    }

    #[test]
    fn texts() {
        let spread = Spread::of(&[0.9512, 0.97345, 0.99]).expect("figures");
        assert_eq!(spread.ratio_text(), "0.973× (0.951–0.990)");
        assert_eq!(spread.value_text(1), "1.0 (1.0–1.0)");
        let one = Spread::of(&[1234.56]).expect("one figure");
        assert_eq!(one.ratio_text(), "1234.560×");
        assert_eq!(one.value_text(0), "1235");
        assert_eq!(one.to_json()["rounds"], 1);
    }
}
