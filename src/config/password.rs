//! The password policy: lengths, strength, the breached-password lists, and history.

use anyhow::{Context, bail};

use crate::cli::PasswordArgs;
use crate::domain::model::breached::BreachedPasswords;
use crate::domain::model::password::{
    LOWEST_MAX_LENGTH, LOWEST_MIN_LENGTH, MAX_PASSWORD_BYTES, MAX_PASSWORD_HISTORY, PasswordPolicy,
};

pub(super) fn passwords(args: &PasswordArgs) -> anyhow::Result<PasswordPolicy> {
    if args.password_min_length < LOWEST_MIN_LENGTH {
        bail!("--password-min-length must be at least {LOWEST_MIN_LENGTH}");
    }
    if args.password_max_length < LOWEST_MAX_LENGTH || args.password_max_length > MAX_PASSWORD_BYTES / 4 {
        bail!("--password-max-length must be between {LOWEST_MAX_LENGTH} and {}", MAX_PASSWORD_BYTES / 4);
    }
    if args.password_min_length > args.password_max_length {
        bail!("--password-min-length must not exceed --password-max-length");
    }
    if args.password_min_score > 4 {
        bail!("--password-min-score must be between 0 and 4");
    }
    let history = password_history(args.history.password_history)?;
    Ok(PasswordPolicy {
        min_length: args.password_min_length,
        max_length: args.password_max_length,
        min_score: args.password_min_score,
        breached: breached(args.breached_passwords.as_deref())?,
        history,
    })
}

/// `--password-history`, within what a password change can afford to compare.
pub(super) fn password_history(depth: u32) -> anyhow::Result<u32> {
    if depth > MAX_PASSWORD_HISTORY {
        bail!("--password-history must be between 0 and {MAX_PASSWORD_HISTORY}");
    }
    Ok(depth)
}

/// The built-in list, and the one `--breached-passwords` names (what was loaded is logged).
fn breached(path: Option<&std::path::Path>) -> anyhow::Result<BreachedPasswords> {
    let Some(path) = path else { return Ok(BreachedPasswords::default()) };
    let lists = BreachedPasswords::with_file(path).context("--breached-passwords")?;
    if let Some(loaded) = lists.loaded() {
        tracing::info!(
            path = %path.display(),
            format = %loaded.format,
            entries = loaded.entries,
            approximate = loaded.approximate,
            skipped_lines = loaded.skipped_lines,
            "breached-password list loaded"
        );
    }
    Ok(lists)
}
