//! Caller authentication, once for every RPC: a tower layer that maps the request path
//! to a role and checks the `authorization: Bearer KEY` metadata against that role's
//! keys in constant time, or, with mTLS, the roles a verified client certificate names
//! (DNS SAN `ROLE.caller.pwreset.internal`). Health and reflection need neither.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::proto::{account_service_server, password_reset_service_server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Reset,
    Events,
    Accounts,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reset, Role::Events, Role::Accounts];

    /// The role an RPC path belongs to; `None` for health and reflection.
    pub fn for_path(path: &str) -> Option<Role> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        match service {
            password_reset_service_server::SERVICE_NAME if method == "SubscribeEvents" => Some(Role::Events),
            password_reset_service_server::SERVICE_NAME => Some(Role::Reset),
            account_service_server::SERVICE_NAME => Some(Role::Accounts),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reset => "reset",
            Role::Events => "events",
            Role::Accounts => "accounts",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reset" => Ok(Role::Reset),
            "events" => Ok(Role::Events),
            "accounts" => Ok(Role::Accounts),
            // Not quoted: with the parts swapped (`KEY=ROLE`) or no role at all, what
            // stands here is the key.
            _ => Err("unknown role (expected reset, events or accounts, as ROLE=KEY)".to_owned()),
        }
    }
}

/// A key for a role, as given by `--caller-key ROLE=KEY`. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CallerKey {
    pub role: Role,
    key: Vec<u8>,
}

impl FromStr for CallerKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (role, key) = s.split_once('=').ok_or("a caller key must look like ROLE=KEY")?;
        let role: Role = role.trim().parse()?;
        let key = key.trim();
        if key.len() < 16 {
            return Err(format!("the key for role {role} must be at least 16 characters"));
        }
        if key.len() > 512 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("the key for role {role} must be at most 512 printable ASCII characters"));
        }
        Ok(CallerKey { role, key: key.as_bytes().to_vec() })
    }
}

impl fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallerKey({}=[redacted])", self.role)
    }
}

/// Put in a request's extensions when its caller proved a role with a key or a client
/// certificate (not when the role is open to anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated(pub Role);

/// Who proved the role, for audit lines: `certificate DNS-NAMES`, or `key ROLE/FINGERPRINT`
/// (the first 8 hex digits of the key's SHA-256, never the key); `anonymous` when the
/// role is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerName(pub String);

impl CallerName {
    /// The caller of a request, as the auth layer named it.
    pub fn of<T>(request: &tonic::Request<T>) -> String {
        request.extensions().get::<CallerName>().map_or_else(|| "anonymous".to_owned(), |c| c.0.clone())
    }

    fn new(role: Role, presented: Option<&[u8]>, certificate: Option<&rustls_pki_types::CertificateDer<'_>>) -> Self {
        use sha2::Digest;
        match (presented, certificate) {
            (Some(key), _) => {
                let fingerprint = sha2::Sha256::digest(key);
                let hex: String = fingerprint.iter().take(4).map(|b| format!("{b:02x}")).collect();
                CallerName(format!("key {role}/{hex}"))
            }
            (None, Some(der)) => {
                let names: Vec<String> = webpki::EndEntityCert::try_from(der)
                    .map(|cert| cert.valid_dns_names().map(str::to_owned).collect())
                    .unwrap_or_default();
                CallerName(format!("certificate {}", names.join(",")))
            }
            (None, None) => CallerName("anonymous".to_owned()),
        }
    }
}

/// A verified client certificate with a DNS subject alternative name
/// `ROLE` + this suffix (e.g. `events.caller.pwreset.internal`) holds that role.
pub const CERT_ROLE_SUFFIX: &str = ".caller.pwreset.internal";

/// The roles a client certificate's DNS SANs name.
pub fn cert_roles(der: &rustls_pki_types::CertificateDer<'_>) -> Vec<Role> {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else { return Vec::new() };
    cert.valid_dns_names()
        .filter_map(|name| name.strip_suffix(CERT_ROLE_SUFFIX))
        .filter_map(|role| role.parse().ok())
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct CallerKeys {
    keys: Arc<Vec<CallerKey>>,
    /// Client certificates are verified (mTLS): every role then needs a key or a
    /// certificate naming it.
    certificates: bool,
}

impl CallerKeys {
    pub fn new(keys: Vec<CallerKey>) -> Self {
        Self { keys: Arc::new(keys), certificates: false }
    }

    pub fn with_client_certificates(mut self, on: bool) -> Self {
        self.certificates = on;
        self
    }

    pub fn has_key_for(&self, role: Role) -> bool {
        self.keys.iter().any(|k| k.role == role)
    }

    /// `Ok` when the role is open (no key configured and no mTLS: `None`), or proven
    /// (`Some`): `presented` is one of its keys, or a verified certificate names it.
    fn authorise(
        &self,
        role: Role,
        presented: Option<&[u8]>,
        certified: &[Role],
    ) -> Result<Option<Authenticated>, Status> {
        if !self.has_key_for(role) && !self.certificates {
            return Ok(None);
        }
        let Some(presented) = presented else {
            return match certified {
                [] => Err(Status::unauthenticated(
                    "missing caller credentials: send authorization: Bearer KEY or a client certificate",
                )),
                roles if roles.contains(&role) => Ok(Some(Authenticated(role))),
                _ => Err(Status::permission_denied(format!("this client certificate does not grant the {role} role"))),
            };
        };
        // Compare against every key so the time taken does not depend on which matched.
        let mut own = subtle::Choice::from(0);
        let mut other = subtle::Choice::from(0);
        for key in self.keys.iter() {
            let equal = key.key.as_slice().ct_eq(presented);
            if key.role == role {
                own |= equal;
            } else {
                other |= equal;
            }
        }
        if bool::from(own) {
            Ok(Some(Authenticated(role)))
        } else if bool::from(other) {
            Err(Status::permission_denied(format!("this caller key does not grant the {role} role")))
        } else {
            Err(Status::unauthenticated("unknown caller key"))
        }
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    value.get(7..).map(<[u8]>::trim_ascii)
}

#[derive(Debug, Clone)]
pub struct AuthLayer {
    keys: CallerKeys,
}

impl AuthLayer {
    pub fn new(keys: CallerKeys) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, keys: self.keys.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    keys: CallerKeys,
}

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<std::future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let verdict = match Role::for_path(request.uri().path()) {
            Some(role) => {
                let certificate = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(TlsConnectInfo::peer_certs)
                    .and_then(|certs| certs.first().cloned());
                let certified = certificate.as_ref().map(cert_roles).unwrap_or_default();
                let presented = bearer(request.headers());
                self.keys
                    .authorise(role, presented, &certified)
                    .map(|proven| proven.map(|proven| (proven, CallerName::new(role, presented, certificate.as_ref()))))
            }
            None => Ok(None),
        };
        match verdict {
            Ok(proven) => {
                if let Some((proven, caller)) = proven {
                    request.extensions_mut().insert(proven);
                    request.extensions_mut().insert(caller);
                }
                futures_util::future::Either::Right(self.inner.call(request))
            }
            Err(status) => futures_util::future::Either::Left(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CallerKeys {
        CallerKeys::new(vec![
            "reset=reset-key-0123456789".parse().unwrap_or_else(|e| panic!("{e}")),
            "accounts=accounts-key-0123456789".parse().unwrap_or_else(|e| panic!("{e}")),
        ])
    }

    #[test]
    fn a_caller_is_named_by_a_fingerprint_of_its_key_never_the_key() {
        let CallerName(name) = CallerName::new(Role::Accounts, Some(b"accounts-key-0123456789"), None);
        assert!(name.starts_with("key accounts/"), "{name}");
        assert_eq!(name.len(), "key accounts/".len() + 8);
        assert!(!name.contains("accounts-key"));
        let CallerName(other) = CallerName::new(Role::Accounts, Some(b"accounts-key-9876543210"), None);
        assert_ne!(name, other, "two keys of one role are told apart");
        assert_eq!(CallerName::new(Role::Accounts, None, None).0, "anonymous");
    }

    #[test]
    fn a_certificate_caller_is_named_by_its_dns_names() {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let names = vec!["accounts.caller.pwreset.internal".to_owned(), "billing.internal".to_owned()];
        let params = rcgen::CertificateParams::new(names).unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let der = rustls_pki_types::CertificateDer::from(cert.der().to_vec());
        let CallerName(name) = CallerName::new(Role::Accounts, None, Some(&der));
        assert_eq!(name, "certificate accounts.caller.pwreset.internal,billing.internal");
        // A key presented as well names the key: what proved the role.
        assert!(CallerName::new(Role::Accounts, Some(b"k"), Some(&der)).0.starts_with("key accounts/"));
    }

    #[test]
    fn maps_paths_to_roles() {
        assert_eq!(Role::for_path("/identity.passwordreset.v1.PasswordResetService/Confirm"), Some(Role::Reset));
        assert_eq!(
            Role::for_path("/identity.passwordreset.v1.PasswordResetService/SubscribeEvents"),
            Some(Role::Events)
        );
        assert_eq!(Role::for_path("/identity.passwordreset.v1.AccountService/SetActive"), Some(Role::Accounts));
        assert_eq!(Role::for_path("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn checks_keys_per_role() {
        let k = keys();
        assert!(k.authorise(Role::Reset, Some(b"reset-key-0123456789"), &[]).is_ok());
        assert_eq!(k.authorise(Role::Reset, None, &[]).map_err(|s| s.code()), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            k.authorise(Role::Reset, Some(b"nope"), &[]).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            k.authorise(Role::Reset, Some(b"accounts-key-0123456789"), &[]).map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(k.authorise(Role::Events, None, &[]).ok(), Some(None), "a role with no key is open");
        assert_eq!(
            k.authorise(Role::Reset, Some(b"reset-key-0123456789"), &[]).ok(),
            Some(Some(Authenticated(Role::Reset)))
        );
    }

    #[test]
    fn certificates_stand_in_for_keys() {
        let k = keys().with_client_certificates(true);
        assert!(k.authorise(Role::Reset, None, &[Role::Reset]).is_ok());
        assert_eq!(
            k.authorise(Role::Reset, None, &[Role::Events]).map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            k.authorise(Role::Events, None, &[]).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated),
            "no longer open"
        );
    }

    #[test]
    fn parses_bearer_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn debug_hides_keys() {
        let key: CallerKey = "reset=reset-key-0123456789".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{key:?}").contains("0123456789"));
    }
}
