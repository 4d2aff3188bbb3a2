//! `amf-bench decode` as a user runs it: the binary, its output, its errors and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn amf_bench(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amf-bench"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // A command that should have refused its options but runs instead is killed, not waited
    // for: the test then fails on its exit status rather than hanging.
    let pid = child.id().to_string();
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watched.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("stdin written");
    let output = child.wait_with_output().expect("the binary finishes");
    let _ = finished.send(());
    watchdog.join().expect("the watchdog ends");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SESSION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/session.hex");

#[test]
fn the_demo_session_decodes_every_frame() {
    let output = amf_bench(&["decode", "--framed", "--hex", SESSION], b"");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("# frame"))
        .collect();
    assert_eq!(headers.len(), 8);
    assert_eq!(
        headers[0],
        "# frame 1 at offset 0, 108 bytes: rpcRequest \"echo\" id 1427767342123:123456789:987654321"
    );
    assert!(
        headers[7].contains("not an RPC envelope: rpcRequest has no \"request.messageId\" member")
    );
}

#[test]
fn json_output_is_one_canonical_line_per_frame() {
    let output = amf_bench(&["decode", "--framed", "--hex", "--json", SESSION], b"");
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[3]["response"]["result"], "pong");
    assert_eq!(lines[5]["request"]["params"]["$class"], "com.example.Move");
}

#[test]
fn binary_stdin_and_amf0() {
    let output = amf_bench(&["decode", "--json"], &[0x06, 0x07, b'a', b'b', b'c']);
    assert_eq!(text(&output.stdout), "\"abc\"\n");
    let output = amf_bench(
        &["decode", "--amf0", "--json", "-"],
        &[0x02, 0x00, 0x01, b'x'],
    );
    assert_eq!(text(&output.stdout), "\"x\"\n");
}

#[test]
fn a_bad_value_is_one_line_with_its_offset_and_exit_2() {
    let output = amf_bench(&["decode", "--hex"], b"09 05 01 04 01 14");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert_eq!(
        text(&output.stderr),
        "amf-bench: error: cannot decode the input as AMF3: invalid AMF3 type marker 0x14 at byte offset 5\n"
    );
}

#[test]
fn a_bad_frame_is_reported_and_the_next_one_still_decodes() {
    // Frame 1: an invalid marker; frame 2: the integer 7.
    let output = amf_bench(
        &["decode", "--framed", "--hex", "--json"],
        b"00000001 14\n00000002 0407\n",
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stdout), "7\n");
    assert_eq!(
        text(&output.stderr),
        "amf-bench: frame 1 at stream offset 0: invalid AMF3 type marker 0x14 at byte offset 0 of the frame body (stream offset 4)\n\
         amf-bench: error: 1 of 2 frames could not be decoded\n"
    );
}

#[test]
fn a_bad_header_stops_the_stream() {
    let policy = b"<policy-file-request/>\0";
    let output = amf_bench(&["decode", "--framed"], policy);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("frame 1 at stream offset 0: frame header declares 1014001516 bytes, above the cap of 16777216 (header bytes 3c706f6c); framing is lost"), "{stderr}");
    let output = amf_bench(&["decode", "--framed", "--hex"], b"00000002 04");
    assert!(text(&output.stderr).contains("its header declares 2 bytes, 1 are present"));
}

/// An input without end (/dev/zero given by mistake) is refused at the cap when it is read
/// whole (one value, or hex text), not read into memory until the machine runs out; streamed
/// frames stop at the first bad header.
#[test]
fn decode_reads_at_most_its_cap() {
    for args in [
        &["decode", "/dev/zero"][..],
        &["decode", "--framed", "--hex", "/dev/zero"],
    ] {
        let output = amf_bench(args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(
            text(&output.stderr),
            "amf-bench: error: cannot read /dev/zero: larger than 67108864 bytes, the most read\n",
            "{args:?}"
        );
    }
    let output = amf_bench(&["decode", "--framed", "/dev/zero"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "amf-bench: error: frame 1 at stream offset 0: frame header declares a zero-length payload; framing is lost, stopping\n"
    );
}

/// Frames from a live pipe are printed as each arrives, before the input ends.
#[test]
fn framed_input_is_decoded_as_it_arrives() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amf-bench"))
        .args(["decode", "--framed", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin");
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if lines.send(line.expect("a line of output")).is_err() {
                break;
            }
        }
    });
    // Integers 1, then 2 and the first half of the third frame's header.
    for (written, expected) in [
        (&[0u8, 0, 0, 2, 0x04, 0x01][..], "1"),
        (&[0, 0, 0, 2, 0x04, 0x02, 0, 0], "2"),
    ] {
        input.write_all(written).expect("stdin written");
        input.flush().expect("stdin flushed");
        let line = received.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            line.as_deref(),
            Ok(expected),
            "printed before the input ends"
        );
    }
    input.write_all(&[0, 2, 0x04, 0x03]).expect("stdin written");
    drop(input);
    let output = child.wait_with_output().expect("the binary finishes");
    reader.join().expect("the reader ends");
    assert_eq!(received.try_iter().collect::<Vec<_>>(), ["3"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn usage_and_input_errors_exit_2() {
    let output = amf_bench(&["decode", "--framed", "--amf0"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot be used with"));
    let output = amf_bench(&["decode", "/nonexistent/capture.bin"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).starts_with("amf-bench: error: cannot read /nonexistent/capture.bin")
    );
    let output = amf_bench(&["decode", "--hex"], b"0g");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not valid hex"));
    // Where the bad character is in the text, not among the digits.
    let output = amf_bench(&["decode", "--hex"], b"04 01\n0a zz");
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains("'z' at line 2, column 4 (byte offset 9) is not a hex digit"),
        "{error}"
    );
    let output = amf_bench(&["decode", "--hex"], b"04 0");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("odd number of hex digits"));
    // Values nested deeper could overflow a thread's stack and abort the process.
    let most = amf_bench::codec::Limits::MAX_SAFE_DEPTH;
    let deeper = (most + 1).to_string();
    let output = amf_bench(&["decode", "--max-depth", &deeper], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains(&format!("'{deeper}' is not a depth from 1 to {most}")));
    let output = amf_bench(&["decode", "--framed", "--max-frame", "0"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("'0' is not a byte count from 1 to"));
}

#[test]
fn serve_refuses_bad_options_naming_what_is_wrong() {
    let missing = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/no-such-file.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_responses = dir.path().join("bad.toml");
    std::fs::write(
        &bad_responses,
        "[commands.a]\ndelay_ms = { min = 5, max = 1 }\n",
    )
    .expect("writes");
    let bad_responses = bad_responses.to_string_lossy().into_owned();
    // Canned results the server could never send: refused at start, not at each request.
    let unsendable = dir.path().join("unsendable.toml");
    std::fs::write(
        &unsendable,
        format!(
            "[commands.deep]\nresult = [[[[[[1]]]]]]\n[commands.big]\nresult = \"{}\"\n",
            "x".repeat(3000)
        ),
    )
    .expect("writes");
    let unsendable = unsendable.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 16] = [
        (&["serve", "--allow", "example.com"], "is not DOMAIN:PORTS"),
        // A cap of 0 would refuse every frame; the header cannot declare more than 2^32 - 1.
        (
            &["serve", "--max-frame", "0"],
            "'0' is not a byte count from 1 to 4294967295",
        ),
        (
            &["serve", "--max-depth", "100000"],
            "'100000' is not a depth from 1 to",
        ),
        (
            &["serve", "--max-frame", "4294967296"],
            "'4294967296' is not a byte count from 1 to 4294967295",
        ),
        (
            &["serve", "--allow", "*:99999"],
            "'99999' is not a port list",
        ),
        (
            &["serve", "--ping-interval=-1"],
            "'-1' is not a number of seconds",
        ),
        // A ping every nanosecond would have the server do nothing else.
        (
            &["serve", "--ping-interval", "1e-9"],
            "'1e-9' is not a number of seconds from 0.01 to 31536000",
        ),
        (
            &["serve", "--ping-timeout", "0"],
            "'0' is not a number of seconds from 0.01 to 31536000 (--no-ping turns pings off)",
        ),
        // Added to the clock, such times overflowed it: a panic per connection.
        (
            &["serve", "--ping-interval", "1e19"],
            "'1e19' is not a number of seconds from 0.01 to 31536000",
        ),
        (
            &["serve", "--drain-timeout", "31536001"],
            "'31536001' is not a number of seconds from 0 to 31536000",
        ),
        // Pings that could never be sent would leave silent clients unchecked.
        (
            &["serve", "--max-frame", "100"],
            "the server's own amf_socket_ping cannot be sent with --max-frame 100: the encoded \
             frame is 143 bytes, above the cap of 100; raise --max-frame, or turn pings off with \
             --no-ping",
        ),
        (
            &["serve", "--listen", "localhost"],
            "invalid socket address",
        ),
        (
            &["serve", "--responses", missing],
            "cannot read responses file",
        ),
        (
            &["serve", "--responses", &bad_responses],
            "commands.a.delay_ms: min (5) is above max (1)",
        ),
        (
            &["serve", "--responses", &unsendable, "--max-depth", "4"],
            "commands.deep.result cannot be sent with --max-frame 16777216 and --max-depth 4: \
             cannot encode the value: nesting deeper than the limit of 4",
        ),
        (
            &["serve", "--responses", &unsendable, "--max-frame", "2000"],
            "commands.big.result cannot be sent with --max-frame 2000 and --max-depth 128: the \
             encoded frame is 3089 bytes, above the cap of 2000",
        ),
    ];
    for (args, expected) in cases {
        let output = amf_bench(args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn serve_and_proxy_refuse_an_origin_that_is_not_one() {
    let proxy = [
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9000",
    ];
    for command in [&["serve"][..], &proxy[..]] {
        let args = [command, &["--ws-origin", "127.0.0.1:8000"]].concat();
        let output = amf_bench(&args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("is not an origin"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_closed_output_pipe_ends_decoding_quietly() {
    // 20,000 frames, each the AMF3 integer 1.
    let input: Vec<u8> = [0u8, 0, 0, 2, 0x04, 0x01].repeat(20_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_amf-bench"))
        .args(["decode", "--framed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // As `| head -1` does once it has its line: the reader goes away.
    drop(child.stdout.take());
    // The decoder may stop reading as soon as it cannot write: a refused write here is fine.
    let _ = child.stdin.take().expect("stdin").write_all(&input);
    let output = child.wait_with_output().expect("the binary finishes");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn an_endless_configuration_file_is_refused_without_reading_it_all() {
    if !std::path::Path::new("/dev/zero").exists() {
        return;
    }
    for (args, expected) in [
        (
            &["run", "/dev/zero"][..],
            "cannot read scenario /dev/zero: larger than 16777216 bytes",
        ),
        (
            &["policy", "lint", "/dev/zero"][..],
            "cannot read policy file /dev/zero: larger than 65536 bytes",
        ),
        (
            &["serve", "--responses", "/dev/zero"][..],
            "cannot read responses file /dev/zero: larger than 67108864 bytes",
        ),
    ] {
        let output = amf_bench(args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn an_error_quoting_a_huge_line_is_shortened_in_the_middle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long.toml");
    std::fs::write(&path, format!("name=\"{}\" bogus\n", "x".repeat(1 << 20))).expect("writes");
    let output = amf_bench(&["run", path.to_str().expect("utf-8")], b"");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.len() < 8192, "{} bytes", stderr.len());
    assert!(stderr.contains("TOML parse error at line 1"), "{stderr}");
    assert!(stderr.contains("bytes left out"), "{stderr}");
    assert!(
        stderr.contains("expected newline"),
        "what is wrong, at the end: {stderr}"
    );
}
