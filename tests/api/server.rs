//! Transport: health, reflection, size limits, malformed input, graceful shutdown.

use std::time::Duration;

use http_body_util::BodyExt;
use pwreset::proto::{RequestTokenRequest, SubscribeEventsRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_every_service_serving() {
    let app = TestApp::spawn().await;
    for service in ["", "identity.passwordreset.v1.PasswordResetService", "identity.passwordreset.v1.AccountService"] {
        assert_eq!(app.health(service).await, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_services() {
    let app = TestApp::spawn().await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("{response:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "identity.passwordreset.v1.PasswordResetService",
        "identity.passwordreset.v1.AccountService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn oversized_messages_are_refused_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let status = app
        .reset()
        .request_token(RequestTokenRequest {
            email: "a".repeat(64 * 1024),
            locale: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(app.health("").await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn the_message_limit_covers_health_and_reflection_too() {
    // Unauthenticated services: without the server's limit, tonic's own 4 MiB would apply.
    let app = TestApp::spawn().await;
    let big = "s".repeat(3 * 1024 * 1024);
    let status = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: big.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "health: {status:?}");

    // Reflection is a stream: tonic-reflection ends it without an answer (status OK)
    // when a request cannot be decoded; a small request is answered.
    let v1alpha = |host: String| {
        let channel = app.channel.clone();
        async move {
            let request =
                ServerReflectionRequest { host, message_request: Some(MessageRequest::ListServices(String::new())) };
            match ServerReflectionClient::new(channel).server_reflection_info(tokio_stream::iter([request])).await {
                Ok(response) => matches!(response.into_inner().message().await, Ok(Some(_))),
                Err(_) => false,
            }
        }
    };
    assert!(v1alpha(String::new()).await, "a small v1alpha request is answered");
    assert!(!v1alpha(big.clone()).await, "a 3 MiB v1alpha request is not");

    use tonic_reflection::pb::v1;
    let v1 = |host: String| {
        let channel = app.channel.clone();
        async move {
            let request = v1::ServerReflectionRequest {
                host,
                message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
            };
            let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
            match client.server_reflection_info(tokio_stream::iter([request])).await {
                Ok(response) => matches!(response.into_inner().message().await, Ok(Some(_))),
                Err(_) => false,
            }
        }
    };
    assert!(v1(String::new()).await, "a small v1 request is answered");
    assert!(!v1(big).await, "a 3 MiB v1 request is not");
    assert_eq!(app.health("").await, ServingStatus::Serving as i32, "still serving");
}

#[tokio::test]
async fn malformed_protobuf_is_refused_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    // A gRPC frame whose payload is not a valid RequestTokenRequest (field 1 claims
    // 100 bytes but the message ends).
    let payload = [0x0a, 0x64, b'x'];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request =
        http::Request::post(format!("http://{}/identity.passwordreset.v1.PasswordResetService/RequestToken", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
            .unwrap();
    let response = client.request(request).await.unwrap();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    // The status comes in trailers, or in the headers of a trailers-only response.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(grpc_status, (Code::Internal as i32).to_string(), "tonic reports decode failures as INTERNAL");
    assert_eq!(app.health("").await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn shutdown_ends_streams_and_exits_cleanly() {
    let app = TestApp::spawn().await;
    let mut events =
        app.reset().subscribe_events(SubscribeEventsRequest { after_sequence: None }).await.unwrap().into_inner();
    let ended = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), events.message()).await });
    app.shutdown().await;
    let message = ended.await.unwrap().expect("stream ended within 5 s");
    assert!(matches!(message, Ok(None)), "stream ends cleanly: {message:?}");
}
