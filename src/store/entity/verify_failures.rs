use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "verify_failures")]
pub struct Model {
    /// HMAC-SHA-256 of the normalised e-mail under a key derived from the server key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub email_digest: Vec<u8>,
    /// Attempts that failed, or are being evaluated, since the last success.
    pub failures: i32,
    pub last_attempt_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
