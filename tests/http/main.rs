//! Integration tests: the real server on 127.0.0.1:0, driven over HTTP.

mod authenticator;
mod helpers;
mod raw;
mod slapd;

mod accounts;
mod api;
mod attack;
mod backup;
mod bursts;
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
mod ldap;
mod library;
mod lists;
mod login;
mod names;
mod navigation;
mod ops;
mod outage;
mod privilege;
mod queue;
mod rules;
mod sessions;
mod strict;
mod throttle;
mod tls;
mod watchdog;
