//! `VerifyPassword` side by side for an unknown address, a native account and accounts
//! imported in each format of `tests/fixtures/imported_hashes.jsonl` (wrong passwords,
//! one call at a time, interleaved): how long each answer takes, as a caller measures it.
//! Seeds its accounts on first use (idempotent). Its figures are in README "Abuse resistance".
//!
//! `cargo run --release --example verify_timing -- http://127.0.0.1:50061 [ROUNDS]`

// A measuring tool: it reads the wall clock itself.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::{CreateAccountRequest, VerifyPasswordRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let target = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50061".into());
    let rounds: usize = std::env::args().nth(2).map_or(30, |r| r.parse().expect("ROUNDS"));
    let mut client = AccountServiceClient::connect(target).await.expect("connect");
    let fixture = include_str!("../tests/fixtures/imported_hashes.jsonl");
    let mut classes: Vec<(String, String)> = vec![
        ("unknown".into(), "nobody-at-all@example.com".into()),
        ("native".into(), "native-timing@example.com".into()),
    ];
    let create = CreateAccountRequest {
        email: "native-timing@example.com".into(),
        password: Some("correct horse battery staple orbit".into()),
        ..Default::default()
    };
    let _ = client.create_account(create).await;
    for line in fixture.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["weak"].as_bool() == Some(true) {
            continue;
        }
        let email = format!("timing-{}", v["email"].as_str().unwrap());
        let request = CreateAccountRequest {
            email: email.clone(),
            password_hash: v["password_hash"].as_str().unwrap().into(),
            ..Default::default()
        };
        match client.create_account(request).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => panic!("{email}: {s:?}"),
        }
        classes.push((v["format"].as_str().unwrap().into(), email));
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); classes.len()];
    for round in 0..=rounds {
        for (i, (_, email)) in classes.iter().enumerate() {
            let request = VerifyPasswordRequest { email: email.clone(), password: "not the password at all".into() };
            let sent = Instant::now();
            let valid = client.verify_password(request).await.expect("verify").into_inner().valid;
            assert!(!valid);
            if round > 0 {
                samples[i].push(sent.elapsed());
            }
        }
    }
    println!("{:<24} {:>9} {:>9} {:>9}", "account", "p50 ms", "p90 ms", "max ms");
    for ((name, _), times) in classes.iter().zip(samples.iter_mut()) {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!("{name:<24} {:>9.1} {:>9.1} {:>9.1}", at(0.5), at(0.9), at(1.0));
    }
}
