//! `AccountService`: extract, convert, call one domain method, convert back.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;

use super::client::ClientIpSettings;
use crate::domain::AccountId;
use crate::domain::accounts::AccountService;
use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::proto;
use crate::proto::account_service_server::AccountService as AccountServiceRpc;
use crate::proto::{CreateAccountRequest, SetActiveRequest, VerifyPasswordRequest, VerifyPasswordResponse};

pub struct AccountGrpc {
    pub(crate) accounts: Arc<AccountService>,
    pub(crate) clients: ClientIpSettings,
}

#[tonic::async_trait]
impl AccountServiceRpc for AccountGrpc {
    #[tracing::instrument(skip_all, fields(rpc = "CreateAccount"))]
    async fn create_account(&self, req: Request<CreateAccountRequest>) -> Result<Response<proto::Account>, Status> {
        let CreateAccountRequest { email, password } = req.into_inner();
        let account = self.accounts.create_account(Email::parse(&email)?, password.map(Password::new)).await?;
        Ok(Response::new(account.into()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "VerifyPassword", client_ip = Empty))]
    async fn verify_password(
        &self,
        req: Request<VerifyPasswordRequest>,
    ) -> Result<Response<VerifyPasswordResponse>, Status> {
        let client = self.clients.of(&req);
        let VerifyPasswordRequest { email, password } = req.into_inner();
        let valid = self.accounts.verify_password(Email::parse(&email)?, Password::new(password), &client).await?;
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
}
