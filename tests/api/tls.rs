//! TLS and mTLS: a verified client certificate holds the roles its DNS SANs name;
//! a certificate from an unknown CA is refused.

use pwreset::config::TlsSettings;
use pwreset::proto::account_service_client::AccountServiceClient;
use pwreset::proto::password_reset_service_client::PasswordResetServiceClient;
use pwreset::proto::{CreateAccountRequest, ValidateTokenRequest};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::*;

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names for the CA and its leaves: OpenSSL (nginx) takes a leaf whose
        // issuer equals its subject for self-signed.
        params.distinguished_name.push(DnType::CommonName, "pwreset test CA");
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for the given DNS names.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("pwreset test leaf"));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn tls_app(ca: &Ca) -> TestApp {
    let (cert, key) = ca.issue(&["localhost"]);
    let client_ca = ca.pem();
    TestApp::spawn_with(move |mut c| {
        c.server.tls = Some(TlsSettings {
            cert: cert.into_bytes(),
            key: key.into_bytes(),
            client_ca: Some(client_ca.into_bytes()),
        });
        c
    })
    .await
}

async fn channel(app: &TestApp, ca: &Ca, client: Option<(String, String)>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())).domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{}", app.addr)).unwrap().tls_config(tls)?.connect().await
}

#[tokio::test]
async fn a_client_certificate_grants_the_roles_it_names() {
    let ca = Ca::new();
    let app = tls_app(&ca).await;
    let reset_caller = ca.issue(&["reset.caller.pwreset.internal"]);
    let ch = channel(&app, &ca, Some(reset_caller)).await.unwrap();
    let validate = PasswordResetServiceClient::new(ch.clone())
        .validate_token(ValidateTokenRequest { token: "unknown".into(), ..Default::default() })
        .await;
    assert_eq!(code(validate), Code::NotFound, "authorised for reset");
    let create = AccountServiceClient::new(ch)
        .create_account(CreateAccountRequest { email: "ada@example.com".into(), password: None, ..Default::default() })
        .await;
    assert_eq!(code(create), Code::PermissionDenied, "not for accounts");
}

#[tokio::test]
async fn without_a_certificate_or_key_callers_are_unauthenticated() {
    let ca = Ca::new();
    let app = tls_app(&ca).await;
    let ch = channel(&app, &ca, None).await.unwrap();
    let validate = PasswordResetServiceClient::new(ch)
        .validate_token(ValidateTokenRequest { token: "x".into(), ..Default::default() })
        .await;
    assert_eq!(code(validate), Code::Unauthenticated);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let ca = Ca::new();
    let app = tls_app(&ca).await;
    let stranger = Ca::new().issue(&["accounts.caller.pwreset.internal"]);
    let refused = match channel(&app, &ca, Some(stranger)).await {
        Err(_) => true,
        Ok(ch) => {
            let call = AccountServiceClient::new(ch)
                .create_account(CreateAccountRequest {
                    email: "ada@example.com".into(),
                    password: None,
                    ..Default::default()
                })
                .await;
            call.is_err_and(|s| s.code() != Code::Ok)
        }
    };
    assert!(refused, "the handshake or the call fails");
}
