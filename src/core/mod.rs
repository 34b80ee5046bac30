//! The pure core: what nodemedic knows and decides, as functions of their inputs. Nothing here
//! performs I/O or imports a module of the crate outside `core`; the edges (AWS, store, HTTP,
//! telemetry) depend on it, never the reverse.

pub mod boot_log;
pub mod checks;
pub mod evidence;
pub mod guard;
pub mod ids;
pub mod journal;
pub mod key_policy;
pub mod mac_key;
pub mod plan;
pub mod policy_document;
pub mod step;
pub mod time;
pub mod trigger;

#[cfg(test)]
pub(crate) mod proptest_support;
