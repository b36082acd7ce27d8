//! The API suite: the real server on 127.0.0.1:0, a fresh database per test (SQLite,
//! or PostgreSQL when PWRESET_TEST_DATABASE_URL is set), the generated tonic clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod accounts;
mod auth;
mod binary;
mod cache;
mod chaos;
mod codes;
mod credentials;
mod events;
mod hardening;
mod helpers;
mod imported;
mod lifecycle;
mod logins;
mod lookalikes;
mod operate;
mod proxy;
mod reset;
mod server;
mod store;
mod tls;
