//! Tokens: lifetimes, the generator, and the short codes (the numeric generator's and
//! every code texted by SMS), which only the attempt cap protects.

use std::time::Duration;

use anyhow::bail;

use crate::cli::{GeneratorKind, TokenArgs};
use crate::domain::model::token::{TokenGenerator, TokenPolicy};

/// The fewest codes a short-code range may hold (`--token-min-number..--token-max-number`).
pub const MIN_SHORT_CODES: u64 = 10_000;
/// `--max-code-attempts` may give a guesser at most 1 chance in this many per code.
pub const MAX_GUESS_ODDS: u64 = 1_000;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn tokens(args: &TokenArgs) -> anyhow::Result<TokenPolicy> {
    let sms_codes = short_codes(args)?;
    let generator = generator(args, &sms_codes)?;
    lifetimes(args)?;
    Ok(TokenPolicy {
        generator,
        ttl: args.token_ttl,
        setup_ttl: args.setup_token_ttl,
        max_ttl: args.max_token_ttl,
        cache_ttl: args.token_cache_ttl,
        allow_without_usable_password: args.allow_reset_without_password,
        sms_codes,
        max_code_attempts: args.max_code_attempts,
    })
}

/// The short-code range, refused when the attempt cap would mean little against it.
fn short_codes(args: &TokenArgs) -> anyhow::Result<TokenGenerator> {
    if args.token_min_number >= args.token_max_number {
        bail!("--token-min-number must be below --token-max-number");
    }
    if args.max_code_attempts == 0 {
        bail!("--max-code-attempts must be at least 1");
    }
    let code_count = (args.token_max_number - args.token_min_number).saturating_add(1);
    if code_count < MIN_SHORT_CODES {
        bail!(
            "--token-min-number..--token-max-number holds {code_count} codes; at least {MIN_SHORT_CODES} are needed for --max-code-attempts to protect them"
        );
    }
    if u64::from(args.max_code_attempts).saturating_mul(MAX_GUESS_ODDS) > code_count {
        bail!(
            "--max-code-attempts {} against {code_count} codes lets a guesser win more than 1 time in {MAX_GUESS_ODDS}; lower it or widen the code range",
            args.max_code_attempts
        );
    }
    Ok(TokenGenerator::Numeric { min: args.token_min_number, max: args.token_max_number })
}

fn generator(args: &TokenArgs, short_codes: &TokenGenerator) -> anyhow::Result<TokenGenerator> {
    Ok(match args.token_generator {
        GeneratorKind::Bytes => {
            if !(16..=64).contains(&args.token_bytes) {
                bail!("--token-bytes must be between 16 and 64");
            }
            TokenGenerator::RandomBytes(args.token_bytes)
        }
        GeneratorKind::String => {
            let (min, max) = (args.token_min_length, args.token_max_length);
            if min < 8 || min > max || max > 128 {
                bail!("--token-min-length must be at least 8 and at most --token-max-length (at most 128)");
            }
            TokenGenerator::RandomString { min, max }
        }
        GeneratorKind::Numeric => short_codes.clone(),
    })
}

fn lifetimes(args: &TokenArgs) -> anyhow::Result<()> {
    if args.token_ttl < MINUTE || args.token_ttl > 7 * DAY {
        bail!("--token-ttl must be between 1m and 7d");
    }
    if args.max_token_ttl < MINUTE || args.max_token_ttl > 365 * DAY {
        bail!("--max-token-ttl must be between 1m and 365d");
    }
    if args.setup_token_ttl < MINUTE || args.setup_token_ttl > args.max_token_ttl {
        bail!("--setup-token-ttl must be between 1m and --max-token-ttl");
    }
    if args.token_cache_ttl > MINUTE {
        bail!("--token-cache-ttl must be at most 1m");
    }
    Ok(())
}
