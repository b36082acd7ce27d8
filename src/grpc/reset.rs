//! `PasswordResetService`: extract, convert, call one domain method, convert back.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use tracing::field::Empty;

use super::client::ClientIpSettings;
use super::convert::timestamp;
use crate::domain::model::event::Sequence;
use crate::domain::model::login::Login;
use crate::domain::model::password::Password;
use crate::domain::model::token::RawToken;
use crate::domain::model::{ClientInfo, Locale};
use crate::domain::service::reset::ResetService;
use crate::events::subscription::EventFeed;
use crate::proto::password_reset_service_server::PasswordResetService;
use crate::proto::{
    self, ConfirmRequest, ConfirmResponse, RequestTokenRequest, RequestTokenResponse, SubscribeEventsRequest,
    ValidateTokenRequest, ValidateTokenResponse,
};

pub struct ResetGrpc {
    pub(crate) reset: Arc<ResetService>,
    pub(crate) feed: EventFeed,
    pub(crate) clients: ClientIpSettings,
}

impl ResetGrpc {
    fn client<T>(&self, req: &Request<T>) -> ClientInfo {
        self.clients.of(req)
    }
}

/// A request's optional `login`.
fn login_field(raw: &str) -> crate::domain::model::Result<Option<Login>> {
    if raw.trim().is_empty() { Ok(None) } else { Login::parse(raw, "login").map(Some) }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;

#[tonic::async_trait]
impl PasswordResetService for ResetGrpc {
    #[tracing::instrument(skip_all, fields(rpc = "RequestToken", client_ip = Empty))]
    async fn request_token(&self, req: Request<RequestTokenRequest>) -> Result<Response<RequestTokenResponse>, Status> {
        let client = self.client(&req);
        let RequestTokenRequest { email, locale, username, phone } = req.into_inner();
        let login = Login::from_request(&email, &username, &phone)?;
        self.reset.request_token(login, Locale::parse(locale)?, &client).await?;
        Ok(Response::new(RequestTokenResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ValidateToken", client_ip = Empty, token_state = Empty))]
    async fn validate_token(
        &self,
        req: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let client = self.client(&req);
        let ValidateTokenRequest { token, login } = req.into_inner();
        let record = self.reset.validate_token(RawToken::parse(token)?, login_field(&login)?, &client).await?;
        Ok(Response::new(ValidateTokenResponse {
            expires_at: Some(timestamp(record.expires_at)),
            purpose: proto::TokenPurpose::from(record.purpose).into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Confirm", client_ip = Empty, token_state = Empty, account_id = Empty))]
    async fn confirm(&self, req: Request<ConfirmRequest>) -> Result<Response<ConfirmResponse>, Status> {
        let client = self.client(&req);
        let ConfirmRequest { token, new_password, login } = req.into_inner();
        let login = login_field(&login)?;
        self.reset.confirm(RawToken::parse(token)?, login, Password::new(new_password), &client).await?;
        Ok(Response::new(ConfirmResponse {}))
    }

    type SubscribeEventsStream = EventStream;

    #[tracing::instrument(skip_all, fields(rpc = "SubscribeEvents", client_ip = Empty))]
    async fn subscribe_events(&self, req: Request<SubscribeEventsRequest>) -> Result<Response<EventStream>, Status> {
        self.client(&req);
        let after = req.into_inner().after_sequence.map(Sequence::from_wire).transpose()?;
        let events = self.feed.subscribe(after).await?;
        let stream = ReceiverStream::new(events).map(|e| e.map(proto::Event::from).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
