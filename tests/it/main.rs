//! Black-box integration tests: the real `nodemedic` binary against a moto-based AWS emulator on
//! 127.0.0.1 (one emulator per test, on a free port). One test binary, so the AWS SDK is linked once.

mod accounts;
mod approvals;
mod breakage;
mod cluster_view;
mod console;
mod fleet;
mod guard;
mod http_limits;
mod intake;
mod labs;
mod operations;
mod scenarios;
mod second_opinion;
mod settings;
mod sources;
mod store;
mod support;
mod tamper;
mod webhook_proxy;
