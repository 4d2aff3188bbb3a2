//! `amf-bench decode`: one AMF value, or a stream of AMF Socket frames, from a file or standard
//! input, printed as a readable tree or as canonical JSON lines.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};

use crate::cli::DecodeArgs;
use crate::codec::display::{printable, tree};
use crate::codec::json::canonical_json_text;
use crate::codec::{DecodeOptions, Format, Limits, Value, decode_with};
use crate::frame::{HEADER_LEN, parse_header, split_frame};
use crate::rpc::Envelope;
use crate::text_file::read_bytes_at_most;

/// Runs `amf-bench decode` on the console.
pub fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let mut out = BufWriter::new(io::stdout().lock());
    let problems = &mut io::stderr().lock();
    let result = if args.framed && !args.hex {
        stream_frames(args, &mut out, problems)
    } else {
        read_input(args.file.as_deref(), args.hex)
            .and_then(|input| decode_to(input, args, &mut out, problems))
    };
    out.flush().context("cannot write the output")?;
    result.map(|()| ExitCode::SUCCESS)
}

/// `--framed` binary input, read as a stream: each frame is printed once it has arrived, so a
/// live pipe shows frames as they come, and a capture of any length is held one frame at a time.
fn stream_frames(
    args: &DecodeArgs,
    out: &mut dyn Write,
    problems: &mut dyn Write,
) -> anyhow::Result<()> {
    let printer = Printer::new(args);
    match args.file.as_deref() {
        Some(path) if path != Path::new("-") => {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.display().to_string();
            printer.frames((&mut file, &name), args.max_frame, out, problems)
        }
        _ => printer.frames(
            (&mut io::stdin().lock(), "standard input"),
            args.max_frame,
            out,
            problems,
        ),
    }
}

/// Decodes `input` as `args` say, printing values to `out` and per-frame problems to `problems`.
/// Fails on an undecodable value, or, with `--framed`, when any frame failed.
pub fn decode_to(
    input: Bytes,
    args: &DecodeArgs,
    out: &mut dyn Write,
    problems: &mut dyn Write,
) -> anyhow::Result<()> {
    let printer = Printer::new(args);
    if args.framed {
        let mut bytes: &[u8] = &input;
        return printer.frames((&mut bytes, "the input"), args.max_frame, out, problems);
    }
    let format = if args.amf0 {
        Format::Amf0
    } else {
        Format::Amf3
    };
    let value = decode_with(input, format, &printer.options)
        .with_context(|| format!("cannot decode the input as {}", format_name(format)))?;
    printer.print(&value, format, out)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Amf0 => "AMF0",
        Format::Amf3 => "AMF3",
    }
}

/// The most bytes of input `decode` reads whole (one value, or hex text counted as read, before
/// decoding it): `/dev/zero` or an endless pipe must not take the machine's memory. Binary
/// `--framed` input is streamed instead, one frame at a time.
pub const MAX_INPUT: u64 = 64 << 20;

/// Reads the whole input: a file, or standard input for `-` or nothing; hex text when asked.
fn read_input(file: Option<&Path>, hex: bool) -> anyhow::Result<Bytes> {
    let raw = match file {
        Some(path) if path != Path::new("-") => std::fs::File::open(path)
            .and_then(|opened| read_bytes_at_most(opened, MAX_INPUT))
            .with_context(|| format!("cannot read {}", path.display()))?,
        _ => read_bytes_at_most(io::stdin().lock(), MAX_INPUT)
            .context("cannot read standard input")?,
    };
    if !hex {
        return Ok(Bytes::from(raw));
    }
    let bytes = from_hex(&raw).context("the input is not valid hex (whitespace is ignored)")?;
    Ok(Bytes::from(bytes))
}

/// Hex text to bytes, white space anywhere ignored; an error says where in the text (line,
/// column and byte offset) the first character that is not a hex digit is.
fn from_hex(text: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    let (mut line, mut line_start) = (1, 0);
    for (offset, &byte) in text.iter().enumerate() {
        if byte == b'\n' {
            (line, line_start) = (line + 1, offset + 1);
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        let Some(digit) = char::from(byte).to_digit(16) else {
            let shown = String::from_utf8_lossy(&text[offset..text.len().min(offset + 4)]);
            let shown = shown.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            anyhow::bail!(
                "{shown:?} at line {line}, column {} (byte offset {offset}) is not a hex digit",
                offset - line_start + 1
            );
        };
        // A hex digit is below 16.
        let digit = digit as u8;
        match high.take() {
            Some(high) => bytes.push(high << 4 | digit),
            None => high = Some(digit),
        }
    }
    if high.is_some() {
        anyhow::bail!("an odd number of hex digits: the last byte has only one");
    }
    Ok(bytes)
}

struct Printer {
    options: DecodeOptions,
    json: bool,
}

/// Bytes asked of the input per read when streaming frames.
const READ_CHUNK: usize = 64 * 1024;

/// Where a stream of frames has got to.
#[derive(Default)]
struct Progress {
    /// Stream offset of the next frame's header.
    offset: usize,
    /// Frames taken whole so far.
    count: usize,
    /// Of those, the ones that did not decode.
    failed: usize,
}

impl Printer {
    fn new(args: &DecodeArgs) -> Printer {
        Printer {
            options: DecodeOptions {
                limits: Limits {
                    max_depth: args.max_depth,
                    ..Limits::default()
                },
                ..DecodeOptions::default()
            },
            json: args.json,
        }
    }

    fn print(&self, value: &Value, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
        let text = if self.json {
            canonical_json_text(value, format, &self.options.limits)?
        } else {
            tree(value, format, &self.options.limits)?
        };
        writeln!(out, "{text}").context("cannot write the output")
    }

    /// Decodes every frame of a stream as it is read (`input` and its name for errors); a frame
    /// whose body does not decode is reported and skipped. A bad header loses the framing, so
    /// decoding stops there.
    fn frames(
        &self,
        (input, name): (&mut dyn Read, &str),
        max_frame: usize,
        out: &mut dyn Write,
        problems: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let mut buffer = BytesMut::new();
        let mut chunk = vec![0; READ_CHUNK];
        let mut progress = Progress::default();
        loop {
            self.whole_frames(&mut buffer, max_frame, &mut progress, out, problems)?;
            // What has arrived is shown before waiting for more.
            out.flush().context("cannot write the output")?;
            let read =
                read_some(input, &mut chunk).with_context(|| format!("cannot read {name}"))?;
            if read == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        if !buffer.is_empty() {
            bail!(
                "{}",
                truncated(progress.count + 1, progress.offset, &buffer, max_frame)
            );
        }
        if progress.failed > 0 {
            bail!(
                "{} of {} frames could not be decoded",
                progress.failed,
                progress.count
            );
        }
        Ok(())
    }

    /// Prints each whole frame at the front of `buffer`, leaving a partial one there.
    fn whole_frames(
        &self,
        buffer: &mut BytesMut,
        max_frame: usize,
        progress: &mut Progress,
        out: &mut dyn Write,
        problems: &mut dyn Write,
    ) -> anyhow::Result<()> {
        loop {
            let (number, offset) = (progress.count + 1, progress.offset);
            let body = match split_frame(buffer, max_frame) {
                Ok(Some(body)) => body,
                Ok(None) => return Ok(()),
                Err(error) => bail!(
                    "frame {number} at stream offset {offset}: {error}; framing is lost, stopping"
                ),
            };
            progress.count = number;
            progress.offset += HEADER_LEN + body.len();
            if let Err(error) = self.frame(number, offset, body, out) {
                // The output failing (a closed pipe, as with `| head`) ends the decoding; a
                // frame failing to decode does not.
                if error.chain().any(|cause| cause.is::<std::io::Error>()) {
                    return Err(error);
                }
                progress.failed += 1;
                writeln!(
                    problems,
                    "amf-bench: frame {number} at stream offset {offset}: {error:#}"
                )
                .context("cannot write to standard error")?;
            }
        }
    }

    fn frame(
        &self,
        number: usize,
        offset: usize,
        body: Bytes,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let len = body.len();
        let value = decode_with(body, Format::Amf3, &self.options).map_err(|error| {
            let stream_offset = offset + HEADER_LEN + error.offset;
            anyhow::anyhow!("{error} of the frame body (stream offset {stream_offset})")
        })?;
        if !self.json {
            let summary = match Envelope::from_value_within(&value, &self.options.limits) {
                Ok(envelope) => describe(&envelope),
                Err(error) => format!("not an RPC envelope: {error}"),
            };
            writeln!(
                out,
                "# frame {number} at offset {offset}, {len} bytes: {summary}"
            )
            .context("cannot write the output")?;
        }
        self.print(&value, Format::Amf3, out)
    }
}

/// One read of `input` into `chunk`, retried when a signal interrupts it; 0 at the end.
fn read_some(input: &mut dyn Read, chunk: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(chunk) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// One line about an envelope: its type, command and message id.
pub fn describe(envelope: &Envelope) -> String {
    match envelope.command() {
        Some(command) => format!(
            "{} {command:?} id {}",
            envelope.type_name(),
            printable(envelope.message_id())
        ),
        None => format!(
            "{} id {}",
            envelope.type_name(),
            printable(envelope.message_id())
        ),
    }
}

/// Why the stream ended inside a frame (`split_frame` already accepted its header, if whole).
fn truncated(number: usize, offset: usize, rest: &[u8], max_frame: usize) -> String {
    match parse_header(rest, max_frame) {
        Ok(Some(len)) => format!(
            "the stream ends inside frame {number} at offset {offset}: its header declares {len} bytes, {} are present",
            rest.len() - HEADER_LEN
        ),
        _ => format!(
            "the stream ends inside the header of frame {number} at offset {offset} ({} of {HEADER_LEN} bytes)",
            rest.len()
        ),
    }
}
