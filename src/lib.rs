//! nodemedic
pub mod diagnose;
pub mod evidence;
pub mod intake;
pub mod plan;
