//! Codec speed against the `amf` crate, measured in the same run: encode, decode and
//! encode + decode of a typed RPC request envelope (263 bytes) and of the AMF3 vector corpus, with
//! amf-bench decoding into an owned `Value` and into a borrowed `View`.
//! `scripts/bench.sh` runs this several times and reports the medians and ratios.

use std::hint::black_box;

use amf_bench::codec::{self, Limits, Str, Value, View, ViewDecoder};
use amf_bench::rpc::{Envelope, Request};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

/// The typed request a game client sends many times a second.
fn envelope() -> Value {
    let member = |name: &'static str, value: Value| (Str::new_static(name), value);
    let params = Value::typed_object(
        "com.example.game.PlayerState",
        vec![
            member("id", Value::Integer(48_213)),
            member("name", Value::string("player-48213")),
            member("x", Value::Double(152.5)),
            member("y", Value::Double(-87.25)),
            member("health", Value::Integer(87)),
            member("online", Value::Bool(true)),
            member(
                "inventory",
                Value::array(vec![
                    Value::string("sword"),
                    Value::string("shield"),
                    Value::string("potion"),
                ]),
            ),
            member("lastSeen", Value::Date(1_732_183_200_123.0)),
        ],
    );
    Envelope::Request(Request {
        message_id: Str::from("1732183200123:482913374:917263514"),
        command: Str::from("game.updatePlayer"),
        params,
    })
    .into_value()
}

/// The valid AMF3 vectors that both codecs decode (the `amf` crate rejects cycles, pre-1970 dates
/// and externalizable classes), as bytes.
fn corpus() -> Vec<Bytes> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/amf3.jsonl"
    ))
    .unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|vector| !vector["expect"].is_null())
        .filter_map(|vector| hex::decode(vector["hex"].as_str()?).ok())
        .filter(|bytes| amf::amf3::Value::read_from(&mut &bytes[..]).is_ok())
        .map(Bytes::from)
        .collect()
}

fn ours_decode(bytes: &Bytes) -> Value {
    codec::amf3::decode(bytes.clone(), codec::DecodeOptions::shared_default())
        .unwrap_or(Value::Undefined)
}

fn ours_encode(value: &Value) -> Vec<u8> {
    codec::amf3::encode(value, &Limits::default()).unwrap_or_default()
}

/// Decodes into a view with a decoder kept from input to input, as a connection keeps one.
fn view_decode(decoder: &mut ViewDecoder, bytes: &[u8]) {
    let view = decoder.decode(black_box(bytes)).unwrap_or(View::Undefined);
    black_box(&view);
}

fn theirs_decode(bytes: &[u8]) -> amf::amf3::Value {
    amf::amf3::Value::read_from(&mut &bytes[..]).unwrap_or(amf::amf3::Value::Undefined)
}

fn theirs_encode(value: &amf::amf3::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let _ = value.write_to(&mut out);
    out
}

/// Runs `work` on every input, keeping the optimizer from discarding inputs or results.
fn each<T, R>(inputs: &[T], work: impl Fn(&T) -> R) {
    for input in inputs {
        black_box(work(black_box(input)));
    }
}

/// Benchmarks one set of inputs for both codecs.
fn compare(c: &mut Criterion, group_name: &str, inputs: &[Bytes]) {
    let ours: Vec<Value> = inputs.iter().map(ours_decode).collect();
    let theirs: Vec<amf::amf3::Value> = inputs.iter().map(|bytes| theirs_decode(bytes)).collect();
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function(BenchmarkId::new("amf-bench", "decode"), |b| {
        b.iter(|| each(inputs, ours_decode))
    });
    group.bench_function(BenchmarkId::new("amf-bench", "encode"), |b| {
        b.iter(|| each(&ours, ours_encode))
    });
    group.bench_function(BenchmarkId::new("amf-bench", "encode+decode"), |b| {
        b.iter(|| each(&ours, |value| ours_decode(&Bytes::from(ours_encode(value)))))
    });
    let mut decoder = ViewDecoder::default();
    group.bench_function(BenchmarkId::new("amf-bench-view", "decode"), |b| {
        b.iter(|| {
            for bytes in inputs {
                view_decode(&mut decoder, bytes)
            }
        })
    });
    group.bench_function(BenchmarkId::new("amf-bench-view", "encode+decode"), |b| {
        b.iter(|| {
            for value in &ours {
                view_decode(&mut decoder, &ours_encode(black_box(value)))
            }
        })
    });
    group.bench_function(BenchmarkId::new("amf", "decode"), |b| {
        b.iter(|| each(inputs, |bytes| theirs_decode(bytes)))
    });
    group.bench_function(BenchmarkId::new("amf", "encode"), |b| {
        b.iter(|| each(&theirs, theirs_encode))
    });
    group.bench_function(BenchmarkId::new("amf", "encode+decode"), |b| {
        b.iter(|| each(&theirs, |value| theirs_decode(&theirs_encode(value))))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let envelope_bytes = Bytes::from(ours_encode(&envelope()));
    eprintln!(
        "envelope: {} bytes; corpus: {} vectors",
        envelope_bytes.len(),
        corpus().len()
    );
    compare(c, "envelope", &[envelope_bytes]);
    compare(c, "corpus", &corpus());
}

criterion_group! {
    name = codec_benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(50);
    targets = benches
}

/// `AMF_BENCH_PROFILE=decode|encode|encode+decode|view-decode|encode+view-decode` runs that operation on the envelope
/// `AMF_BENCH_PROFILE_COUNT` times (default 100,000) instead of the criterion benches, for
/// `scripts/callgrind-codec.sh`: instruction counts repeat exactly where timings do not.
fn profile(operation: &str) {
    let count: u64 = std::env::var("AMF_BENCH_PROFILE_COUNT")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let value = envelope();
    let bytes = Bytes::from(ours_encode(&value));
    let mut decoder = ViewDecoder::default();
    for _ in 0..count {
        match operation {
            "decode" => drop(black_box(ours_decode(black_box(&bytes)))),
            "encode" => drop(black_box(ours_encode(black_box(&value)))),
            "view-decode" => view_decode(&mut decoder, &bytes),
            "encode+view-decode" => view_decode(&mut decoder, &ours_encode(black_box(&value))),
            _ => drop(black_box(ours_decode(&Bytes::from(ours_encode(
                black_box(&value),
            ))))),
        }
    }
}

fn main() {
    match std::env::var("AMF_BENCH_PROFILE") {
        Ok(operation) => profile(&operation),
        Err(_) => {
            codec_benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
