//! What both binaries, `pwreset` and `pwreset-notify`, use: the code generated from
//! `proto/` ([`proto`]), the one place that reads time ([`clock`]), secrets kept out of
//! logs and errors ([`secret`], [`redact`]) and the HTTP endpoint that serves metrics
//! and health ([`ops_endpoint`]). Each module stands alone; only [`proto`] imports
//! tonic, so a reader of the clock does not take in the transport.

pub mod clock;
pub mod ops_endpoint;
pub mod proto;
pub mod redact;
pub mod secret;
