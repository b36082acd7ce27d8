//! Validation of the flags, through the command line as an operator would give them.

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::domain::model::keys::ServerKey;

fn parse(args: &[&str]) -> anyhow::Result<Config> {
    let mut all = vec!["pwreset", "serve"];
    all.extend_from_slice(args);
    serve_config(&Cli::try_parse_from(all)?)
}

fn serve_config(cli: &Cli) -> anyhow::Result<Config> {
    match &cli.command {
        Command::Serve(args) => Config::try_from(args.as_ref()),
        other => anyhow::bail!("not serve: {other:?}"),
    }
}

#[test]
fn defaults_are_valid() -> anyhow::Result<()> {
    let c = parse(&[])?;
    assert_eq!(c.tokens.ttl, Duration::from_secs(1800));
    assert!(matches!(c.key, KeySource::CreateIfMissing(ref p) if p == Path::new("pwreset.db.key")));
    Ok(())
}

#[test]
fn refuses_public_listener_without_keys() {
    let err = parse(&["--listen", "0.0.0.0:50051"]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("reset, events, accounts"), "{err}");
    assert!(parse(&["--listen", "0.0.0.0:50051", "--allow-unauthenticated"]).is_ok());
    let two = [
        "--listen",
        "0.0.0.0:50051",
        "--caller-key",
        "events=events-key-0123456789",
        "--caller-key",
        "accounts=accounts-key-0123456789",
    ];
    let err = parse(&two).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no caller key for: reset"), "the reset role needs a key too: {err}");
    let mut three = two.to_vec();
    three.extend(["--caller-key", "reset=reset-key-0123456789"]);
    assert!(parse(&three).is_ok());
}

#[test]
fn trusted_proxies_parse_as_cidrs_addresses_or_none() -> anyhow::Result<()> {
    let c = parse(&[])?;
    assert_eq!(c.clients.trusted_proxies.len(), 2, "loopback by default");
    let c = parse(&["--trusted-proxies", "10.0.0.0/8,192.0.2.1,fd00::/8"])?;
    assert_eq!(c.clients.trusted_proxies.len(), 3);
    assert!(parse(&["--trusted-proxies", "none"])?.clients.trusted_proxies.is_empty());
    assert!(parse(&["--trusted-proxies", "not-a-net"]).is_err());
    assert!(parse(&["--ipv6-prefix", "16"]).is_err());
    Ok(())
}

#[test]
fn debug_of_settings_hides_secrets() -> anyhow::Result<()> {
    let key = ServerKey::from_bytes([7; 32]).encode();
    let url = "postgres://pwreset:hunter2-db-secret@db.internal:5432/pwreset";
    let cli = Cli::try_parse_from([
        "pwreset",
        "serve",
        "--database-url",
        url,
        "--secret-key",
        &key,
        "--previous-secret-key",
        &key,
    ])?;
    let config = serve_config(&cli)?;
    for shown in [format!("{:?}", cli), format!("{config:?}")] {
        assert!(!shown.contains("hunter2-db-secret"), "{shown}");
        assert!(!shown.contains(&key), "{shown}");
        assert!(shown.contains("postgres://pwreset:***@db.internal:5432/pwreset"), "{shown}");
    }
    Ok(())
}

#[test]
fn postgres_needs_a_key() {
    // Parsed, and refused where the key is loaded.
    let without = parse(&["--database-url", "postgres://localhost/x"]);
    assert!(without.is_ok_and(|c| c.key.load().is_err()));
    let key = ServerKey::from_bytes([3; 32]).encode();
    assert!(parse(&["--database-url", "postgres://localhost/x", "--secret-key", &key]).is_ok());
    assert!(parse(&["--database-url", "postgres://localhost/x", "--secret-key", "short"]).is_err());
}

#[test]
fn policy_bounds_are_enforced() {
    assert!(parse(&["--password-min-length", "7"]).is_err());
    assert!(parse(&["--password-min-length", "8"]).is_ok());
    assert!(parse(&["--password-max-length", "63"]).is_err());
    // Short codes are bound to their login with their attempts capped, so they need no
    // per-IP limit.
    assert!(parse(&["--token-generator", "numeric", "--rate-confirm", "off"]).is_ok());
    assert!(parse(&["--max-code-attempts", "0"]).is_err());
    assert!(parse(&["--token-generator", "numeric"]).is_ok());
}

#[test]
fn a_short_code_range_too_small_for_the_attempt_cap_is_refused() {
    let refusal = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
    // A 2-code range: the cap of 5 attempts would mean nothing.
    let err = refusal(&["--token-generator", "numeric", "--token-min-number", "1", "--token-max-number", "2"]);
    assert!(err.contains("holds 2 codes; at least 10000"), "{err}");
    // SMS codes use the same range whatever the generator.
    assert!(parse(&["--token-min-number", "0", "--token-max-number", "9998"]).is_err());
    assert!(parse(&["--token-min-number", "0", "--token-max-number", "9999"]).is_ok());
    let err = refusal(&["--token-min-number", "0", "--token-max-number", "9999", "--max-code-attempts", "11"]);
    assert!(err.contains("more than 1 time in 1000"), "{err}");
    assert!(parse(&["--token-min-number", "0", "--token-max-number", "9999", "--max-code-attempts", "10"]).is_ok());
    // The widest range holds 2^64 codes, not 0 (the count does not wrap).
    assert!(parse(&["--token-min-number", "0", "--token-max-number", &u64::MAX.to_string()]).is_ok());
}

#[test]
fn a_refused_caller_key_is_not_echoed() {
    let err = parse(&["--caller-key", "admin=caller-key-secret-0123456789"]).err().map(|e| format!("{e:#}"));
    let err = err.unwrap_or_default();
    assert!(err.contains("unknown role") && !err.contains("caller-key-secret"), "{err}");
    let err = parse(&["--caller-key", "reset=short-secret"]).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("at least 16") && !err.contains("short-secret"), "{err}");
}
