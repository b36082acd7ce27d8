//! What the RPCs call: the reset flow ([`reset`]) and the credential store
//! ([`accounts`]), with the password-reuse check both apply ([`history`]).

pub mod accounts;
pub mod history;
pub mod reset;
