//! Rate limits, lockouts and the reset queue.

use std::time::Duration;

use anyhow::bail;

use crate::cli::LimitArgs;
use crate::domain::runtime::guard::FailureLimit;
use crate::domain::runtime::limits::RateLimits;

/// The longest `--reset-answer-floor`: every reset request waits it out.
const MAX_RESET_ANSWER_FLOOR: Duration = Duration::from_millis(100);

/// The limits; `event_retention` bounds the per-account cap, which counts events.
pub(super) fn rate_limits(args: &LimitArgs, event_retention: Duration) -> anyhow::Result<RateLimits> {
    if args.reset_answer_floor > MAX_RESET_ANSWER_FLOOR {
        bail!("--reset-answer-floor must be at most 100ms");
    }
    if !(32..=128).contains(&args.ipv6_prefix) {
        bail!("--ipv6-prefix must be between 32 and 128");
    }
    if let Some(cap) = args.account_token_limit.0
        && cap.period > event_retention
    {
        bail!("--account-token-limit counts events, so its period must not exceed --event-retention");
    }
    Ok(RateLimits {
        sms: args.sms_rate.0,
        request_token: args.rate_request_token.0,
        validate_token: args.rate_validate_token.0,
        confirm: args.rate_confirm.0,
        verify_password: args.rate_verify_password.0,
        account_tokens: args.account_token_limit.0,
        verify_failures: (args.verify_failure_limit > 0)
            .then_some(FailureLimit { failures: args.verify_failure_limit, lockout: args.verify_lockout }),
        max_pending_resets: args.max_pending_resets.max(1),
        reset_queue_wait: args.reset_queue_wait,
        ipv6_prefix: args.ipv6_prefix,
        reset_answer_floor: args.reset_answer_floor,
    })
}
