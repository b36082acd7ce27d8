//! Operability: metrics, request ids, readiness and liveness.

use std::time::Duration;

use pwreset::proto::{CreateAccountRequest, ValidateTokenRequest};
use sea_orm::{ConnectionTrait, Database};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

pub async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("metrics enabled");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

#[tokio::test]
async fn metrics_carry_the_conventional_grpc_series_and_domain_series() {
    let app = TestApp::spawn_with(|mut c| {
        c.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c
    })
    .await;
    app.account_with_token("ada@example.com").await;
    app.reset()
        .validate_token(ValidateTokenRequest { token: "unknown".into(), ..Default::default() })
        .await
        .unwrap_err();
    let body = scrape(&app).await;
    for series in [
        r#"grpc_server_started_total{grpc_type="unary",grpc_service="identity.passwordreset.v1.AccountService",grpc_method="CreateAccount"}"#,
        r#"grpc_server_handled_total{grpc_type="unary",grpc_service="identity.passwordreset.v1.PasswordResetService",grpc_method="ValidateToken",grpc_code="NotFound"}"#,
        r#"grpc_server_handled_total{grpc_type="server_stream",grpc_service="identity.passwordreset.v1.PasswordResetService",grpc_method="SubscribeEvents",grpc_code="OK"}"#,
        r#"grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="identity.passwordreset.v1.PasswordResetService",grpc_method="RequestToken",le="0.005"}"#,
        "pwreset_tokens_issued_total",
        "pwreset_hash_wait_seconds_bucket",
        "pwreset_event_subscribers",
        "pwreset_outbox_lag",
        r#"pwreset_db_pool_connections{state="in_use"}"#,
    ] {
        assert!(body.contains(series), "{series} missing from:\n{body}");
    }
}

#[tokio::test]
async fn a_request_id_is_kept_or_created_and_echoed() {
    let app = TestApp::spawn().await;
    let mut request = tonic::Request::new(CreateAccountRequest {
        email: "ada@example.com".into(),
        password: None,
        ..Default::default()
    });
    request.metadata_mut().insert("x-request-id", "req-42".parse().unwrap());
    let response = app.accounts().create_account(request).await.unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "req-42");

    let status =
        app.reset().validate_token(ValidateTokenRequest { token: "x".into(), ..Default::default() }).await.unwrap_err();
    let created = status.metadata().get("x-request-id").expect("created for errors too");
    assert!(uuid::Uuid::parse_str(created.to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn liveness_stays_serving_and_readiness_follows_the_database() {
    let app = TestApp::spawn().await;
    assert_eq!(app.health("liveness").await, ServingStatus::Serving as i32);
    let crate::helpers::TestDb::Postgres { admin_url, name, .. } = app.db.as_ref() else {
        // An SQLite file cannot be made unreachable from outside the process; the
        // PostgreSQL pass of .ci/run exercises the rest of this test.
        return;
    };
    let admin = Database::connect(admin_url.as_str()).await.unwrap();
    admin.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    wait_for(&app, "", ServingStatus::NotServing).await;
    assert_eq!(app.health("liveness").await, ServingStatus::Serving as i32, "liveness is not readiness");
    admin.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
    wait_for(&app, "", ServingStatus::Serving).await;
    admin.close().await.ok();
}

/// Waits (on the health stream, bounded by 10 s) until `service` reports `want`.
async fn wait_for(app: &TestApp, service: &str, want: ServingStatus) {
    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest { service: service.into() })
        .await
        .unwrap()
        .into_inner();
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(update) = watch.message().await.unwrap() {
            if update.status == want as i32 {
                return;
            }
        }
    })
    .await;
    assert!(reached.is_ok(), "{service:?} never became {want:?}");
}
