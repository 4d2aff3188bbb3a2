//! `amf-bench serve` on the console: options to configuration, the runtime, the listening line on
//! standard output (so scripts can read the port), and the counters on shutdown.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::{PolicySource, Responses, ServeConfig, Server};
use crate::cli::ServeArgs;
use crate::codec::{DecodeOptions, Limits, Str, Value};
use crate::open_files;
use crate::policy;
use crate::rpc::envelope::new_message_id;
use crate::rpc::wire::encode_envelope_within;
use crate::rpc::{Envelope, PING_COMMAND, PeerConfig, PingConfig, Request, Response};

/// What pings are answered with: `null`, as the Ruby server, or a canned `amf_socket_ping`'s
/// result. The connection answers pings itself, at once, so a canned ping cannot be delayed.
fn ping_reply(responses: &Responses) -> anyhow::Result<Value> {
    let Some(canned) = responses.get(PING_COMMAND) else {
        return Ok(Value::Null);
    };
    if !canned.max_delay.is_zero() {
        bail!(
            "commands.{PING_COMMAND}.delay_ms: pings are answered at once by the connection, so \
             their result may be canned but not delayed"
        );
    }
    Ok(canned.result.clone())
}

/// Refuses canned results the connection could never send (deeper than `--max-depth`, or over
/// `--max-frame` once in a reply), so that they fail at start, not as `reply_not_sent` at each
/// request.
fn check_canned_results(responses: &Responses, peer: &PeerConfig) -> anyhow::Result<()> {
    // A message id of the usual form and length; a client's own may be longer.
    const USUAL_MESSAGE_ID: &str = "1427767342123:123456789:987654321";
    for (command, canned) in responses.iter() {
        let reply = Envelope::Response(Response {
            message_id: Str::from(USUAL_MESSAGE_ID),
            result: canned.result.clone(),
        });
        encode_envelope_within(
            reply,
            peer.encoding,
            peer.max_frame_len,
            &peer.decode.limits,
        )
        // Worded here: the error's own text already holds its source's.
        .map_err(|error| {
            anyhow::anyhow!(
                "commands.{command}.result cannot be sent with --max-frame {} and --max-depth {}: \
                 {error}",
                peer.max_frame_len,
                peer.decode.limits.max_depth
            )
        })?;
    }
    Ok(())
}

/// Refuses a frame cap too small for the server's own pings: they could never be sent, so no
/// connection would ever be checked for `--ping-timeout`.
fn check_ping_fits(peer: &PeerConfig) -> anyhow::Result<()> {
    if peer.ping.is_none() {
        return Ok(());
    }
    let ping = Envelope::Request(Request::ping(new_message_id(), 0.5, 0.5));
    encode_envelope_within(ping, peer.encoding, peer.max_frame_len, &peer.decode.limits).map_err(
        |error| {
            anyhow::anyhow!(
                "the server's own amf_socket_ping cannot be sent with --max-frame {}: {error}; \
                 raise --max-frame, or turn pings off with --no-ping",
                peer.max_frame_len
            )
        },
    )?;
    Ok(())
}

/// Builds the server's configuration from the command line, reading the files it names.
pub fn config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let responses = match &args.responses {
        Some(path) => Responses::load(path)?,
        None => Responses::default(),
    };
    let ping_reply = ping_reply(&responses)?;
    let policy = if args.no_policy {
        PolicySource::Off
    } else if let Some(path) = &args.policy {
        PolicySource::File {
            path: path.clone(),
            text: policy::command::read_checked_policy(path, args.listen.port())?.into(),
        }
    } else {
        PolicySource::Allow(args.allow.clone())
    };
    let ping = (!args.no_ping).then_some(PingConfig {
        interval: args.ping_interval,
        timeout: args.ping_timeout,
    });
    let peer = PeerConfig {
        encoding: args.encoding,
        max_frame_len: args.max_frame,
        decode: Arc::new(DecodeOptions {
            limits: Limits {
                max_depth: args.max_depth,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        }),
        ping,
        ping_reply,
        ..PeerConfig::default()
    };
    check_ping_fits(&peer)?;
    if let Some(path) = &args.responses {
        check_canned_results(&responses, &peer)
            .with_context(|| format!("in responses file {}", path.display()))?;
    }
    Ok(ServeConfig {
        listen: args.listen,
        max_connections: open_files::max_connections(args.max_connections, 1),
        max_in_flight: args.max_in_flight as usize,
        peer,
        policy,
        responses: Arc::new(responses),
        drain_timeout: args.drain_timeout,
        ws_listen: args.websocket.ws_listen,
        ws_on_tcp: args.websocket.ws_on_tcp,
        websocket: args.websocket.config(args.max_frame)?,
    })
}

/// Runs the server until Ctrl-C or SIGTERM, then prints its counters.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let config = config(args)?;
    crate::listener::runtime(args.threads)?.block_on(async {
        let server = Server::bind(config).await?;
        let shutdown = crate::shutdown::on_signal(crate::shutdown::Hangup::Stops);
        crate::listener::announce(server.local_addr()?)?;
        if let Some(addr) = server.ws_local_addr()? {
            crate::listener::announce_websocket(addr)?;
        }
        open_files::explain_bound(args.max_connections, 1);
        let snapshot = server.run(shutdown).await;
        write!(std::io::stdout().lock(), "{}", snapshot.to_text())?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canned_ping_sets_the_ping_reply_and_cannot_be_delayed() {
        let none = Responses::parse("").expect("valid");
        assert_eq!(ping_reply(&none).expect("no canned ping"), Value::Null);
        let pong =
            Responses::parse("[commands.amf_socket_ping]\nresult = \"pong\"\n").expect("valid");
        assert_eq!(ping_reply(&pong).expect("canned"), Value::string("pong"));
        let late = Responses::parse("[commands.amf_socket_ping]\ndelay_ms = 5\n").expect("valid");
        let error = ping_reply(&late).expect_err("delayed");
        assert!(
            error
                .to_string()
                .starts_with("commands.amf_socket_ping.delay_ms: "),
            "{error}"
        );
    }
}
