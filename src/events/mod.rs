//! The event stream's read side: replay from the outbox after a cursor, then follow new
//! commits, fanned out to every subscriber. Imports only `domain` (its event model, the
//! [`EventStore`](crate::domain::model::persistence::EventStore) it reads and the bus that
//! wakes it); `grpc` serves it as `SubscribeEvents`.

pub mod subscription;
