//! One module per command: its flags (clap) and its run, which reads the cluster or files,
//! calls the plain functions of `plugin::*` and prints.

pub mod approve;
pub mod bulk;
pub mod create;
pub mod drift;
pub mod events;
pub mod export;
pub mod history;
pub mod list;
pub mod policy;
pub mod promote;
pub mod verify;
