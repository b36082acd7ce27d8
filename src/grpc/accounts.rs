//! `AccountService`: extract, convert, call one domain method, convert back.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;

use super::auth::CallerName;
use super::client::ClientIpSettings;
use super::convert::{duration, purpose, timestamp};
use crate::domain::model::email::Email;
use crate::domain::model::login::{Phone, Username};
use crate::domain::model::password::Password;
use crate::domain::model::{AccountId, Error, Locale};
use crate::domain::service::accounts::{AccountKey, AccountService, Credential, Delivery, Logins, TokenRequest};
use crate::proto;
use crate::proto::account_service_server::AccountService as AccountServiceRpc;
use crate::proto::{
    ChangePasswordRequest, ChangePasswordResponse, CreateAccountRequest, GetAccountRequest, IssueTokenRequest,
    IssueTokenResponse, RevokeTokensRequest, RevokeTokensResponse, SetActiveRequest, TokenDelivery,
    VerifyPasswordRequest, VerifyPasswordResponse, get_account_request,
};

pub struct AccountGrpc {
    pub(crate) accounts: Arc<AccountService>,
    pub(crate) clients: ClientIpSettings,
}

#[tonic::async_trait]
impl AccountServiceRpc for AccountGrpc {
    #[tracing::instrument(skip_all, fields(rpc = "CreateAccount", client_ip = Empty))]
    async fn create_account(&self, req: Request<CreateAccountRequest>) -> Result<Response<proto::Account>, Status> {
        let client = self.clients.of(&req);
        let CreateAccountRequest { email, password, send_setup_token, locale, password_hash, username, phone } =
            req.into_inner();
        let logins = Logins {
            email: Email::parse(&email)?,
            username: (!username.is_empty()).then(|| Username::parse_new(&username, "username")).transpose()?,
            phone: (!phone.is_empty()).then(|| Phone::parse(&phone, "phone")).transpose()?,
        };
        let locale = Locale::parse(locale)?;
        let setup = send_setup_token.then_some(locale);
        let credential = match (password, password_hash.is_empty()) {
            (None, true) => Credential::None,
            (Some(password), true) => Credential::Password(Password::new(password)),
            (None, false) => Credential::Imported(password_hash),
            (Some(_), false) => {
                return Err(Error::invalid("password_hash", "set either password or password_hash").into());
            }
        };
        let account = self.accounts.create_account(logins, credential, setup, &client).await?;
        Ok(Response::new(account.into()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "VerifyPassword", client_ip = Empty))]
    async fn verify_password(
        &self,
        req: Request<VerifyPasswordRequest>,
    ) -> Result<Response<VerifyPasswordResponse>, Status> {
        let client = self.clients.of(&req);
        let VerifyPasswordRequest { email, password } = req.into_inner();
        let valid =
            self.accounts.verify_password(Email::parse_for_lookup(&email)?, Password::new(password), &client).await?;
        Ok(Response::new(VerifyPasswordResponse {
            valid: valid.is_some(),
            account_id: valid.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SetActive"))]
    async fn set_active(&self, req: Request<SetActiveRequest>) -> Result<Response<proto::Account>, Status> {
        let SetActiveRequest { account_id, active } = req.into_inner();
        Ok(Response::new(self.accounts.set_active(AccountId::parse(&account_id)?, active).await?.into()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "IssueToken", client_ip = Empty))]
    async fn issue_token(&self, req: Request<IssueTokenRequest>) -> Result<Response<IssueTokenResponse>, Status> {
        let client = self.clients.of(&req);
        let caller = CallerName::of(&req);
        let IssueTokenRequest { account_id, purpose: wanted, ttl, delivery, locale } = req.into_inner();
        let account_id = AccountId::parse(&account_id)?;
        let purpose = purpose("purpose", wanted)?.unwrap_or_default();
        let ttl = ttl.map(|ttl| duration("ttl", ttl)).transpose()?;
        let locale = Locale::parse(locale)?;
        let delivery = match TokenDelivery::try_from(delivery) {
            Ok(TokenDelivery::Unspecified | TokenDelivery::Event) => Delivery::Event(locale),
            Ok(TokenDelivery::Return) => Delivery::Return,
            Err(_) => return Err(Error::invalid("delivery", "is not a known TokenDelivery").into()),
        };
        let request = TokenRequest { account_id, purpose, ttl, delivery };
        let issued = self.accounts.issue_token(request, &client, &caller).await?;
        Ok(Response::new(IssueTokenResponse {
            token: issued.token.map(|t| t.expose().to_owned()).unwrap_or_default(),
            expires_at: Some(timestamp(issued.expires_at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ChangePassword", client_ip = Empty))]
    async fn change_password(
        &self,
        req: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let client = self.clients.of(&req);
        let ChangePasswordRequest { account_id, current_password, new_password } = req.into_inner();
        let account_id = AccountId::parse(&account_id)?;
        let (current, new) = (Password::new(current_password), Password::new(new_password));
        self.accounts.change_password(account_id, current, new, &client).await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetAccount"))]
    async fn get_account(&self, req: Request<GetAccountRequest>) -> Result<Response<proto::Account>, Status> {
        let key = match req.into_inner().key {
            Some(get_account_request::Key::AccountId(id)) => AccountKey::Id(AccountId::parse(&id)?),
            Some(get_account_request::Key::Email(email)) => AccountKey::Email(Email::parse_for_lookup(&email)?),
            None => return Err(Error::invalid("key", "set account_id or email").into()),
        };
        Ok(Response::new(self.accounts.get_account(key).await?.into()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RevokeTokens"))]
    async fn revoke_tokens(&self, req: Request<RevokeTokensRequest>) -> Result<Response<RevokeTokensResponse>, Status> {
        let caller = CallerName::of(&req);
        let RevokeTokensRequest { account_id, purpose: wanted } = req.into_inner();
        let account_id = AccountId::parse(&account_id)?;
        let revoked = self.accounts.revoke_tokens(account_id, purpose("purpose", wanted)?, &caller).await?;
        Ok(Response::new(RevokeTokensResponse { revoked: u32::try_from(revoked).unwrap_or(u32::MAX) }))
    }
}
