//! Integration tests: the real server on 127.0.0.1:0, driven over HTTP.

mod helpers;
mod raw;

mod accounts;
mod api;
mod attack;
mod backend_tls;
mod backup;
mod cli;
mod clock;
mod disk;
mod door;
mod example;
mod factors;
mod files;
mod gate;
mod hostile;
mod instances;
mod library;
mod lists;
mod login;
mod names;
mod navigation;
mod ops;
mod outage;
mod queue;
mod rules;
mod sessions;
mod strict;
mod throttle;
mod tls;
mod watchdog;
