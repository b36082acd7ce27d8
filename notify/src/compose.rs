//! What each event asks for, as a message ready for its lane: a reset or setup link by
//! e-mail, a code by text, a password-changed notice, or an unknown-account notice.
//! Whether a token goes out as a text is read from the event's own `channel` (the
//! service decides it), here and nowhere else; the `Work` variant carries it to the
//! lanes and the metrics.

use std::time::Duration;

use pwreset_proto::clock::{Clock, SystemClock};
use pwreset_proto::proto::{
    Channel, Event, PasswordChangeReason, PasswordChanged, ResetRequestedForUnknownEmail, TokenCreated, TokenPurpose,
    event,
};

use crate::deliver::{Job, Work};
use crate::render::{Kind, Renderer, TemplateContext, link};
use crate::send::{self, Envelope, Text};

/// What one event asks for.
pub enum Plan {
    Send(Job),
    Nothing(&'static str),
    /// Never sent (logged and counted with this reason): a template failed, or the
    /// recipient is not a bare address.
    Refused(&'static str, anyhow::Error),
}

impl Plan {
    /// Retrying ends by `expires_in` at the latest: a dead link or code is not worth sending.
    fn expiring_in(mut self, expires_in: Option<Duration>) -> Self {
        if let Plan::Send(job) = &mut self {
            job.expires_in = expires_in;
        }
        self
    }

    /// Anyone can cause it (any address can be asked for): given up first when too
    /// many messages retry.
    fn unsolicited(mut self) -> Self {
        if let Plan::Send(job) = &mut self {
            job.unsolicited = true;
        }
        self
    }
}

/// Turns events into messages.
pub struct Composer {
    pub renderer: Renderer,
    /// The template `body`: a text's JSON for the webhook (`to`, `message`, `sequence`).
    pub webhook_body: minijinja::Environment<'static>,
    /// Link templates; `{token}` becomes the URL-encoded token.
    pub reset_url: String,
    pub setup_url: String,
    /// Message-IDs are `<sequence>.<server_id>@<domain>`.
    pub server_id: String,
    pub domain: String,
    pub notify_unknown_accounts: bool,
}

impl Composer {
    pub fn compose(&self, event: Event) -> Plan {
        let sequence = event.sequence;
        match event.kind {
            Some(event::Kind::TokenCreated(token)) => self.token_created(sequence, token),
            Some(event::Kind::PasswordChanged(changed)) => self.password_changed(sequence, changed),
            Some(event::Kind::ResetRequestedForUnknownEmail(unknown)) if self.notify_unknown_accounts => {
                self.unknown_account(sequence, unknown)
            }
            Some(event::Kind::ResetRequestedForUnknownEmail(_)) => Plan::Nothing("unknown-account notices are off"),
            None => Plan::Nothing("an event kind this notifier does not know"),
        }
    }

    /// The one place a `TokenCreated` becomes a message: a link by e-mail, or the code
    /// by text when the event's channel says so.
    fn token_created(&self, sequence: u64, token: TokenCreated) -> Plan {
        if token.token.is_empty() {
            return Plan::Nothing("token no longer live");
        }
        let setup = token.purpose == TokenPurpose::AccountSetup as i32;
        let kind = if setup { Kind::Setup } else { Kind::Reset };
        let by_text = token.channel == Channel::Sms as i32;
        let context = TemplateContext {
            email: token.email,
            username: token.username,
            phone: token.phone,
            expires: token.expires_at.as_ref().map(format_time).unwrap_or_default(),
            ..TemplateContext::default()
        };
        let plan = if by_text {
            self.text(sequence, kind, &token.locale, TemplateContext { code: token.token, ..context })
        } else {
            let url = if setup { &self.setup_url } else { &self.reset_url };
            self.mail(sequence, kind, &token.locale, TemplateContext { link: link(url, &token.token), ..context })
        };
        plan.expiring_in(token.expires_at.as_ref().map(time_left))
    }

    fn password_changed(&self, sequence: u64, changed: PasswordChanged) -> Plan {
        let reason = match PasswordChangeReason::try_from(changed.reason) {
            Ok(PasswordChangeReason::AccountSetup) => "ACCOUNT_SETUP",
            Ok(PasswordChangeReason::Change) => "CHANGE",
            _ => "RESET",
        };
        let context = TemplateContext { email: changed.email, reason: reason.to_owned(), ..TemplateContext::default() };
        self.mail(sequence, Kind::Changed, "", context)
    }

    fn unknown_account(&self, sequence: u64, unknown: ResetRequestedForUnknownEmail) -> Plan {
        let context = TemplateContext { email: unknown.email, ..TemplateContext::default() };
        self.mail(sequence, Kind::Unknown, &unknown.locale, context).unsolicited()
    }

    /// An e-mail to the context's address.
    fn mail(&self, sequence: u64, kind: Kind, locale: &str, context: TemplateContext) -> Plan {
        let to = match send::recipient(&context.email) {
            Ok(to) => to,
            Err(e) => return Plan::Refused("recipient", e),
        };
        match self.renderer.mail(kind, locale, &context) {
            Ok(mail) => {
                let message_id = format!("<{sequence}.{}@{}>", self.server_id, self.domain);
                Plan::Send(job(sequence, Work::Mail(Envelope { to, message_id, mail, sequence })))
            }
            Err(e) => Plan::Refused("render", e),
        }
    }

    /// A text to the context's phone number, as the webhook's JSON body.
    fn text(&self, sequence: u64, kind: Kind, locale: &str, context: TemplateContext) -> Plan {
        let to = &context.phone;
        let json = self.renderer.sms(kind, locale, &context).and_then(|message| {
            let body = self.webhook_body.get_template("body")?;
            Ok(body.render(minijinja::context! { to, message, sequence })?)
        });
        match json {
            Ok(json) => Plan::Send(job(sequence, Work::Text(Text { to: to.clone(), sequence, json }))),
            Err(e) => Plan::Refused("render", e),
        }
    }
}

fn job(sequence: u64, work: Work) -> Job {
    Job { sequence, work, expires_in: None, unsolicited: false }
}

/// `YYYY-MM-DD HH:MM` in UTC, as templates show an expiry.
fn format_time(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, 0).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// How long until `expires_at`; zero if it has passed.
fn time_left(expires_at: &prost_types::Timestamp) -> Duration {
    let left = expires_at.seconds.saturating_sub(SystemClock.now().timestamp());
    Duration::from_secs(left.max(0).unsigned_abs())
}
