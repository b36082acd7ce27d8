//! Measures a compromised-password list as `--breached-passwords` loads it: start-up
//! time, resident memory after loading, and lookup time (BENCHMARKS.md).
//!
//! `cargo run --release --example breached_lists -- FILE [LOOKUPS]`

// A measuring tool: it reads the wall clock itself.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use anyhow::Context;
use pwreset::domain::model::breached::BreachedPasswords;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: breached_lists FILE [LOOKUPS]")?;
    let lookups: u32 = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let before = rss_kib();
    let built_in = Instant::now();
    let _ = BreachedPasswords::default().contains("warm the built-in list")?;
    let built_in = built_in.elapsed();
    let with_builtin = rss_kib();
    let start = Instant::now();
    let lists = BreachedPasswords::with_file(std::path::Path::new(&path))?;
    let loaded = start.elapsed();
    let after = rss_kib();
    println!("built-in list: {:.1} ms, +{} KiB RSS", built_in.as_secs_f64() * 1e3, with_builtin - before);
    println!(
        "load {path}: {:.1} ms, +{} KiB RSS (total {after} KiB)",
        loaded.as_secs_f64() * 1e3,
        after - with_builtin
    );
    let known: Vec<String> = (0..10).map(|i| format!("known leaked {i}")).collect();
    for k in &known {
        anyhow::ensure!(lists.contains(k)?, "{k} should be on the list");
    }
    let start = Instant::now();
    let mut found = 0u32;
    for i in 0..lookups {
        found += u32::from(lists.contains(&format!("not on the list {i}"))?);
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(lookups);
    println!("{lookups} misses: {per:.2} µs each ({found} false hits), RSS after {} KiB", rss_kib());
    Ok(())
}
