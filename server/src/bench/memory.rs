//! Peak memory of the process, per step (Linux: `VmHWM`, reset through
//! `clear_refs`; elsewhere nothing is reported).

/// Starts a new peak: the high-water mark is set to the current size.
pub fn reset_peak() {
    // Writing 5 resets the peak resident set size (Linux 4.0 and later).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset, in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
