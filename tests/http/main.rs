//! Integration tests: the real server on 127.0.0.1:0, driven over HTTP.

mod helpers;

mod accounts;
mod api;
mod attack;
mod backup;
mod cli;
mod clock;
mod disk;
mod door;
mod example;
mod gate;
mod hostile;
mod instances;
mod lists;
mod login;
mod navigation;
mod ops;
mod outage;
mod sessions;
mod strict;
mod throttle;
mod tls;
