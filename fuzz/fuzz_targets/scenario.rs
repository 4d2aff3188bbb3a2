//! Fuzz target: TOML scenario parsing and validation. Whatever validates must be runnable: the
//! thresholds parse or fail cleanly, and the time arithmetic of a run (connection times, the
//! arrival schedule, the end of the run, timeouts, think times) stays representable, since an
//! overflowing `Instant + Duration` panics; each step's params template renders and encodes.
#![no_main]

use std::time::{Duration, Instant};

use amf_bench::codec::Str;
use amf_bench::frame::DEFAULT_MAX_FRAME_LEN;
use amf_bench::rpc::wire::{Encoding, encode_envelope};
use amf_bench::rpc::{Envelope, Request};
use amf_bench::run::plan::{self, Arrivals};
use amf_bench::run::report;
use amf_bench::run::scenario::{Load, Scenario, Step, Think};
use amf_bench::run::template::RenderContext;
use libfuzzer_sys::fuzz_target;

/// Arrivals walked per input: enough to cross every stage boundary of a small scenario.
const ARRIVALS_CHECKED: usize = 10_000;
/// Templates rendered per input (each may ask for a megabyte of random text).
const TEMPLATES_RENDERED: usize = 8;
/// The largest multiple of its mean an exponential think time samples: -ln(f64::EPSILON).
const EXPONENTIAL_TAIL: f64 = 36.05;

/// `now + offset` must not overflow, or the run would panic where it adds them.
fn representable(now: Instant, offset: Duration, what: &str) {
    assert!(
        now.checked_add(offset).is_some(),
        "{what} of {offset:?} overflows an Instant"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scenario = match Scenario::parse(text) {
        Ok(scenario) => scenario,
        Err(error) => {
            let _ = format!("{error:#}");
            return;
        }
    };
    if let Err(error) = report::parse_thresholds(&scenario) {
        let _ = format!("{error:#}");
    }
    let start = Instant::now() + Duration::from_millis(10);
    let last_connect = plan::connect_offset(scenario.connections - 1, scenario.connect_rate);
    representable(start, last_connect, "the last connection time");
    representable(start, scenario.duration, "the run's duration");
    representable(
        start,
        scenario.timeout + Duration::from_secs(1),
        "the default timeout",
    );
    if let Load::Open { stages, spacing } = &scenario.load {
        for offset in Arrivals::new(stages, *spacing, scenario.duration).take(ARRIVALS_CHECKED) {
            assert!(
                offset < scenario.duration,
                "an arrival at {offset:?} after the end"
            );
        }
    }
    let mut context = RenderContext::new(scenario.connections as u64 - 1);
    let mut rendered = 0;
    for step in scenario.sessions.iter().flat_map(|session| &session.steps) {
        match step {
            Step::Request {
                command,
                params,
                timeout,
            } => {
                representable(start, *timeout, "a request timeout");
                if rendered < TEMPLATES_RENDERED {
                    rendered += 1;
                    let request = Envelope::Request(Request {
                        message_id: Str::new_static("1:2:3"),
                        command: command.clone(),
                        params: params.render(&mut context),
                    });
                    let _ = encode_envelope(request, Encoding::Amf3, DEFAULT_MAX_FRAME_LEN);
                }
            }
            Step::Message { params, .. } => {
                if rendered < TEMPLATES_RENDERED {
                    rendered += 1;
                    let _ = params.render(&mut context);
                }
            }
            Step::WaitMessage { timeout, .. } => representable(start, *timeout, "a wait timeout"),
            Step::Think(think) => {
                let longest = match *think {
                    Think::Fixed(duration) | Think::Uniform(_, duration) => duration,
                    Think::Exponential(mean) => {
                        Duration::try_from_secs_f64(mean.as_secs_f64() * EXPONENTIAL_TAIL)
                            .unwrap_or(Duration::MAX)
                    }
                };
                representable(start, longest, "a think time");
                let _ = think.sample();
            }
        }
    }
});
