//! Messages from events: one template per kind (`reset`, `setup`, `changed`,
//! `unknown`) and locale, each with the blocks `subject`, `text`, `html` (and `sms` for
//! codes), rendered with minijinja. Built-in templates in English, German and French;
//! a template folder (`--templates DIR`, laid out as `DIR/<locale>/<kind>.jinja`)
//! overrides or adds any of them. The event's locale falls back `de-AT` → `de` → the
//! default locale.

use std::path::PathBuf;

use anyhow::Context;
use minijinja::{Environment, Value, context};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The built-in templates: (locale, kind, source).
const BUILT_IN: &[(&str, &str, &str)] = &[
    ("en", "reset", include_str!("../templates/en/reset.jinja")),
    ("en", "setup", include_str!("../templates/en/setup.jinja")),
    ("en", "changed", include_str!("../templates/en/changed.jinja")),
    ("en", "unknown", include_str!("../templates/en/unknown.jinja")),
    ("de", "reset", include_str!("../templates/de/reset.jinja")),
    ("de", "setup", include_str!("../templates/de/setup.jinja")),
    ("de", "changed", include_str!("../templates/de/changed.jinja")),
    ("de", "unknown", include_str!("../templates/de/unknown.jinja")),
    ("fr", "reset", include_str!("../templates/fr/reset.jinja")),
    ("fr", "setup", include_str!("../templates/fr/setup.jinja")),
    ("fr", "changed", include_str!("../templates/fr/changed.jinja")),
    ("fr", "unknown", include_str!("../templates/fr/unknown.jinja")),
];

/// Which message an event makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reset,
    Setup,
    Changed,
    Unknown,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reset => "reset",
            Kind::Setup => "setup",
            Kind::Changed => "changed",
            Kind::Unknown => "unknown",
        }
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The locale whose template was used.
    pub locale: String,
}

pub struct Renderer {
    env: Environment<'static>,
    default_locale: String,
}

/// `{token}` in a link template, percent-encoded.
pub fn link(template: &str, token: &str) -> String {
    template.replace("{token}", &utf8_percent_encode(token, NOT_UNRESERVED).to_string())
}

impl Renderer {
    pub fn new(folder: Option<PathBuf>, default_locale: &str) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        // Escaping is asked for where it is needed: the `html` block's `autoescape`.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let overrides = folder;
        env.set_loader(move |name| {
            if let Some(dir) = &overrides {
                let path = dir.join(format!("{name}.jinja"));
                if path.is_file() {
                    let source = std::fs::read_to_string(&path).map_err(|e| {
                        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "cannot read a template")
                            .with_source(e)
                    })?;
                    return Ok(Some(source));
                }
            }
            Ok(BUILT_IN.iter().find(|(l, k, _)| format!("{l}/{k}") == name).map(|(_, _, s)| (*s).to_owned()))
        });
        let renderer = Renderer { env, default_locale: default_locale.to_ascii_lowercase() };
        // Every built-in template must compile (and so must the folder's defaults).
        for kind in [Kind::Reset, Kind::Setup, Kind::Changed, Kind::Unknown] {
            renderer
                .env
                .get_template(&format!("{}/{}", renderer.default_locale, kind.name()))
                .with_context(|| format!("the {} template for the default locale", kind.name()))?;
        }
        Ok(renderer)
    }

    /// `de-AT` → `de-at`, `de`, then the default locale.
    fn candidates(&self, locale: &str) -> Vec<String> {
        let tag = locale.trim().replace('_', "-").to_ascii_lowercase();
        let mut out = Vec::new();
        if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            out.push(tag.clone());
            if let Some((language, _)) = tag.split_once('-') {
                out.push(language.to_owned());
            }
        }
        out.push(self.default_locale.clone());
        out
    }

    fn template_for(&self, kind: Kind, locale: &str) -> anyhow::Result<(minijinja::Template<'_, '_>, String)> {
        for candidate in self.candidates(locale) {
            if let Ok(template) = self.env.get_template(&format!("{candidate}/{}", kind.name())) {
                return Ok((template, candidate));
            }
        }
        anyhow::bail!("no {} template for {locale:?} or the default locale", kind.name())
    }

    fn blocks(
        &self,
        kind: Kind,
        locale: &str,
        ctx: &TemplateContext,
        blocks: &[&str],
    ) -> anyhow::Result<(Vec<String>, String)> {
        let (template, used) = self.template_for(kind, locale)?;
        let mut state = template.render_captured(ctx.value()).context("rendering a template")?;
        let mut out = Vec::new();
        for block in blocks {
            let text = state.with_state_mut(|s| s.render_block(block)).with_context(|| format!("block {block}"))?;
            out.push(text.trim().to_owned());
        }
        Ok((out, used))
    }

    /// The e-mail of `kind` in the event's `locale`.
    pub fn mail(&self, kind: Kind, locale: &str, ctx: &TemplateContext) -> anyhow::Result<Mail> {
        let (parts, used) = self.blocks(kind, locale, ctx, &["subject", "text", "html"])?;
        let [subject, text, html] = <[String; 3]>::try_from(parts).map_err(|_| anyhow::anyhow!("three blocks"))?;
        Ok(Mail { subject, text: text + "\n", html, locale: used })
    }

    /// The text message of a code (`reset` or `setup`).
    pub fn sms(&self, kind: Kind, locale: &str, ctx: &TemplateContext) -> anyhow::Result<String> {
        let (mut parts, _) = self.blocks(kind, locale, ctx, &["sms"])?;
        parts.pop().context("the sms block")
    }
}

/// What every template gets. A field the message does not carry is empty: a link only
/// in a reset or setup e-mail, a code only in a text, a reason only in a changed notice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateContext {
    pub email: String,
    pub username: String,
    pub phone: String,
    pub link: String,
    pub code: String,
    /// When the link or code expires, `YYYY-MM-DD HH:MM` in UTC.
    pub expires: String,
    /// Why a password changed: `RESET`, `ACCOUNT_SETUP` or `CHANGE`.
    pub reason: String,
}

impl TemplateContext {
    fn value(&self) -> Value {
        let TemplateContext { email, username, phone, link, code, expires, reason } = self;
        context! { email, username, phone, link, code, expires, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        TemplateContext {
            email: "ada@example.com".into(),
            username: "ada".into(),
            link: "https://x.example/r?t=a%2Bb".into(),
            expires: "2026-12-01 10:00".into(),
            ..TemplateContext::default()
        }
    }

    #[test]
    fn locales_fall_back_to_the_language_then_the_default() -> anyhow::Result<()> {
        let r = Renderer::new(None, "en")?;
        assert_eq!(r.mail(Kind::Reset, "de-AT", &ctx())?.locale, "de");
        assert_eq!(r.mail(Kind::Reset, "fr", &ctx())?.subject, "Réinitialisez votre mot de passe");
        assert_eq!(r.mail(Kind::Reset, "pt-BR", &ctx())?.locale, "en");
        assert_eq!(r.mail(Kind::Reset, "", &ctx())?.subject, "Reset your password");
        assert_eq!(r.mail(Kind::Setup, "en", &ctx())?.subject, "Set up your account");
        Ok(())
    }

    #[test]
    fn html_is_escaped_and_text_is_not() -> anyhow::Result<()> {
        let r = Renderer::new(None, "en")?;
        let c = TemplateContext {
            email: "a&b@example.com".into(),
            link: "https://x.example/?a=1&b=2".into(),
            ..TemplateContext::default()
        };
        let mail = r.mail(Kind::Reset, "en", &c)?;
        assert!(mail.text.contains("a&b@example.com") && mail.text.contains("?a=1&b=2"));
        assert!(mail.html.contains("a&amp;b@example.com") && mail.html.contains("?a=1&amp;b=2"), "{}", mail.html);
        Ok(())
    }

    #[test]
    fn a_link_carries_its_token_percent_encoded() {
        assert_eq!(link("https://x.example/r?t={token}", "a+b/c="), "https://x.example/r?t=a%2Bb%2Fc%3D");
        assert_eq!(link("{token}", "base64url-_.~"), "base64url-_.~", "unreserved characters stay");
    }

    #[test]
    fn a_folder_overrides_a_template() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("en"))?;
        std::fs::write(
            dir.path().join("en/reset.jinja"),
            "{% block subject %}Custom{% endblock %}{% block text %}t{% endblock %}{% block html %}h{% endblock %}",
        )?;
        let r = Renderer::new(Some(dir.path().to_owned()), "en")?;
        assert_eq!(r.mail(Kind::Reset, "en", &ctx())?.subject, "Custom");
        assert_eq!(r.mail(Kind::Setup, "en", &ctx())?.subject, "Set up your account", "the rest stay built in");
        Ok(())
    }
}
