//! runbook: executable runbooks for single-host services.
//!
//! The library holds every domain module; `main.rs` and `cli/` are a thin front-end over it.
//! Data flows one way: `config` → domain modules (`schedule`, `jobs`, `state`, `audit`) →
//! `store`. `exec` is the only place that spawns processes; `store` the only one that speaks SQL.

pub mod alert;
pub mod api;
pub mod audit;
pub mod backup;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deploy;
pub mod drift;
pub mod exec;
pub mod gate;
pub mod incident;
pub mod jobs;
pub mod mcp;
pub mod notify;
pub mod schedule;
pub mod session;
pub mod state;
pub mod store;
pub mod util;
