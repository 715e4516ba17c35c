//! The calls to the fleet's state store (`state.redis`, DESIGN.md "Fleet state"): one webdis request per
//! [`Command`], dispatched from the paused request's own context (its answer comes back to that context), and
//! the answer read back. What a command is and which answers count is in [`crate::state::redis`].

use crate::state::redis::{Answer, AnswerError, Command, RedisConfig, MAX_ANSWER_BYTES};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// Most store round trips one request may make (a nonce and a rate count take two).
pub const MAX_ROUND_TRIPS: usize = 4;

/// Why the store gave no usable answer: the cause logged (never the key: it holds the request's ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The host refused the call (unknown cluster, ...).
    Dispatch,
    /// No answer: timeout, refused connection, reset.
    NoAnswer,
    /// An HTTP status other than 200.
    Status(u16),
    /// A body that is not the answer to the command.
    Body(AnswerError),
    /// More round trips than [`MAX_ROUND_TRIPS`].
    TooManyCalls,
}

impl Failure {
    /// The cause for the log line.
    pub fn cause(self) -> String {
        match self {
            Failure::Dispatch => "dispatch_failed".into(),
            Failure::NoAnswer => "no_answer (timeout, refused or reset connection)".into(),
            Failure::Status(s) => format!("status_{s}"),
            Failure::Body(e) => e.label().into(),
            Failure::TooManyCalls => "too_many_calls".into(),
        }
    }
}

/// Sends `cmd` to the store; the token of the call.
pub fn send(config: &RedisConfig, cmd: &Command) -> Result<u32, Failure> {
    let path = cmd.path();
    let headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", config.authority.as_str()),
    ];
    hostcalls::dispatch_http_call(
        &config.cluster,
        headers,
        None,
        vec![],
        Duration::from_millis(u64::from(config.timeout_ms)),
    )
    .map_err(|_| Failure::Dispatch)
}

/// Reads the answer of the call that just completed (inside `on_http_call_response`).
pub fn answer(cmd: &Command, num_headers: usize, body_size: usize) -> Result<Answer, Failure> {
    if num_headers == 0 {
        return Err(Failure::NoAnswer);
    }
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Failure::NoAnswer)?;
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if body_size > MAX_ANSWER_BYTES {
        return Err(Failure::Body(AnswerError::Unexpected));
    }
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    cmd.parse(&body).map_err(Failure::Body)
}
