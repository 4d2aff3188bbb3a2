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
        "fail" => match (
            string_param(&params, "message"),
            string_param(&params, "code"),
        ) {
            (Ok(message), Ok(code)) => Action::Reply(error_result(
                code.unwrap_or("fail"),
                message.unwrap_or("failure requested"),
            )),
            (Err(error), _) | (_, Err(error)) => {
                Action::Reply(error_result("bad_params", &format!("fail: {error}")))
            }
        },
        "push" => plan_push(&params)
            .unwrap_or_else(|error| Action::Reply(error_result("bad_params", &error))),
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

fn plan_push(params: &Value) -> Result<Action, String> {
    let whole_count = |value: &Value| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (0.0..=MAX_PUSH_COUNT as f64).contains(n))
            .map(|n| n as u64)
    };
    let count = typed_param(params, "count", whole_count)
        .map_err(|name| format!("push: {name} must be a whole number from 0 to {MAX_PUSH_COUNT}"))?
        .unwrap_or(1);
    let interval = duration_param(
        params,
        "interval_ms",
        Duration::ZERO,
        Duration::from_secs(60),
    )
    .map_err(|error| format!("push: {error}"))?;
    // As long as the longest `sleep`: a request is not meant to hold its slot for days.
    if interval.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)) > MAX_DELAY {
        return Err(format!(
            "push: count x interval_ms must be at most {} ms, not {count} x {}",
            MAX_DELAY.as_millis(),
            interval.as_millis()
        ));
    }
    let command = string_param(params, "command").map_err(|error| format!("push: {error}"))?;
    Ok(Action::Push {
        count,
        interval,
        command: Str::from(command.unwrap_or("push")),
    })
}

/// A parameter; `null` and `undefined` count as absent, as an ActionScript caller leaves an
/// optional member.
fn member<'v>(params: &'v Value, name: &str) -> Option<&'v Value> {
    params
        .as_object()
        .and_then(|object| object.get(name))
        .filter(|value| !matches!(value, Value::Null | Value::Undefined))
}

/// A parameter that `read` accepts, `None` when absent; `Err(name)` when present but not accepted
/// (a wrong type is refused, not taken for the default).
fn typed_param<'v, T>(
    params: &'v Value,
    name: &'static str,
    read: impl Fn(&'v Value) -> Option<T>,
) -> Result<Option<T>, &'static str> {
    member(params, name)
        .map(read)
        .map_or(Ok(None), |read| read.map(Some).ok_or(name))
}

/// A string parameter, `None` when absent; an error message when it is not a string.
fn string_param<'v>(params: &'v Value, name: &'static str) -> Result<Option<&'v str>, String> {
    typed_param(params, name, Value::as_str).map_err(|name| format!("{name} must be a string"))
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
        for (name, wrong) in [
            ("count", Value::string("5")),
            ("count", Value::Bool(true)),
            ("count", Value::Double(1e300)),
            ("command", Value::Integer(5)),
        ] {
            let push = request("push", vec![(name, wrong.clone())]);
            let planned = plan_request(&push, &none);
            assert_eq!(
                error_code(&planned).as_deref(),
                Some("bad_params"),
                "{wrong:?}"
            );
            let Action::Reply(result) = planned else {
                unreachable!()
            };
            assert!(
                format!("{result:?}").len() < 300,
                "a short message: {result:?}"
            );
        }
        let fail = request("fail", vec![("code", Value::Integer(5))]);
        assert_eq!(
            error_code(&plan_request(&fail, &none)).as_deref(),
            Some("bad_params")
        );
        let push = request("push", vec![("count", Value::Double(1.5))]);
        assert_eq!(
            error_code(&plan_request(&push, &none)).as_deref(),
            Some("bad_params")
        );
    }
}
