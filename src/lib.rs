//! nodemedic finds out why Amazon EKS worker nodes fail to join their cluster and fixes the
//! cause, safely, with a record of everything it did.
//!
//! # Layout
//!
//! One straight path; each stage knows the types of the stages before it, never after:
//!
//! ```text
//! SQS ─▶ intake ─▶ aws::resolve ─▶ aws::collect ─▶ core::checks ─▶ core::plan ─▶ core::guard ─▶ act
//!                                        every stage writes to ─▶ audit
//! ```
//!
//! - [`core`]: the pure core, which imports nothing of the crate outside itself: the
//!   [`core::trigger`], the [`core::evidence`] types, the [`core::checks`] (rules with stable
//!   cause codes), the [`core::key_policy`] model, the [`core::plan`]ner and the [`core::guard`],
//!   the only place that decides whether a mutation may happen.
//! - [`settings`]: the settings, validated once into typed sections; they use the core's
//!   vocabulary (mode, fix kinds) and nothing that does I/O.
//! - [`intake`]: message bodies into triggers, and the SQS loop, which hands each message to a
//!   [`intake::MessageHandler`].
//! - [`aws`]: clients, errors, [`aws::resolve`] (Auto Scaling group to nodegroup) and
//!   [`aws::collect`] (the evidence).
//! - [`act`]: applies and verifies steps through the [`act::Actuator`] seam, idempotently.
//! - [`pipeline`]: the message handler: one message through all of the above.
//! - [`audit`]: the hash-chained audit trail and the shared state, in SQLite or DynamoDB.
//! - Edges: [`daemon`] (wires the services), [`cli`] (one function per subcommand), [`http`]
//!   (API, probes and [`http::console`]), [`telemetry`], [`notify`], [`net`], [`operate`]
//!   (approvals, kill switch and breakers for the CLI and HTTP), [`iam`], [`report`], [`watch`]
//!   (the nodegroup health watcher), [`diagnose`] (the `diagnose` command: the checklist, once), [`faults`].
//! - `lab` and `demo` (feature `demo`): the seed labs as emulator worlds, for the demo and tests.
//!
//! `scripts/check-layout` keeps the top-level modules free of cycles and the core pure.

pub mod act;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod core;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diagnose;
pub mod faults;
pub mod http;
pub mod iam;
pub mod intake;
pub mod kubernetes;
#[cfg(feature = "demo")]
pub mod lab;
pub mod net;
pub mod notify;
pub mod operate;
pub mod pipeline;
pub mod report;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod watch;
