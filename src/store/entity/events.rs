use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub sequence: i64,
    pub occurred_at: i64,
    /// 1 = TokenCreated, 2 = PasswordChanged, 3 = ResetRequestedForUnknownEmail.
    pub kind: i16,
    pub account_id: Uuid,
    pub email: String,
    pub token_id: Option<Uuid>,
    /// AEAD-sealed raw token; NULL once the token is no longer live.
    pub sealed_token: Option<Vec<u8>>,
    pub key_id: Option<i64>,
    pub expires_at: Option<i64>,
    pub client_ip: String,
    pub user_agent: String,
    pub locale: String,
    pub retain_until: i64,
    /// TokenCreated: the token's purpose (1 = password reset, 2 = account setup).
    pub purpose: i16,
    /// PasswordChanged: why (1 = reset, 2 = account setup, 3 = change).
    pub reason: i16,
    /// TokenCreated: 1 = e-mail, 2 = SMS.
    pub channel: i16,
    /// TokenCreated by SMS: the E.164 number it goes to.
    pub phone: String,
    /// TokenCreated: the account's username, if it has one.
    pub username: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
