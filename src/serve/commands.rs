//! What the server does with each request: canned results from `--responses` first, then the
//! built-in commands, then a documented "unknown command" result.
//!
//! There is no error field on the wire, so failures follow one convention: the result is an
//! object `{error: {code: String, message: String}}`.

use std::time::Duration;

use crate::codec::{Str, Value};

use super::responses::Responses;

/// The longest `sleep` (and the longest canned delay) a client can ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// The most messages one `push` may ask for.
pub const MAX_PUSH_COUNT: u64 = 100_000;

/// The built-in commands, for `--help` and the `unknown_command` result.
pub const BUILT_INS: &[&str] = &["echo", "sleep", "fail", "push", "stats", "close"];

/// What to do for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Reply now.
    Reply(Value),
    /// Reply after a delay.
    ReplyAfter(Duration, Value),
    /// Send `count` messages `interval` apart, then reply `{pushed: count}`.
    Push {
        /// Messages to send.
        count: u64,
        /// Time between messages.
        interval: Duration,
        /// The messages' command.
        command: Str,
    },
    /// Reply with the server's counters.
    Stats,
    /// Close the connection without replying.
    Close,
}

/// The failure result: `{error: {code, message}}`.
pub fn error_result(code: &str, message: &str) -> Value {
    Value::object(vec![(
        Str::new_static("error"),
        Value::object(vec![
            (Str::new_static("code"), Value::string(code)),
            (Str::new_static("message"), Value::string(message)),
        ]),
    )])
}

/// Decides what to do for a request of `command`, taking its `params` (echoed back by some).
pub fn plan(command: &str, params: Value, canned: &Responses) -> Action {
    if let Some(canned) = canned.get(command) {
        return match canned.delay() {
            Duration::ZERO => Action::Reply(canned.result.clone()),
            delay => Action::ReplyAfter(delay, canned.result.clone()),
        };
    }
    match command {
        "echo" => Action::Reply(params),
        "sleep" => match duration_param(&params, "ms", Duration::ZERO, MAX_DELAY) {
            Ok(delay) => Action::ReplyAfter(delay, params),
            Err(message) => Action::Reply(error_result("bad_params", &message)),
        },
        "fail" => {
            let message = string_param(&params, "message").unwrap_or("failure requested");
            let code = string_param(&params, "code").unwrap_or("fail");
            Action::Reply(error_result(code, message))
        }
        "push" => plan_push(&params),
        "stats" => Action::Stats,
        "close" => Action::Close,
        unknown => Action::Reply(error_result(
            "unknown_command",
            &format!(
                "unknown command '{unknown}'; built in: {}",
                BUILT_INS.join(", ")
            ),
        )),
    }
}

fn plan_push(params: &Value) -> Action {
    let count = match number_param(params, "count") {
        None => 1,
        Some(n) if n.fract() == 0.0 && (0.0..=MAX_PUSH_COUNT as f64).contains(&n) => n as u64,
        Some(n) => {
            let message =
                format!("push: count must be a whole number from 0 to {MAX_PUSH_COUNT}, not {n}");
            return Action::Reply(error_result("bad_params", &message));
        }
    };
    let interval = match duration_param(
        params,
        "interval_ms",
        Duration::ZERO,
        Duration::from_secs(60),
    ) {
        Ok(interval) => interval,
        Err(message) => return Action::Reply(error_result("bad_params", &message)),
    };
    // As long as the longest `sleep`: a request is not meant to hold its slot for days.
    if interval.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)) > MAX_DELAY {
        let message = format!(
            "push: count x interval_ms must be at most {} ms, not {count} x {}",
            MAX_DELAY.as_millis(),
            interval.as_millis()
        );
        return Action::Reply(error_result("bad_params", &message));
    }
    let command = string_param(params, "command").unwrap_or("push");
    Action::Push {
        count,
        interval,
        command: Str::from(command),
    }
}

fn member<'v>(params: &'v Value, name: &str) -> Option<&'v Value> {
    params.as_object().and_then(|object| object.get(name))
}

fn number_param(params: &Value, name: &str) -> Option<f64> {
    member(params, name).and_then(Value::as_f64)
}

fn string_param<'v>(params: &'v Value, name: &str) -> Option<&'v str> {
    member(params, name).and_then(Value::as_str)
}

/// A milliseconds parameter, `default` when absent; an error message when out of range.
fn duration_param(
    params: &Value,
    name: &str,
    default: Duration,
    max: Duration,
) -> Result<Duration, String> {
    match member(params, name) {
        None => Ok(default),
        Some(value) => value
            .as_f64()
            .filter(|ms| *ms >= 0.0 && *ms <= max.as_millis() as f64)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .ok_or_else(|| {
                format!(
                    "{name} must be a number of milliseconds from 0 to {}",
                    max.as_millis()
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Request;

    fn request(command: &str, params: Vec<(&'static str, Value)>) -> Request {
        Request {
            message_id: Str::from("1"),
            command: Str::from(command),
            params: Value::object(
                params
                    .into_iter()
                    .map(|(name, value)| (Str::new_static(name), value))
                    .collect(),
            ),
        }
    }

    fn plan_request(request: &Request, canned: &Responses) -> Action {
        plan(&request.command, request.params.clone(), canned)
    }

    fn error_code(action: &Action) -> Option<String> {
        let Action::Reply(result) = action else {
            return None;
        };
        let error = result.as_object()?.get("error")?.as_object()?;
        error.get("code")?.as_str().map(String::from)
    }

    #[test]
    fn built_ins_plan_as_documented() {
        let none = Responses::default();
        let echo = request("echo", vec![("text", Value::string("hi"))]);
        assert_eq!(
            plan_request(&echo, &none),
            Action::Reply(echo.params.clone())
        );
        let sleep = request("sleep", vec![("ms", Value::Integer(250))]);
        assert_eq!(
            plan_request(&sleep, &none),
            Action::ReplyAfter(Duration::from_millis(250), sleep.params.clone())
        );
        let push = request(
            "push",
            vec![
                ("count", Value::Integer(3)),
                ("command", Value::string("tick")),
            ],
        );
        assert_eq!(
            plan_request(&push, &none),
            Action::Push {
                count: 3,
                interval: Duration::ZERO,
                command: Str::from("tick")
            }
        );
        assert_eq!(
            error_code(&plan_request(&request("fail", vec![]), &none)).as_deref(),
            Some("fail")
        );
        assert_eq!(
            plan_request(&request("close", vec![]), &none),
            Action::Close
        );
        assert_eq!(
            plan_request(&request("stats", vec![]), &none),
            Action::Stats
        );
    }

    #[test]
    fn unknown_commands_and_bad_params_get_error_results() {
        let none = Responses::default();
        assert_eq!(
            error_code(&plan_request(&request("nope", vec![]), &none)).as_deref(),
            Some("unknown_command")
        );
        for bad in [Value::Integer(-1), Value::string("5"), Value::Double(1e12)] {
            let sleep = request("sleep", vec![("ms", bad)]);
            assert_eq!(
                error_code(&plan_request(&sleep, &none)).as_deref(),
                Some("bad_params")
            );
        }
        let days = request(
            "push",
            vec![
                ("count", Value::Integer(100_000)),
                ("interval_ms", Value::Integer(60_000)),
            ],
        );
        assert_eq!(
            error_code(&plan_request(&days, &none)).as_deref(),
            Some("bad_params")
        );
        let ten_minutes = request(
            "push",
            vec![
                ("count", Value::Integer(10_000)),
                ("interval_ms", Value::Integer(60)),
            ],
        );
        assert!(matches!(
            plan_request(&ten_minutes, &none),
            Action::Push { count: 10_000, .. }
        ));
        let push = request("push", vec![("count", Value::Double(1.5))]);
        assert_eq!(
            error_code(&plan_request(&push, &none)).as_deref(),
            Some("bad_params")
        );
    }
}
