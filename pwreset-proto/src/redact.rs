//! Secrets out of error messages and logs, for both binaries. A URL setting may carry a
//! password (`user:pass@`) or a key in its query (`?api_key=…`); libraries quote the
//! URL they were given in their errors (sqlx: "The connection string '…' cannot be
//! parsed"). Errors that can hold one are rebuilt from [`url`] and passed through
//! [`scrub`]; `pwreset-notify`'s `main` scrubs its final error with every secret
//! setting as well.

/// `url` with its password and query replaced by `***`; only the scheme if it cannot
/// be parsed (whatever follows may be a password).
pub fn url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                parsed.set_query(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                format!("{scheme}://*** (not a valid URL)")
            }
            _ => "*** (not a valid URL)".to_owned(),
        },
    }
}

/// What of `url` must never be shown: the URL itself, its password (as written and
/// decoded), its query and each query value; found by hand when it does not parse.
pub fn secrets_of_url(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_owned()];
    let (rest, query) = match url.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (url, None),
    };
    if let Some(query) = query {
        secrets.push(query.to_owned());
        for pair in query.split('&') {
            secrets.push(pair.split_once('=').map_or(pair, |(_, v)| v).to_owned());
        }
    }
    // userinfo: between "://" and the last '@' of the authority, the password after ':'.
    let authority = rest.split_once("://").map_or(rest, |(_, a)| a);
    let authority = authority.split('/').next().unwrap_or(authority);
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        secrets.push(password.to_owned());
        secrets.push(percent_encoding::percent_decode_str(password).decode_utf8_lossy().into_owned());
    }
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
        }
        for (_, value) in parsed.query_pairs() {
            secrets.push(value.into_owned());
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// `text` with every secret replaced by `***`, longest first (a URL before its parts).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// An error about the URL setting `flag` whose text may quote it: rebuilt from the
/// redacted URL, the library's message scrubbed.
pub fn url_error(flag: &str, raw: &str, e: impl std::fmt::Display) -> anyhow::Error {
    let message = scrub(&format!("{e:#}"), &secrets_of_url(raw));
    anyhow::anyhow!("{flag} {}: {message}", url(raw))
}

/// A log filter directive both binaries add to `RUST_LOG`'s: sea-orm's driver spans
/// (all at `trace`) record the connection options, the database password included, and
/// every event inside them (a TLS handshake's, at `trace`) would print them. Events of
/// the driver up to `debug` still show.
pub const SECRET_BEARING_SPANS_OFF: &str = "sea_orm::driver=debug";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_query_keys_never_survive() {
        assert_eq!(url("postgres://u:p%40ss@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(url("https://sms.example/send?api_key=k1"), "https://sms.example/send?***");
        assert_eq!(url("postgres://u:NSECRET3@127.0.0.1:99999/x"), "postgres://*** (not a valid URL)");
        for (raw, quoted) in [
            ("postgres://u:NSECRET3@127.0.0.1:99999/x", "NSECRET3"),
            ("smtp://u:NSECRET%21@[bad", "NSECRET!"),
            ("smtps://u:NSECRET%21@relay.example", "NSECRET!"),
            ("https://sms.example/send?api_key=NSECRET", "api_key=NSECRET"),
            ("postgres://u:NSECRET@db/x", "NSECRET"),
        ] {
            let message = format!("cannot parse '{raw}' ({quoted})");
            let error = url_error("--x", raw, &message).to_string();
            assert!(!error.contains("NSECRET"), "{error}");
        }
    }
}
