//! The AMF Socket codec over a real async byte stream: frames split across reads in any way come
//! out whole, several frames in one read come out one by one, and a hostile header is an error
//! at once rather than a wait for a gigabyte.

use std::time::Duration;

use amf_bench::codec::{self, Format, Value};
use amf_bench::frame::{AmfSocketCodec, FrameError};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_stream::StreamExt;
use tokio_util::codec::{Encoder, FramedRead};

const LIMIT: Duration = Duration::from_secs(5);

fn frames(values: &[Value]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for value in values {
        AmfSocketCodec::default()
            .encode(value, &mut out)
            .expect("encodes");
    }
    out.to_vec()
}

/// Writes `bytes` into one end of a pipe in chunks of `chunk` bytes, and reads frames at the other.
async fn read_in_chunks(
    bytes: Vec<u8>,
    chunk: usize,
    max_len: usize,
) -> Vec<Result<Value, String>> {
    let (mut writer, reader) = tokio::io::duplex(64);
    let feeder = tokio::spawn(async move {
        for piece in bytes.chunks(chunk) {
            if writer.write_all(piece).await.is_err() {
                break;
            }
        }
    });
    let mut framed = FramedRead::new(reader, AmfSocketCodec::new(max_len));
    let mut out = Vec::new();
    while let Some(item) = timeout(LIMIT, framed.next()).await.expect("no hang") {
        match item {
            Ok(body) => out.push(codec::decode(body, Format::Amf3).map_err(|e| e.to_string())),
            Err(error) => {
                out.push(Err(error.to_string()));
                break;
            }
        }
    }
    feeder.abort();
    out
}

#[tokio::test]
async fn frames_split_in_any_way_come_out_whole() {
    let values = vec![
        Value::string("first"),
        Value::array(vec![Value::Integer(1), Value::string(&"x".repeat(300))]),
        Value::Double(0.5),
    ];
    let bytes = frames(&values);
    for chunk in [1, 2, 3, 5, 7, 64, bytes.len()] {
        let decoded = read_in_chunks(bytes.clone(), chunk, 1024).await;
        let expected: Vec<Result<Value, String>> = values.iter().cloned().map(Ok).collect();
        assert_eq!(decoded, expected, "chunks of {chunk}");
    }
}

#[tokio::test]
async fn a_policy_request_is_refused_without_waiting() {
    let decoded = read_in_chunks(b"<policy-file-request/>\0".to_vec(), 23, 16 << 20).await;
    assert_eq!(decoded.len(), 1);
    let error = decoded[0].as_ref().expect_err("refused");
    assert!(
        error.starts_with("frame header declares 1014001516 bytes"),
        "{error}"
    );
}

#[test]
fn zero_length_is_an_error_not_an_empty_frame() {
    let mut buffer = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 2, 4, 1][..]);
    let result = tokio_util::codec::Decoder::decode(&mut AmfSocketCodec::default(), &mut buffer);
    assert!(matches!(result, Err(FrameError::Empty)));
}
