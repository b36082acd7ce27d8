//! Calibrates the cost model of imported hashes (`domain::model::imported`): times one check of
//! each algorithm at known parameters on one core and prints nanoseconds per unit of its
//! work beside the model's estimate. Run in release on the reference machine:
//!
//! `cargo run --release --example import_cost [ROUNDS]`

// A measuring tool: it reads the wall clock itself.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pwreset::domain::model::imported::prepare;

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(5, |r| r.parse().expect("ROUNDS"));
    let salt = "c2FsdHNhbHRzYWx0c2FsdA";
    let out = "A".repeat(43);
    // (name, hash, units of work)
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "pbkdf2_sha256 (iteration-blocks)",
            format!("pbkdf2_sha256$1000000$salt${}", STANDARD.encode([1u8; 32])),
            1_000_000,
        ),
        (
            "pbkdf2_sha1 (iteration-blocks)",
            format!("pbkdf2_sha1$1000000$salt${}", STANDARD.encode([1u8; 20])),
            1_000_000,
        ),
        ("scrypt (N·r·p)", format!("$scrypt$ln=14,r=8,p=5${salt}${out}"), (1 << 14) * 8 * 5),
        ("argon2id (KiB·passes)", format!("$argon2id$v=19$m=102400,t=2,p=8${salt}${out}"), 102_400 * 2),
        ("argon2i (KiB·passes)", format!("$argon2i$v=19$m=32768,t=3,p=2${salt}${out}"), 32_768 * 3),
        ("bcrypt (2^cost)", "$2b$12$NQOHRHnRexj5SBu57l3Bue.Q7K.nZOQlxmKiUzhMrIKMmBpS7kgIu".to_owned(), 1 << 12),
    ];
    println!("{:<34} {:>12} {:>14} {:>14} {:>12}", "algorithm", "units", "measured ms", "estimate ms", "ns/unit");
    for (name, hash, units) in cases {
        let prepared = prepare(&hash).expect(name);
        let mut times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(prepared.matches(b"a password to check"));
                started.elapsed()
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{name:<34} {units:>12} {:>14.1} {:>14.1} {:>12.1}",
            median.as_secs_f64() * 1e3,
            prepared.cost().micros as f64 / 1e3,
            median.as_nanos() as f64 / units as f64
        );
    }
}
