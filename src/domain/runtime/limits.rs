//! Per-client-IP rate limits (governor), one keyed limiter per RPC, reading time through
//! the domain [`Clock`](super::clock::Clock) like everything else.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::clock::SharedClock;
use crate::domain::model::ClientInfo;
use crate::domain::model::error::{Error, Result};

/// governor's view of the domain clock: time since the Unix epoch. A wall clock that
/// steps back only makes buckets refill later (governor subtracts saturating).
#[derive(Clone)]
pub struct GovernorClock(pub SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or(0).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, GovernorClock, NoOpMiddleware<Duration>>;

fn keyed<K: std::hash::Hash + Eq + Clone>(quota: Quota, clock: &SharedClock) -> Keyed<K> {
    RateLimiter::new(quota, DefaultKeyedStateStore::default(), GovernorClock(clock.clone()))
}

/// A rate: `count` calls per `period`, with bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    pub(crate) fn quota(self) -> Option<Quota> {
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

/// Per-IP limits, and the per-account ones; `None` switches a limit off. The default
/// has every limit off and room for 1024 pending reset requests.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub request_token: Option<Rate>,
    pub validate_token: Option<Rate>,
    pub confirm: Option<Rate>,
    pub verify_password: Option<Rate>,
    /// Tokens created per account (from the database, silent).
    pub account_tokens: Option<Rate>,
    /// Consecutive VerifyPassword failures per e-mail.
    pub verify_failures: Option<super::guard::FailureLimit>,
    /// Reset requests in flight.
    pub max_pending_resets: usize,
    /// How long a reset request waits for room among those in flight.
    pub reset_queue_wait: std::time::Duration,
    /// IPv6 clients share a bucket per network of this prefix length.
    pub ipv6_prefix: u8,
    /// No reset request is answered sooner than this after its batch started.
    pub reset_answer_floor: std::time::Duration,
    /// Reset requests by phone, all numbers together (texts cost money).
    pub sms: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            request_token: None,
            validate_token: None,
            confirm: None,
            verify_password: None,
            account_tokens: None,
            verify_failures: None,
            max_pending_resets: 1024,
            reset_queue_wait: std::time::Duration::from_millis(100),
            ipv6_prefix: 64,
            reset_answer_floor: std::time::Duration::from_millis(3),
            sms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    RequestToken,
    ValidateToken,
    Confirm,
    VerifyPassword,
}

impl Rpc {
    pub fn name(self) -> &'static str {
        match self {
            Rpc::RequestToken => "RequestToken",
            Rpc::ValidateToken => "ValidateToken",
            Rpc::Confirm => "Confirm",
            Rpc::VerifyPassword => "VerifyPassword",
        }
    }
}

pub struct Limits {
    clock: GovernorClock,
    ipv6_prefix: u8,
    request_token: Option<Keyed<IpAddr>>,
    validate_token: Option<Keyed<IpAddr>>,
    confirm: Option<Keyed<IpAddr>>,
    verify_password: Option<Keyed<IpAddr>>,
    /// One bucket for every request by phone.
    sms: Option<Keyed<()>>,
}

impl Limits {
    pub fn new(limits: &RateLimits, clock: &SharedClock) -> Self {
        let limiter = |rate: Option<Rate>| rate.and_then(Rate::quota).map(|q| keyed(q, clock));
        Self {
            clock: GovernorClock(clock.clone()),
            ipv6_prefix: limits.ipv6_prefix.min(128),
            request_token: limiter(limits.request_token),
            validate_token: limiter(limits.validate_token),
            confirm: limiter(limits.confirm),
            verify_password: limiter(limits.verify_password),
            sms: limits.sms.and_then(Rate::quota).map(|q| keyed(q, clock)),
        }
    }

    fn limiter(&self, rpc: Rpc) -> Option<&Keyed<IpAddr>> {
        match rpc {
            Rpc::RequestToken => self.request_token.as_ref(),
            Rpc::ValidateToken => self.validate_token.as_ref(),
            Rpc::Confirm => self.confirm.as_ref(),
            Rpc::VerifyPassword => self.verify_password.as_ref(),
        }
    }

    /// The bucket of an address: itself for IPv4 (an IPv4-mapped IPv6 address, as a
    /// dual-stack listener sees IPv4 clients, included), its network for IPv6 (a
    /// subscriber usually has a whole /64, and would otherwise have 2^64 buckets).
    fn bucket(&self, ip: Option<IpAddr>) -> IpAddr {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                ipnet::Ipv6Net::new(v6, self.ipv6_prefix).map_or(IpAddr::V6(v6), |net| IpAddr::V6(net.network()))
            }
            Some(v4) => v4,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Counts one call of `rpc` from the client's address (IPv6: its network);
    /// callers with no known address share one bucket.
    pub fn check(&self, rpc: Rpc, client: &ClientInfo) -> Result<()> {
        let Some(limiter) = self.limiter(rpc) else {
            return Ok(());
        };
        let key = self.bucket(client.ip);
        limiter.check_key(&key).map_err(|not_until| {
            metrics::counter!("pwreset_rate_limited_total", "rpc" => rpc.name()).increment(1);
            Error::RateLimited { retry_after: not_until.wait_time_from(governor::clock::Clock::now(&self.clock)) }
        })
    }

    /// Counts one reset request by phone against the global `--sms-rate`.
    pub fn check_sms(&self) -> Result<()> {
        let Some(limiter) = &self.sms else { return Ok(()) };
        limiter.check_key(&()).map_err(|not_until| {
            metrics::counter!("pwreset_rate_limited_total", "rpc" => "RequestToken/sms").increment(1);
            Error::RateLimited { retry_after: not_until.wait_time_from(governor::clock::Clock::now(&self.clock)) }
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
        let clock: SharedClock = std::sync::Arc::new(crate::domain::runtime::clock::ManualClock::default());
        let limits = Limits::new(&RateLimits { confirm: "2/1h".parse().ok(), ..Default::default() }, &clock);
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

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let clock: SharedClock = std::sync::Arc::new(crate::domain::runtime::clock::ManualClock::default());
        let limits = Limits::new(&RateLimits { confirm: "2/1h".parse().ok(), ..Default::default() }, &clock);
        let at = |ip: &str| ClientInfo { ip: ip.parse().ok(), user_agent: String::new() };
        assert!(limits.check(Rpc::Confirm, &at("2001:db8:1:2::1")).is_ok());
        assert!(limits.check(Rpc::Confirm, &at("2001:db8:1:2:ffff::9")).is_ok());
        assert!(limits.check(Rpc::Confirm, &at("2001:db8:1:2:abcd::77")).is_err(), "same /64, same bucket");
        assert!(limits.check(Rpc::Confirm, &at("2001:db8:1:3::1")).is_ok(), "the next /64 is another bucket");
    }

    #[test]
    fn ipv4_mapped_clients_have_a_bucket_each() {
        let clock: SharedClock = std::sync::Arc::new(crate::domain::runtime::clock::ManualClock::default());
        let limits = Limits::new(&RateLimits { confirm: "1/1h".parse().ok(), ..Default::default() }, &clock);
        let at = |ip: &str| ClientInfo { ip: ip.parse().ok(), user_agent: String::new() };
        assert!(limits.check(Rpc::Confirm, &at("::ffff:127.0.0.2")).is_ok());
        assert!(limits.check(Rpc::Confirm, &at("::ffff:127.0.0.3")).is_ok(), "not one ::/64 for all of IPv4");
        assert!(limits.check(Rpc::Confirm, &at("127.0.0.2")).is_err(), "the mapped and plain forms are one client");
    }

    #[test]
    fn a_bucket_refills_as_the_clock_moves() {
        let manual = std::sync::Arc::new(crate::domain::runtime::clock::ManualClock::default());
        let clock: SharedClock = manual.clone();
        let limits = Limits::new(&RateLimits { confirm: "2/1h".parse().ok(), ..Default::default() }, &clock);
        let a = ClientInfo { ip: "192.0.2.1".parse().ok(), user_agent: String::new() };
        assert!(limits.check(Rpc::Confirm, &a).is_ok() && limits.check(Rpc::Confirm, &a).is_ok());
        assert!(limits.check(Rpc::Confirm, &a).is_err());
        manual.advance(Duration::from_secs(30 * 60));
        assert!(limits.check(Rpc::Confirm, &a).is_ok(), "one call back every half hour");
        assert!(limits.check(Rpc::Confirm, &a).is_err());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let manual = std::sync::Arc::new(crate::domain::runtime::clock::ManualClock::default());
        let clock: SharedClock = manual.clone();
        let limits = Limits::new(&RateLimits { confirm: "10/1m".parse().ok(), ..Default::default() }, &clock);
        for n in 0..100_000u32 {
            let client = ClientInfo { ip: Some(IpAddr::from(n.to_be_bytes())), user_agent: String::new() };
            let _ = limits.check(Rpc::Confirm, &client);
        }
        assert_eq!(limits.confirm.as_ref().map(|l| l.len()), Some(100_000));
        manual.advance(Duration::from_secs(60));
        limits.evict_idle();
        assert_eq!(limits.confirm.as_ref().map(|l| l.len()), Some(0));
    }
}
