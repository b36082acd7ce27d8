//! Load generator for pwreset's benchmarks (`bench/run.sh` drives it).
//!
//! Seeds its own accounts and tokens (tokens harvested from the event stream, as a
//! notifier would), drives one case at a fixed concurrency for a fixed time and prints
//! requests/s, p50/p90/p99/p999 latency and errors by status code. It only ever
//! targets loopback addresses.
#![allow(clippy::disallowed_methods)] // a load generator measures wall time: the service's clock rule is not its.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use pwreset::domain::model::password::Password;
use pwreset::domain::runtime::hasher::{Hasher, HasherSettings};
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{
    ConfirmRequest, CreateAccountRequest, RequestTokenRequest, SubscribeEventsRequest, ValidateTokenRequest,
    VerifyPasswordRequest, event,
};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const PASSWORD: &str = "correct horse battery staple orbit";
const NEW_PASSWORD: &str = "violet kettle marathon quietly glows";

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Case {
    /// grpc.health.v1 Check: the no-op baseline.
    Health,
    /// ValidateToken with live tokens.
    Validate,
    /// ValidateToken with unknown tokens.
    ValidateUnknown,
    /// RequestToken for existing accounts (a new token each).
    RequestKnown,
    /// RequestToken for unknown e-mails.
    RequestUnknown,
    /// Confirm with harvested tokens (argon2-bound).
    Confirm,
    /// VerifyPassword, right password.
    Verify,
    /// VerifyPassword, unknown e-mail.
    VerifyUnknown,
    /// RequestToken alternating known and unknown e-mails: two latency distributions.
    Enumeration,
    /// VerifyPassword alternating a wrong password and an unknown e-mail.
    VerifyEnumeration,
    /// Commit-to-subscriber latency with --subscribers subscribers (on --target-b if given).
    Events,
    /// The argon2 pool alone, no RPC: hashes per second.
    Argon2Bound,
    /// --concurrency Confirm calls at once; reports the server's peak RSS (--server-pid).
    ConfirmFlood,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// A second replica: events are read there (Events case).
    #[arg(long)]
    target_b: Option<String>,
    #[arg(long, value_enum)]
    case: Case,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Accounts to seed (tokens to harvest for Confirm).
    #[arg(long, default_value_t = 64)]
    accounts: usize,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Events per second the Events case creates (paced, open loop).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Server process, for its peak RSS (ConfirmFlood).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Free text for the result row (database, build).
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value_t = 19_456)]
    argon2_memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    #[arg(long)]
    hash_workers: Option<usize>,
    /// What RequestToken asks by (request-known, request-unknown, enumeration): the
    /// seeded accounts get a username, and with `phone` a phone number (+1 650 253 NNNN,
    /// so at most 5,000 accounts on a fresh database).
    #[arg(long, value_enum, default_value = "email")]
    login: LoginKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoginKind {
    Email,
    Username,
    Phone,
}

/// The RequestToken of seeded account `i` (known) or of a login nobody has.
fn request_for(kind: LoginKind, emails: &[String], i: u64, unknown: bool) -> RequestTokenRequest {
    let n = i as usize % emails.len();
    match (kind, unknown) {
        (LoginKind::Email, false) => RequestTokenRequest { email: emails[n].clone(), ..Default::default() },
        (LoginKind::Email, true) => {
            RequestTokenRequest { email: format!("nobody-{i}@example.com"), ..Default::default() }
        }
        (LoginKind::Username, false) => RequestTokenRequest { username: username_of(&emails[n]), ..Default::default() },
        (LoginKind::Username, true) => RequestTokenRequest { username: format!("nobody-{i}"), ..Default::default() },
        (LoginKind::Phone, false) => RequestTokenRequest { phone: phone_of(n), ..Default::default() },
        (LoginKind::Phone, true) => RequestTokenRequest { phone: phone_of(5_000 + n % 5_000), ..Default::default() },
    }
}

fn username_of(email: &str) -> String {
    email.split('@').next().unwrap_or_default().to_owned()
}

fn phone_of(n: usize) -> String {
    format!("+1650253{:04}", n % 10_000)
}

/// Outcome of one call: its class (for two-distribution cases) and status.
type Outcome = (usize, Result<(), Code>);

struct Results {
    histograms: Vec<Histogram<u64>>,
    codes: BTreeMap<String, u64>,
    ok: u64,
    elapsed: Duration,
}

fn check_loopback(url: &str) {
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or_default();
    let host = if url.contains("://[") {
        url.split("://[").nth(1).unwrap_or_default().split(']').next().unwrap_or_default()
    } else {
        host
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    assert!(loopback, "the load generator only targets loopback addresses, not {url}");
}

async fn channel(url: &str) -> Channel {
    check_loopback(url);
    // Lazy: cases that need no server (argon2-bound) never connect.
    Endpoint::from_shared(url.to_owned()).unwrap().connect_lazy()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

/// Runs `call` from `concurrency` workers until `duration` has passed after `warmup`;
/// latencies in microseconds, recorded only after the warm-up.
async fn closed_loop<F, Fut>(args: &Args, classes: usize, call: F) -> Results
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let call = Arc::clone(&call);
        workers.spawn(async move {
            let mut histograms: Vec<Histogram<u64>> = (0..classes).map(|_| histogram()).collect();
            let mut codes: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok = 0u64;
            let mut iteration = worker as u64;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let (class, result) = call(worker, iteration).await;
                iteration += 1_000_003;
                if began >= measure_from {
                    let micros = began.elapsed().as_micros().min(120_000_000) as u64;
                    let _ = histograms[class.min(classes - 1)].record(micros.max(1));
                    match result {
                        Ok(()) => ok += 1,
                        Err(code) => *codes.entry(format!("{code:?}")).or_default() += 1,
                    }
                }
            }
            (histograms, codes, ok)
        });
    }
    let mut total = Results {
        histograms: (0..classes).map(|_| histogram()).collect(),
        codes: BTreeMap::new(),
        ok: 0,
        elapsed: args.duration,
    };
    while let Some(done) = workers.join_next().await {
        let (histograms, codes, ok) = done.unwrap();
        for (t, h) in total.histograms.iter_mut().zip(&histograms) {
            t.add(h).unwrap();
        }
        for (code, n) in codes {
            *total.codes.entry(code).or_default() += n;
        }
        total.ok += ok;
    }
    total.elapsed = Instant::now().saturating_duration_since(measure_from).min(args.duration + Duration::from_secs(5));
    total
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

fn report(args: &Args, case: &str, results: &Results) {
    // Successful calls per second: refused calls (e.g. RESOURCE_EXHAUSTED) do not count.
    let rate = results.ok as f64 / results.elapsed.as_secs_f64();
    let errors: Vec<String> = results.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
    for (i, h) in results.histograms.iter().enumerate() {
        let name = if results.histograms.len() > 1 { format!("{case}[{i}]") } else { case.to_owned() };
        let class_rate = h.len() as f64 / results.elapsed.as_secs_f64();
        println!(
            "ROW | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            args.label,
            name,
            args.concurrency,
            if results.histograms.len() > 1 { class_rate } else { rate },
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            if errors.is_empty() { "none".to_owned() } else { errors.join(", ") },
        );
    }
    if results.histograms.len() == 2 {
        let (a, b) = (&results.histograms[0], &results.histograms[1]);
        println!(
            "DIFF | {} | {} | p50 {} ms vs {} ms (Δ {:+.3} ms) | p99 {} ms vs {} ms (Δ {:+.3} ms) | mean {:.3} vs {:.3} ms |",
            args.label,
            case,
            ms(a.value_at_quantile(0.5)),
            ms(b.value_at_quantile(0.5)),
            (a.value_at_quantile(0.5) as f64 - b.value_at_quantile(0.5) as f64) / 1000.0,
            ms(a.value_at_quantile(0.99)),
            ms(b.value_at_quantile(0.99)),
            (a.value_at_quantile(0.99) as f64 - b.value_at_quantile(0.99) as f64) / 1000.0,
            a.mean() / 1000.0,
            b.mean() / 1000.0,
        );
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Result<(), Code> {
    r.map(|_| ()).map_err(|s| s.code())
}

fn unique() -> String {
    format!("{:x}", SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos())
}

/// Creates `n` accounts, `concurrency` at a time.
async fn seed(ch: &Channel, n: usize, with_password: bool) -> Vec<String> {
    seed_with(ch, n, with_password, LoginKind::Email).await
}

/// Seeds `n` accounts; each gets a username (its e-mail's local part), and with
/// `LoginKind::Phone` the phone number `phone_of(i)`.
async fn seed_with(ch: &Channel, n: usize, with_password: bool, login: LoginKind) -> Vec<String> {
    let run = unique();
    let emails: Vec<String> = (0..n).map(|i| format!("bench-{run}-{i}@example.com")).collect();
    let mut pending = tokio::task::JoinSet::new();
    let per_task = n.div_ceil(16).max(1);
    for (c, chunk) in emails.chunks(per_task).enumerate() {
        let (ch, chunk) = (ch.clone(), chunk.to_vec());
        pending.spawn(async move {
            let mut client = AccountServiceClient::new(ch);
            for (k, email) in chunk.into_iter().enumerate() {
                let password = with_password.then(|| PASSWORD.to_owned());
                let username = if login == LoginKind::Email { String::new() } else { username_of(&email) };
                let phone = if login == LoginKind::Phone { phone_of(c * per_task + k) } else { String::new() };
                client
                    .create_account(CreateAccountRequest { email, password, username, phone, ..Default::default() })
                    .await
                    .expect("seed account");
            }
        });
    }
    while pending.join_next().await.is_some() {}
    emails
}

/// Requests a token for every e-mail and collects them from the event stream.
async fn harvest(ch: &Channel, emails: &[String]) -> Vec<String> {
    let mut stream = PasswordResetServiceClient::new(ch.clone())
        .subscribe_events(SubscribeEventsRequest { after_sequence: None })
        .await
        .expect("subscribe")
        .into_inner();
    let wanted: std::collections::HashSet<&String> = emails.iter().collect();
    let requester = {
        let (ch, emails) = (ch.clone(), emails.to_vec());
        tokio::spawn(async move {
            let mut client = PasswordResetServiceClient::new(ch);
            for email in emails {
                client.request_token(RequestTokenRequest { email, ..Default::default() }).await.expect("request");
            }
        })
    };
    let mut tokens: HashMap<String, String> = HashMap::new();
    while tokens.len() < emails.len() {
        let next = tokio::time::timeout(Duration::from_secs(60), stream.message()).await;
        let Ok(Ok(Some(e))) = next else { panic!("harvest stalled at {} of {}", tokens.len(), emails.len()) };
        if let Some(event::Kind::TokenCreated(t)) = e.kind
            && wanted.contains(&t.email)
        {
            tokens.insert(t.email, t.token);
        }
    }
    requester.await.unwrap();
    tokens.into_values().collect()
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let ch = channel(&args.target).await;
    match args.case {
        Case::Health => health(&args, ch).await,
        Case::Validate | Case::ValidateUnknown => validate(&args, ch).await,
        Case::RequestKnown | Case::RequestUnknown | Case::Enumeration => request(&args, ch).await,
        Case::Verify | Case::VerifyUnknown | Case::VerifyEnumeration => verify(&args, ch).await,
        Case::Confirm => confirm(&args, ch).await,
        Case::ConfirmFlood => confirm_flood(&args, ch).await,
        Case::Events => events(&args, ch).await,
        Case::Argon2Bound => argon2_bound(&args).await,
    }
}

async fn health(args: &Args, ch: Channel) {
    let r = closed_loop(args, 1, move |_, _| {
        let mut c = HealthClient::new(ch.clone());
        async move { (0, code(c.check(HealthCheckRequest { service: String::new() }).await)) }
    })
    .await;
    report(args, "health", &r);
}

async fn validate(args: &Args, ch: Channel) {
    let tokens = if args.case == Case::Validate {
        let emails = seed(&ch, args.accounts, true).await;
        harvest(&ch, &emails).await
    } else {
        (0..1024).map(|i| format!("unknown-token-{i:040}")).collect()
    };
    let tokens = Arc::new(tokens);
    let unknown = args.case == Case::ValidateUnknown;
    let r = closed_loop(args, 1, move |_, i| {
        let (mut c, token) = (PasswordResetServiceClient::new(ch.clone()), tokens[i as usize % tokens.len()].clone());
        async move {
            // For unknown tokens NOT_FOUND is the answer being measured.
            let result = code(c.validate_token(ValidateTokenRequest { token, ..Default::default() }).await);
            (0, result.or_else(|c| if unknown && c == Code::NotFound { Ok(()) } else { Err(c) }))
        }
    })
    .await;
    report(args, if args.case == Case::Validate { "validate" } else { "validate-unknown" }, &r);
}

async fn request(args: &Args, ch: Channel) {
    let known = Arc::new(seed_with(&ch, args.accounts, true, args.login).await);
    let (case, login) = (args.case, args.login);
    let r = closed_loop(args, if case == Case::Enumeration { 2 } else { 1 }, move |_, i| {
        let mut c = PasswordResetServiceClient::new(ch.clone());
        let unknown = match case {
            Case::RequestUnknown => true,
            Case::Enumeration => (i / 1_000_003) % 2 == 1,
            _ => false,
        };
        let request = request_for(login, &known, i, unknown);
        async move {
            let class = usize::from(unknown && case == Case::Enumeration);
            (class, code(c.request_token(request).await))
        }
    })
    .await;
    let name = match case {
        Case::RequestKnown => "request-known",
        Case::RequestUnknown => "request-unknown",
        _ => "enumeration(known, unknown)",
    };
    report(args, name, &r);
}

async fn verify(args: &Args, ch: Channel) {
    let known = Arc::new(seed(&ch, args.accounts.min(16), true).await);
    let case = args.case;
    let r = closed_loop(args, if case == Case::VerifyEnumeration { 2 } else { 1 }, move |_, i| {
        let mut c = AccountServiceClient::new(ch.clone());
        let unknown = match case {
            Case::VerifyUnknown => true,
            Case::VerifyEnumeration => (i / 1_000_003) % 2 == 1,
            _ => false,
        };
        let (email, password) = match (case, unknown) {
            (_, true) => (format!("nobody-{i}@example.com"), PASSWORD),
            (Case::VerifyEnumeration, false) => (known[i as usize % known.len()].clone(), NEW_PASSWORD),
            _ => (known[i as usize % known.len()].clone(), PASSWORD),
        };
        async move {
            let class = usize::from(unknown && case == Case::VerifyEnumeration);
            let request = VerifyPasswordRequest { email, password: password.to_owned() };
            (class, code(c.verify_password(request).await))
        }
    })
    .await;
    let name = match case {
        Case::Verify => "verify",
        Case::VerifyUnknown => "verify-unknown",
        _ => "verify-enumeration(wrong password, unknown)",
    };
    report(args, name, &r);
}

async fn confirm(args: &Args, ch: Channel) {
    let emails = seed(&ch, args.accounts, false).await;
    let tokens = Arc::new(Mutex::new(harvest(&ch, &emails).await));
    let r = closed_loop(args, 1, move |_, _| {
        let mut c = PasswordResetServiceClient::new(ch.clone());
        let token = tokens.lock().unwrap().pop();
        async move {
            let Some(token) = token else { return (0, Err(Code::Aborted)) };
            (
                0,
                code(
                    c.confirm(ConfirmRequest { token, new_password: NEW_PASSWORD.into(), ..Default::default() }).await,
                ),
            )
        }
    })
    .await;
    report(args, "confirm", &r);
}

async fn confirm_flood(args: &Args, ch: Channel) {
    let emails = seed(&ch, args.concurrency, false).await;
    let tokens = harvest(&ch, &emails).await;
    let pid = args.server_pid.expect("--server-pid");
    let before = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for token in tokens {
        let mut c = PasswordResetServiceClient::new(ch.clone());
        calls.spawn(async move {
            code(c.confirm(ConfirmRequest { token, new_password: NEW_PASSWORD.into(), ..Default::default() }).await)
        });
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(r) = calls.join_next().await {
        let key = match r.unwrap() {
            Ok(()) => "OK".to_owned(),
            Err(c) => format!("{c:?}"),
        };
        *codes.entry(key).or_default() += 1;
    }
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
    println!(
        "FLOOD | {} | {} concurrent Confirm | {:?} | RSS before {:.1} MiB | peak RSS {:.1} MiB | {:.1} s |",
        args.label,
        args.concurrency,
        codes,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
}

async fn events(args: &Args, ch: Channel) {
    let reader = match &args.target_b {
        Some(b) => channel(b).await,
        None => ch.clone(),
    };
    let emails = Arc::new(seed(&ch, args.accounts, true).await);
    let latencies = Arc::new(Mutex::new(histogram()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut subscribers = tokio::task::JoinSet::new();
    for _ in 0..args.subscribers {
        let mut stream = PasswordResetServiceClient::new(reader.clone())
            .subscribe_events(SubscribeEventsRequest { after_sequence: None })
            .await
            .expect("subscribe")
            .into_inner();
        let (latencies, stop) = (Arc::clone(&latencies), stop.clone());
        subscribers.spawn(async move {
            let mut local = histogram();
            loop {
                tokio::select! {
                    message = stream.message() => {
                        let Ok(Some(e)) = message else { break };
                        let Some(at) = e.occurred_at else { continue };
                        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                        let then = Duration::new(at.seconds.max(0) as u64, at.nanos.max(0) as u32);
                        let _ = local.record(now.saturating_sub(then).as_micros().max(1) as u64);
                    }
                    () = stop.cancelled() => break,
                }
            }
            latencies.lock().unwrap().add(&local).unwrap();
        });
    }
    // Open loop at a fixed rate, so the figure is delivery latency, not queueing
    // behind a saturated writer.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let end = Instant::now() + args.warmup + args.duration;
    let mut sent = tokio::task::JoinSet::new();
    let mut i = 0usize;
    while Instant::now() < end {
        tick.tick().await;
        let mut c = PasswordResetServiceClient::new(ch.clone());
        let email = emails[i % emails.len()].clone();
        i += 1;
        sent.spawn(async move { code(c.request_token(RequestTokenRequest { email, ..Default::default() }).await) });
    }
    let mut failed = 0;
    while let Some(r) = sent.join_next().await {
        failed += usize::from(!matches!(r, Ok(Ok(()))));
    }
    // Let the last events arrive before stopping the subscribers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    while subscribers.join_next().await.is_some() {}
    let h = latencies.lock().unwrap().clone();
    println!("events driver: {i} RequestToken at {} /s, {failed} failed", args.rate);
    println!(
        "EVENTS | {} | {} subscribers, {} events/s{} | {} deliveries | p50 {} ms | p90 {} ms | p99 {} ms | p999 {} ms | max {} ms |",
        args.label,
        args.subscribers,
        args.rate,
        if args.target_b.is_some() { " on replica B" } else { "" },
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
}

async fn argon2_bound(args: &Args) {
    let params = argon2::Params::new(args.argon2_memory_kib, args.argon2_iterations, 1, None).unwrap();
    let mut settings = HasherSettings { params, queue_depth: 1024, ..HasherSettings::default() };
    if let Some(w) = args.hash_workers {
        settings.workers = w;
    }
    let hasher = Arc::new(Hasher::start(&settings).unwrap());
    let r = closed_loop(args, 1, move |_, _| {
        let hasher = Arc::clone(&hasher);
        async move {
            let password = Password::new(PASSWORD.into()).normalised().unwrap();
            (0, hasher.hash(password).await.map(|_| ()).map_err(|_| Code::ResourceExhausted))
        }
    })
    .await;
    report(args, "argon2-bound(no RPC)", &r);
}
