//! Fleet state in Redis through a webdis-compatible HTTP endpoint (DESIGN.md "Fleet state"): the config
//! block (`state.redis`), the two commands trustgate sends, and the answers it accepts. Pure: the host
//! (`src/host/state.rs`) sends [`Command::path`] and hands the body to [`Command::parse`].
//!
//! - A nonce is `SET <prefix><scope>:<id> 1 NX EX <ttl>`: `{"SET":[true,"OK"]}` the first time, `{"SET":null}`
//!   while the key lives.
//! - A rate count is one `EVAL` of [`RATE_SCRIPT`] (INCR, and EXPIRE when the key has no expiry yet, so the
//!   window starts at the first hit): `{"EVAL":[<count>,<ttl>]}`.
//!
//! Every argument is percent-escaped (all but `A-Z a-z 0-9 - _ ~ :`), so a `/` or `.` in an id or a client
//! name cannot add an argument, change the command or pick webdis' output format; every key starts with the
//! prefix and carries a TTL.

use crate::policy::config::{err, ConfigError};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;

/// The script of one rate count: increments the client's counter, starts its window on the first hit, and
/// returns the count and the seconds left in the window.
pub const RATE_SCRIPT: &str = "local n=redis.call('INCR',KEYS[1]) \
if n==1 or redis.call('TTL',KEYS[1])<0 then redis.call('EXPIRE',KEYS[1],ARGV[1]) end \
return {n,redis.call('TTL',KEYS[1])}";

/// Longest answer body read from the endpoint.
pub const MAX_ANSWER_BYTES: usize = 4096;

/// `state`: where replay nonces and rate counters live (absent: the proxy's shared data).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum RawState {
    Redis(RawRedis),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u32>,
}

/// The compiled `state.redis` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The Envoy cluster of the webdis endpoint.
    pub cluster: String,
    /// The `:authority` of the calls (default: the cluster name).
    pub authority: String,
    /// Every key starts with it (default `trustgate:`).
    pub prefix: String,
    /// How long a request waits for the store before a 503 `state_unavailable` (default 200 ms).
    pub timeout_ms: u32,
}

impl RawState {
    /// Compiles the block found at `path` (`state`).
    pub(crate) fn compile(&self, path: &str) -> Result<RedisConfig, ConfigError> {
        let RawState::Redis(r) = self;
        let path = format!("{path}.redis");
        if r.cluster.trim().is_empty() {
            return err(
                format!("{path}.cluster"),
                "expected the name of an Envoy cluster",
            );
        }
        let authority = r.authority.clone().unwrap_or_else(|| r.cluster.clone());
        if authority.is_empty() || authority.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return err(
                format!("{path}.authority"),
                "expected a host name, without spaces",
            );
        }
        let prefix = r.prefix.clone().unwrap_or_else(|| "trustgate:".into());
        if prefix.is_empty() || prefix.len() > 64 {
            return err(
                format!("{path}.prefix"),
                "expected 1 to 64 characters (every key starts with it)",
            );
        }
        let timeout_ms = r.timeout_ms.unwrap_or(200);
        if !(1..=60_000).contains(&timeout_ms) {
            return err(
                format!("{path}.timeout_ms"),
                "expected 1 to 60000 milliseconds",
            );
        }
        Ok(RedisConfig {
            cluster: r.cluster.clone(),
            authority,
            prefix,
            timeout_ms,
        })
    }
}

/// One command for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Record `key` for `ttl_s` seconds unless it is there.
    Nonce { key: String, ttl_s: i64 },
    /// Count one hit on `key`, in a window of `window_s` seconds.
    Count { key: String, window_s: u32 },
}

/// What the store answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The nonce was recorded now (`true`) or was there already (`false`).
    Nonce(bool),
    /// Hits in the current window, and its seconds left.
    Count { hits: u64, ttl_s: i64 },
}

/// Why an answer was not usable (logged; never holds the request's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    NotJson,
    Unexpected,
}

impl AnswerError {
    pub fn label(self) -> &'static str {
        match self {
            AnswerError::NotJson => "answer_not_json",
            AnswerError::Unexpected => "unexpected_answer",
        }
    }
}

impl RedisConfig {
    /// The nonce `id` of provider `scope`, kept `ttl_s` seconds (at least 1).
    pub fn nonce(&self, scope: &str, id: &str, ttl_s: i64) -> Command {
        Command::Nonce {
            key: format!("{}replay:{scope}:{id}", self.prefix),
            ttl_s: ttl_s.max(1),
        }
    }

    /// The rate counter of `client` of provider `scope`.
    pub fn count(&self, scope: &str, client: &str, window_s: u32) -> Command {
        Command::Count {
            key: format!("{}rate:{scope}:{client}", self.prefix),
            window_s: window_s.max(1),
        }
    }
}

impl Command {
    /// The same key and kind: `other` answers `self`. Not the TTL, which follows `now`: a request decided
    /// again a second later asks for the same nonce, and must not be told it replayed its own.
    pub fn same_key(&self, other: &Command) -> bool {
        match (self, other) {
            (Command::Nonce { key: a, .. }, Command::Nonce { key: b, .. })
            | (Command::Count { key: a, .. }, Command::Count { key: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The webdis request path.
    pub fn path(&self) -> String {
        match self {
            Command::Nonce { key, ttl_s } => format!("/SET/{}/1/NX/EX/{ttl_s}", escape(key)),
            Command::Count { key, window_s } => {
                format!("/EVAL/{}/1/{}/{window_s}", escape(RATE_SCRIPT), escape(key))
            }
        }
    }

    /// Reads webdis' JSON answer to this command.
    pub fn parse(&self, body: &[u8]) -> Result<Answer, AnswerError> {
        if body.len() > MAX_ANSWER_BYTES {
            return Err(AnswerError::Unexpected);
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| AnswerError::NotJson)?;
        let Value::Object(map) = v else {
            return Err(AnswerError::Unexpected);
        };
        match self {
            Command::Nonce { .. } => match map.get("SET") {
                Some(Value::Null) if map.len() == 1 => Ok(Answer::Nonce(false)),
                Some(Value::Array(a)) if map.len() == 1 && is_set_ok(a) => Ok(Answer::Nonce(true)),
                _ => Err(AnswerError::Unexpected),
            },
            Command::Count { .. } => match map.get("EVAL") {
                Some(Value::Array(a)) if map.len() == 1 => match a.as_slice() {
                    [Value::Number(n), Value::Number(t)] => {
                        let hits = n
                            .as_u64()
                            .filter(|&h| h >= 1)
                            .ok_or(AnswerError::Unexpected)?;
                        let ttl_s = t.as_i64().ok_or(AnswerError::Unexpected)?;
                        Ok(Answer::Count { hits, ttl_s })
                    }
                    _ => Err(AnswerError::Unexpected),
                },
                _ => Err(AnswerError::Unexpected),
            },
        }
    }
}

#[cfg(test)]
impl RedisConfig {
    /// The block of DESIGN.md: cluster `state`, authority `webdis`, prefix `trustgate:`, 200 ms.
    pub(crate) fn example() -> RedisConfig {
        RedisConfig {
            cluster: "state".into(),
            authority: "webdis".into(),
            prefix: "trustgate:".into(),
            timeout_ms: 200,
        }
    }
}

/// `[true,"OK"]`
fn is_set_ok(a: &[Value]) -> bool {
    matches!(a, [Value::Bool(true), Value::String(s)] if s == "OK")
}

/// Percent-escapes one path argument: everything but `A-Z a-z 0-9 - _ ~ :`.
pub fn escape(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() * 3);
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RedisConfig {
        RedisConfig::example()
    }

    #[test]
    fn a_nonce_is_set_nx_with_a_ttl_under_the_prefix() {
        let c = cfg().nonce("gk", "c1:n1", 300);
        assert_eq!(c.path(), "/SET/trustgate:replay:gk:c1:n1/1/NX/EX/300");
        // Never without an expiry.
        assert_eq!(
            cfg().nonce("gk", "x", -5).path(),
            "/SET/trustgate:replay:gk:x/1/NX/EX/1"
        );
    }

    #[test]
    fn a_slash_or_dot_in_an_id_stays_inside_its_argument() {
        let c = cfg().nonce("gk", "c/../DEL/k.json?x=1 %", 30);
        assert_eq!(
            c.path(),
            "/SET/trustgate:replay:gk:c%2F%2E%2E%2FDEL%2Fk%2Ejson%3Fx%3D1%20%25/1/NX/EX/30"
        );
        // Six arguments, whatever the id.
        assert_eq!(c.path().split('/').count(), 7);
        assert_eq!(escape("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn a_rate_count_is_one_eval() {
        let c = cfg().count("gk", "client/1", 60);
        let p = c.path();
        assert!(
            p.starts_with("/EVAL/local%20n%3Dredis%2Ecall%28%27INCR%27"),
            "{p}"
        );
        assert!(p.ends_with("/1/trustgate:rate:gk:client%2F1/60"), "{p}");
        assert_eq!(p.split('/').count(), 6);
    }

    #[test]
    fn an_answer_is_found_by_key_and_kind_not_by_ttl() {
        let c = cfg();
        assert!(c.nonce("gk", "a", 30).same_key(&c.nonce("gk", "a", 29)));
        assert!(!c.nonce("gk", "a", 30).same_key(&c.nonce("gk", "b", 30)));
        assert!(!c.nonce("gk", "a", 30).same_key(&c.nonce("hk", "a", 30)));
        assert!(!c.count("gk", "a", 60).same_key(&c.nonce("gk", "a", 60)));
    }

    #[test]
    fn webdis_answers_as_seen_from_the_debian_package() {
        let n = cfg().nonce("gk", "a", 30);
        assert_eq!(n.parse(br#"{"SET":[true,"OK"]}"#), Ok(Answer::Nonce(true)));
        assert_eq!(n.parse(br#"{"SET":null}"#), Ok(Answer::Nonce(false)));
        let c = cfg().count("gk", "c", 60);
        assert_eq!(
            c.parse(br#"{"EVAL":[2,60]}"#),
            Ok(Answer::Count { hits: 2, ttl_s: 60 })
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let n = cfg().nonce("gk", "a", 30);
        for body in [
            &b""[..],
            b"<html>",
            br#"{"SET":[false,"ERR"]}"#,
            br#"{"SET":[true,"OK"],"x":1}"#,
            br#"{"GET":null}"#,
            br#"{"SET":"OK"}"#,
            br#"[1]"#,
        ] {
            assert!(n.parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let c = cfg().count("gk", "c", 60);
        for body in [
            &br#"{"EVAL":[0,60]}"#[..],
            br#"{"EVAL":[1]}"#,
            br#"{"EVAL":["1",60]}"#,
            br#"{"SET":null}"#,
            br#"{"EVAL":[false,"ERR unknown command"]}"#,
        ] {
            assert!(c.parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(n.parse(&vec![b' '; MAX_ANSWER_BYTES + 1]).is_err());
    }

    fn compile_state(state: &str) -> Result<Option<RedisConfig>, String> {
        let json = format!(
            r#"{{"rules":[{{"match":{{"path_prefix":"/"}},"allow":"public"}}],"state":{state}}}"#
        );
        crate::policy::config::compile(json.as_bytes())
            .map(|p| p.state)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_state_block_compiles_with_defaults_and_errors_name_their_path() {
        assert_eq!(
            compile_state(r#"{"redis":{"cluster":"state"}}"#).unwrap(),
            Some(RedisConfig {
                cluster: "state".into(),
                authority: "state".into(),
                prefix: "trustgate:".into(),
                timeout_ms: 200,
            })
        );
        for (state, path) in [
            (r#"{"redis":{"cluster":""}}"#, "state.redis.cluster:"),
            (
                r#"{"redis":{"cluster":"s","authority":"a b"}}"#,
                "state.redis.authority:",
            ),
            (
                r#"{"redis":{"cluster":"s","prefix":""}}"#,
                "state.redis.prefix:",
            ),
            (
                r#"{"redis":{"cluster":"s","timeout_ms":0}}"#,
                "state.redis.timeout_ms:",
            ),
            (r#"{"redis":{"cluster":"s","port":1}}"#, "state.redis.port:"),
            (r#"{"memcached":{}}"#, "state:"),
        ] {
            let e = compile_state(state).unwrap_err();
            assert!(e.starts_with(path), "{state}: {e}");
        }
    }
}
