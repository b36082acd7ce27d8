//! Where messages go: SMTP (lettre: STARTTLS or implicit TLS, authentication, a pool of
//! connections), an HTTP webhook for texts (SMS gateways, chat tools), or, in
//! development, a folder (`.eml` files and `.sms.json` files, one log line each).
//! Every failure is either transient (retried in the background) or permanent (logged
//! and skipped). Every call is bounded as a whole (connection, exchange and the answer's
//! body) by its timeout, and a webhook's answer is read up to [`WEBHOOK_BODY_CAP`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::Address;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::render::Mail;

/// Why a message was not delivered.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying: the server is down, busy, or said "try again later".
    Transient(anyhow::Error),
    /// Retrying cannot help (a recipient refused with a 5xx, a bad request).
    Permanent(anyhow::Error),
}

/// How much of a webhook's answer is read (only its status matters; the body is read so
/// the connection can be reused, and a gateway could send gigabytes).
pub const WEBHOOK_BODY_CAP: usize = 64 * 1024;

/// An e-mail ready to send.
pub struct Envelope {
    /// A bare address, exactly the event's (see [`recipient`]).
    pub to: Address,
    pub message_id: String,
    pub mail: Mail,
    /// The stream sequence, for file names and logs.
    pub sequence: u64,
}

/// A text ready to send.
pub struct Text {
    pub to: String,
    pub sequence: u64,
    /// The JSON body for a webhook, rendered from `--sms-webhook-body`.
    pub json: String,
}

pub enum MailSender {
    /// `timeout` bounds one whole send: connecting, TLS, every command and the data.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        timeout: Duration,
    },
    Folder(PathBuf),
}

pub enum TextSender {
    Webhook { url: String, bearer: Option<String>, client: Box<WebhookClient>, timeout: Duration },
    Folder(PathBuf),
    None,
}

type WebhookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn webhook_client() -> anyhow::Result<WebhookClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

pub fn smtp(url: &str, ca_file: Option<&Path>, timeout: Duration) -> anyhow::Result<MailSender> {
    // smtp://host:port (plain), smtp://host?tls=required (STARTTLS), smtps://host (TLS);
    // user:password@ for authentication. Pooled connections. lettre's own timeout is per
    // command; the whole send is bounded in `send`.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| pwreset::redact::url_error("--smtp-url", url, e))?
        .timeout(Some(timeout));
    if let Some(ca_file) = ca_file {
        transport = transport.tls(tls_with_roots(url, ca_file)?);
    }
    Ok(MailSender::Smtp { transport: transport.build(), timeout })
}

/// The URL's TLS mode, trusting the certificate authorities in `ca_file` only.
fn tls_with_roots(url: &str, ca_file: &Path) -> anyhow::Result<Tls> {
    let parsed = url::Url::parse(url).map_err(|e| pwreset::redact::url_error("--smtp-url", url, e))?;
    let host = parsed.host_str().context("--smtp-url has no host")?.trim_matches(['[', ']']).to_owned();
    let pem = std::fs::read(ca_file).with_context(|| format!("reading --smtp-ca-file {}", ca_file.display()))?;
    // An empty list would trust nothing and every send would fail and retry forever.
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("--smtp-ca-file {} holds no PEM certificate", ca_file.display());
    }
    let roots = Certificate::from_pem(&pem).with_context(|| format!("--smtp-ca-file {}", ca_file.display()))?;
    let parameters = TlsParameters::builder(host)
        .certificate_store(CertificateStore::None)
        .add_root_certificate(roots)
        .build_rustls()
        .context("--smtp-ca-file")?;
    let tls = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    match (parsed.scheme(), tls.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(parameters)),
        ("smtp", Some("required")) => Ok(Tls::Required(parameters)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(parameters)),
        _ => anyhow::bail!("--smtp-ca-file needs a TLS --smtp-url (smtps://… or smtp://…?tls=required)"),
    }
}

/// The recipient of an event's e-mail field: a bare addr-spec (`local@domain`) whose
/// parsed form is exactly the field. A field lettre would read as a mailbox
/// (`x<victim@example.com>`, a display name, a comment or a list) names someone other
/// than the account's address, with attacker text beside it: refused.
pub fn recipient(field: &str) -> anyhow::Result<Address> {
    let address: Address = field.parse().map_err(|_| anyhow!("the recipient is not a bare e-mail address"))?;
    if AsRef::<str>::as_ref(&address) != field {
        anyhow::bail!("the recipient parses as a different address");
    }
    Ok(address)
}

/// The e-mail as sent: multipart/alternative, text then HTML, with our Message-ID. The
/// envelope's one recipient is the `To` address, with no display name.
pub fn message(from: &Mailbox, envelope: &Envelope) -> anyhow::Result<Message> {
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, envelope.to.clone()))
        .subject(envelope.mail.subject.clone())
        .message_id(Some(envelope.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(envelope.mail.text.clone(), envelope.mail.html.clone()))
        .context("building the message")
}

impl MailSender {
    pub async fn send(&self, from: &Mailbox, envelope: &Envelope) -> Result<(), Failure> {
        let message = message(from, envelope).map_err(Failure::Permanent)?;
        match self {
            MailSender::Smtp { transport, timeout } => match tokio::time::timeout(*timeout, transport.send(message))
                .await
            {
                Err(_) => Err(Failure::Transient(anyhow!("the SMTP relay did not take the message in {timeout:?}"))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if e.is_permanent() => Err(Failure::Permanent(anyhow!(e))),
                Ok(Err(e)) => Err(Failure::Transient(anyhow!(e))),
            },
            MailSender::Folder(dir) => {
                let path = dir.join(format!("{:020}.eml", envelope.sequence));
                write_file(&path, &message.formatted()).map_err(Failure::Transient)?;
                tracing::info!(sequence = envelope.sequence, to = %envelope.to, subject = %envelope.mail.subject, file = %path.display(), "mail written to the development folder");
                Ok(())
            }
        }
    }
}

impl TextSender {
    pub async fn send(&self, text: &Text) -> Result<(), Failure> {
        match self {
            TextSender::None => {
                Err(Failure::Permanent(anyhow!("no SMS sender configured (--sms-webhook-url or --out-dir)")))
            }
            TextSender::Folder(dir) => {
                let path = dir.join(format!("{:020}.sms.json", text.sequence));
                write_file(&path, text.json.as_bytes()).map_err(Failure::Transient)?;
                tracing::info!(sequence = text.sequence, to = %text.to, file = %path.display(), "text written to the development folder");
                Ok(())
            }
            TextSender::Webhook { url, bearer, client, timeout } => {
                let mut request = hyper::Request::post(url.as_str()).header("content-type", "application/json");
                if let Some(token) = bearer {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let request = request
                    .body(Full::new(Bytes::from(text.json.clone())))
                    .map_err(|e| Failure::Permanent(anyhow!("building the webhook request: {e}")))?;
                // One deadline for the whole call: connecting, the answer's head and its body.
                let deadline = pwreset::domain::runtime::clock::monotonic() + *timeout;
                let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
                    Err(_) => return Err(Failure::Transient(anyhow!("the webhook did not answer in {timeout:?}"))),
                    Ok(Err(e)) => return Err(Failure::Transient(anyhow!("webhook: {e}"))),
                    Ok(Ok(response)) => response,
                };
                let status = response.status();
                // The status decides. The body is read (never logged: a gateway may echo the
                // message, and with it the code) up to the cap and the deadline, so a
                // connection can be reused; one that trickles or never ends is dropped.
                let body = Limited::new(response.into_body(), WEBHOOK_BODY_CAP).collect();
                if !matches!(tokio::time::timeout_at(deadline, body).await, Ok(Ok(_))) {
                    tracing::debug!(sequence = text.sequence, %status, "the webhook's answer was cut at its cap or deadline");
                }
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                    Err(Failure::Transient(anyhow!("webhook answered {status}")))
                } else {
                    Err(Failure::Permanent(anyhow!("webhook answered {status}")))
                }
            }
        }
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_bare_address_equal_to_the_field_is_a_recipient() {
        assert_eq!(recipient("ada@example.com").unwrap().to_string(), "ada@example.com");
        for field in [
            "x<victim@example.com>",
            "n0<victim@example.com>",
            "\"https://evil.example/reset-now\" <victim@example.com>",
            "<victim@example.com>",
            "victim@example.com (comment)",
            "a@example.com, victim@example.com",
            " victim@example.com",
            "victim@example.com ",
            "victim",
            "",
        ] {
            assert!(recipient(field).is_err(), "{field:?} is a recipient");
        }
    }

    #[test]
    fn the_message_goes_to_the_bare_address_only() {
        let envelope = Envelope {
            to: recipient("ada@example.com").unwrap(),
            message_id: "<1.pwreset@app.example>".into(),
            mail: Mail { subject: "s".into(), text: "t".into(), html: "h".into(), locale: "en".into() },
            sequence: 1,
        };
        let message = message(&"Accounts <no-reply@app.example>".parse().unwrap(), &envelope).unwrap();
        let to: Vec<String> = message.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["ada@example.com"]);
        let formatted = String::from_utf8(message.formatted()).unwrap();
        assert!(formatted.contains("To: ada@example.com\r\n"), "{formatted}");
    }

    #[test]
    fn a_ca_file_needs_a_tls_url_and_a_certificate() {
        let dir = tempfile::TempDir::new().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["relay.internal".to_owned()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        assert!(matches!(tls_with_roots("smtps://relay.internal", &ca).unwrap(), Tls::Wrapper(_)));
        assert!(matches!(tls_with_roots("smtp://relay.internal:587?tls=required", &ca).unwrap(), Tls::Required(_)));
        let plain = tls_with_roots("smtp://relay.internal:25", &ca).unwrap_err().to_string();
        assert!(plain.contains("needs a TLS --smtp-url"), "{plain}");
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(tls_with_roots("smtps://relay.internal", &ca).is_err());
        assert!(tls_with_roots("smtps://relay.internal", &dir.path().join("missing.pem")).is_err());
    }
}
