//! Per-client-IP rate limits (governor), one keyed limiter per RPC.
//!
//! governor keeps its own monotonic clock: token-bucket arithmetic must not jump with
//! the wall clock, so this is the one place time is not read through `Clock`.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ClientInfo;
use super::error::{Error, Result};

/// A rate: `count` calls per `period`, with bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let interval = self.period.checked_div(self.count.get())?;
        Some(Quota::with_period(interval)?.allow_burst(self.count))
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `10/1m`: ten calls a minute.
    fn from_str(s: &str) -> Result<Self, String> {
        let (count, period) = s.split_once('/').ok_or_else(|| format!("rate {s:?} must look like 10/1m"))?;
        let count: NonZeroU32 =
            count.trim().parse().map_err(|_| format!("rate {s:?}: count must be a positive integer"))?;
        let period = humantime::parse_duration(period.trim()).map_err(|e| format!("rate {s:?}: {e}"))?;
        let rate = Rate { count, period };
        rate.quota().ok_or_else(|| format!("rate {s:?}: period must be positive"))?;
        Ok(rate)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.period))
    }
}

/// Per-IP limits; `None` switches a limit off.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub request_token: Option<Rate>,
    pub validate_token: Option<Rate>,
    pub confirm: Option<Rate>,
    pub verify_password: Option<Rate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    RequestToken,
    ValidateToken,
    Confirm,
    VerifyPassword,
}

pub struct Limits {
    request_token: Option<DefaultKeyedRateLimiter<IpAddr>>,
    validate_token: Option<DefaultKeyedRateLimiter<IpAddr>>,
    confirm: Option<DefaultKeyedRateLimiter<IpAddr>>,
    verify_password: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn limiter(rate: Option<Rate>) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    rate.and_then(Rate::quota).map(RateLimiter::keyed)
}

impl Limits {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            request_token: limiter(limits.request_token),
            validate_token: limiter(limits.validate_token),
            confirm: limiter(limits.confirm),
            verify_password: limiter(limits.verify_password),
        }
    }

    fn limiter(&self, rpc: Rpc) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        match rpc {
            Rpc::RequestToken => self.request_token.as_ref(),
            Rpc::ValidateToken => self.validate_token.as_ref(),
            Rpc::Confirm => self.confirm.as_ref(),
            Rpc::VerifyPassword => self.verify_password.as_ref(),
        }
    }

    /// Counts one call of `rpc` from the client's address; callers with no known
    /// address share one bucket.
    pub fn check(&self, rpc: Rpc, client: &ClientInfo) -> Result<()> {
        let Some(limiter) = self.limiter(rpc) else {
            return Ok(());
        };
        let key = client.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        limiter.check_key(&key).map_err(|not_until| Error::RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Forgets addresses whose buckets are full again, so memory stays bounded with
    /// millions of distinct clients. Run periodically.
    pub fn evict_idle(&self) {
        for limiter in
            [&self.request_token, &self.validate_token, &self.confirm, &self.verify_password].into_iter().flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let rate: Rate = "10/1m".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rate.count.get(), 10);
        assert_eq!(rate.period, Duration::from_secs(60));
        assert!("0/1m".parse::<Rate>().is_err());
        assert!("10".parse::<Rate>().is_err());
        assert!("10/0s".parse::<Rate>().is_err());
    }

    #[test]
    fn trips_after_the_burst_and_keys_by_address() {
        let limits = Limits::new(&RateLimits { confirm: "2/1h".parse().ok(), ..Default::default() });
        let a = ClientInfo { ip: "192.0.2.1".parse().ok(), user_agent: String::new() };
        let b = ClientInfo { ip: "192.0.2.2".parse().ok(), user_agent: String::new() };
        assert!(limits.check(Rpc::Confirm, &a).is_ok());
        assert!(limits.check(Rpc::Confirm, &a).is_ok());
        let Err(Error::RateLimited { retry_after }) = limits.check(Rpc::Confirm, &a) else {
            panic!("expected a limit")
        };
        assert!(retry_after > Duration::from_secs(60 * 29));
        assert!(limits.check(Rpc::Confirm, &b).is_ok());
        assert!(limits.check(Rpc::RequestToken, &a).is_ok(), "other RPCs are unlimited here");
    }
}
