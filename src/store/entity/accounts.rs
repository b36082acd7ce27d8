use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: Option<String>,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub password_changed_at: Option<i64>,
    /// The normal form when it was stored (NFKC and lower case before the PRECIS rule, PRECIS and
    /// case folded since); shown, not compared.
    pub username: Option<String>,
    /// E.164; unique when set.
    pub phone: Option<String>,
    /// The username's UTS #39 confusable skeleton: how it is found, unique when set.
    /// NULL for a username that is no login (see migration 11).
    pub username_skeleton: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
