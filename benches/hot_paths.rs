//! Micro-benchmarks of the pure hot functions: token generation and digest, the
//! password policy check, event sealing. `cargo bench --bench hot_paths`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pwreset::domain::model::email::Email;
use pwreset::domain::model::login::Username;
use pwreset::domain::model::password::{Password, PasswordPolicy};
use pwreset::domain::model::seal::Sealer;
use pwreset::domain::model::token::{TokenDigester, TokenGenerator};

fn tokens(c: &mut Criterion) {
    let generator = TokenGenerator::default();
    let digester = TokenDigester::new([7; 32]);
    c.bench_function("token/generate (32 OS random bytes, base64url)", |b| b.iter(|| generator.generate().unwrap()));
    let token = generator.generate().unwrap();
    c.bench_function("token/digest (HMAC-SHA-256)", |b| b.iter(|| digester.digest(black_box(&token))));
}

fn policy(c: &mut Criterion) {
    let policy = PasswordPolicy::default();
    let email = Email::parse("ada.lovelace@example.com").unwrap();
    c.bench_function("policy/check (strong passphrase, zxcvbn)", |b| {
        b.iter(|| policy.check(&Password::new("correct horse battery staple orbit".into()), &email, "p").is_ok())
    });
    c.bench_function("policy/check (weak, 16 chars)", |b| {
        b.iter(|| policy.check(&Password::new("passwordpassword".into()), &email, "p").is_ok())
    });
}

fn sealing(c: &mut Criterion) {
    let sealer = Sealer::new([9; 32]);
    let token = TokenGenerator::default().generate().unwrap();
    c.bench_function("seal/seal (XChaCha20-Poly1305)", |b| {
        b.iter(|| sealer.seal(black_box(token.expose()), b"row").unwrap())
    });
    let sealed = sealer.seal(token.expose(), b"row").unwrap();
    c.bench_function("seal/open", |b| b.iter(|| sealer.open(black_box(&sealed), b"row").unwrap()));
}

fn logins(c: &mut Criterion) {
    c.bench_function("login/email (ASCII)", |b| {
        b.iter(|| Email::parse(black_box(" Ada.Lovelace@Example.com ")).unwrap())
    });
    c.bench_function("login/email (IDN)", |b| b.iter(|| Email::parse(black_box("jürgen@bücher.example")).unwrap()));
    c.bench_function("login/username (ASCII, PRECIS + fold + skeleton)", |b| {
        b.iter(|| Username::parse(black_box("Ada.Lovelace"), "username").unwrap())
    });
    c.bench_function("login/username (Greek, new: + script check)", |b| {
        b.iter(|| Username::parse_new(black_box("ΟΔΟΣ42"), "username").unwrap())
    });
}

criterion_group!(benches, tokens, policy, sealing, logins);
criterion_main!(benches);
