use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reset_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// HMAC-SHA-256 of the token; the token itself is never stored.
    #[sea_orm(unique)]
    pub digest: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub client_ip: String,
    pub user_agent: String,
    /// 1 = password reset, 2 = account setup.
    pub purpose: i16,
    /// A short code, digested with its account: found only together with its login.
    pub bound: bool,
    /// Failed attempts against the account while this code was live.
    pub failed_attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::accounts::Entity", from = "Column::AccountId", to = "super::accounts::Column::Id")]
    Account,
}

impl ActiveModelBehavior for ActiveModel {}
