//! The policy: the config compiled once at configure time ([`config`]), the rule matching it drives
//! ([`rules`]) and the identity header templates ([`template`]).

pub mod config;
pub mod rules;
pub mod template;
