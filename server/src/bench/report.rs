//! What `tessera bench` measured: printed as a table, written as JSON.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One measured step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measure {
    /// What was measured (`load_parquet`, `unify`, `query:rfm`, …).
    pub name: String,
    /// The median time in seconds.
    pub seconds: f64,
    /// Every timed run, in seconds (after the warm-up for queries).
    pub runs: Vec<f64>,
    /// Rows the step wrote or the query returned.
    pub rows: u64,
    /// The answer, shortened: a one-row result's values, or its row count.
    pub answer: String,
    /// Peak resident memory of the process during the step, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `tessera <version>`.
    pub engine: String,
    /// Persons generated.
    pub persons: u64,
    /// Generator seed.
    pub seed: u64,
    /// The generated data's folder.
    pub data: String,
    /// The database the run leaves, for the comparison and for reruns.
    pub database: String,
    /// Rows per source table.
    pub tables: Vec<(String, u64)>,
    /// Whether the databases were encrypted at rest.
    pub encrypted: bool,
    /// Cores available to the process.
    pub cores: usize,
    /// Size of the database directory after the run, in bytes.
    pub database_bytes: u64,
    /// The steps, in order.
    pub measures: Vec<Measure>,
}

impl Report {
    /// Prints the report as a table.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} on {} persons (seed {}), {} cores; database {:.1} MB{}",
            self.engine,
            self.persons,
            self.seed,
            self.cores,
            self.database_bytes as f64 / 1e6,
            if self.encrypted { ", encrypted" } else { "" }
        )?;
        let rows: u64 = self.tables.iter().map(|(_, n)| n).sum();
        writeln!(out, "{rows} source rows: {}", tables_line(&self.tables))?;
        writeln!(
            out,
            "{:<32} {:>12} {:>10}  answer",
            "step", "time", "peak RSS"
        )?;
        for m in &self.measures {
            writeln!(
                out,
                "{:<32} {:>12} {:>10}  {}",
                m.name,
                duration(m.seconds),
                m.peak_rss_bytes
                    .map_or_else(|| "-".to_string(), |b| format!("{} MB", b / 1_000_000)),
                m.answer
            )?;
        }
        Ok(())
    }
}

fn tables_line(tables: &[(String, u64)]) -> String {
    tables
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1.23 s`, `45.6 ms`, `789 µs`.
pub fn duration(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.0} µs", seconds * 1e6)
    }
}

/// The median of `runs` (0 for none).
pub fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_durations_read_as_people_expect() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(duration(2.5), "2.50 s");
        assert_eq!(duration(0.0456), "45.6 ms");
        assert_eq!(duration(0.000_789), "789 µs");
    }
}
