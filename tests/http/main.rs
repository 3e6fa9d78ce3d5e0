//! Integration tests: the real server on 127.0.0.1:0, driven over HTTP.

mod helpers;

mod accounts;
mod api;
mod backup;
mod cli;
mod disk;
mod example;
mod gate;
mod hostile;
mod instances;
mod login;
mod ops;
mod outage;
mod sessions;
mod throttle;
