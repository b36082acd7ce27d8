//! Logs to stderr, as text or JSON lines, filtered by `RUST_LOG` (default `info`).

use pwreset_proto::redact::SECRET_BEARING_SPANS_OFF;

pub fn init(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(SECRET_BEARING_SPANS_OFF.parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
