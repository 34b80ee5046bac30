//! nodemedic finds out why Amazon EKS worker nodes fail to join their cluster and fixes the
//! cause, safely, with a record of everything it did.
//!
//! # Layout
//!
//! One straight path, each stage knowing only the types of the stage before it:
//!
//! ```text
//! SQS ─▶ intake ─▶ resolve ─▶ evidence ─▶ diagnose ─▶ plan ─▶ guard ─▶ act
//!                                     every stage writes to ─▶ audit
//! ```
//!
//! - [`intake`]: the SQS loop and parsing message bodies into [`intake::Trigger`]s.
//! - [`resolve`]: from an Auto Scaling group to its EKS managed nodegroup, or "not ours".
//! - [`evidence`]: the AWS state an incident rests on; [`evidence::collect`] fetches it.
//! - [`diagnose`]: pure rules, evidence in, findings with stable cause codes out.
//! - [`plan`]: pure translation of findings into steps naming exact API calls.
//! - [`guard`]: the only place that decides whether a mutation may happen.
//! - [`act`]: applies steps through the [`act::Actuator`] seam, idempotently.
//! - [`audit`]: the append-only, hash-chained audit trail in SQLite.
//! - [`pipeline`]: runs one message through all of the above.
//! - Edges: [`config`], [`telemetry`], [`aws`], [`daemon`], [`cli`], [`report`], [`http`],
//!   [`notify`], [`operate`] (approvals, kill switch and breakers, for the CLI and HTTP), and
//!   [`iam`] (the least-privilege policy for a configuration).
//! - [`watch`]: the nodegroup health watcher, publishing what EKS sends no event for.
//! - [`inspect`]: the one-shot `nodemedic diagnose` report.
//! - [`lab`] and [`demo`]: the seed labs as emulator worlds, for the demo and tests.

pub mod act;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod demo;
pub mod faults;
pub mod http;
pub mod iam;
pub mod inspect;
pub mod intake;
pub mod lab;
pub mod net;
pub mod notify;
pub mod operate;
pub mod pipeline;
pub mod report;
pub mod telemetry;
pub mod watch;

