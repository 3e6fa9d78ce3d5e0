//! gatehouse gives small intranet apps a real login: users and server-side
//! sessions in one SQLite file, its own pages, and a gate for other apps.
//!
//! As a library it offers the session layer the server itself uses: a
//! [`session::Engine`] over any [`session::Store`] (SQLite, memory, or
//! your own), with signed cookies, lazy creation, idle and absolute expiry,
//! patch-only saves, atomic counters, regenerate and destroy.
//!
//! Layers, top to bottom: `cli -> app -> web -> {auth, session, users} -> db`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod logging;
pub mod password;
pub mod session;
pub mod users;
pub mod web;
