//! Fuzz target: a frame payload to an RPC envelope, as AMF3 and as JSON. Parsing a borrowed value
//! and an owned one must agree, and so must the header read from a `View` where the payload holds
//! no object reference; an envelope must re-encode, and its encoding must decode to an
//! envelope that encodes to the same bytes (AMF3) or has the same type, id and command (JSON).
#![no_main]

use amf_bench::codec::{self, DecodeOptions, Format, ViewDecoder};
use amf_bench::frame::{DEFAULT_MAX_FRAME_LEN, HEADER_LEN};
use amf_bench::rpc::wire::{Encoding, decode_envelope, encode_envelope};
use amf_bench::rpc::{Envelope, EnvelopeHeader};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The envelope as AMF3 frame bytes: a comparison that holds for NaN payloads too.
fn frame_of(envelope: &Envelope) -> Bytes {
    encode_envelope(envelope.clone(), Encoding::Amf3, DEFAULT_MAX_FRAME_LEN)
        .unwrap_or_else(|error| panic!("a parsed envelope does not encode: {error}"))
}

fn check(envelope: &Envelope) {
    let frame = frame_of(envelope);
    let again = decode_envelope(
        frame.slice(HEADER_LEN..),
        Encoding::Amf3,
        DecodeOptions::shared_default(),
    )
    .unwrap_or_else(|error| panic!("our own envelope frame does not parse: {error}"));
    assert_eq!(frame_of(&again), frame, "an envelope changed through AMF3");
    if let Ok(json_frame) = encode_envelope(envelope.clone(), Encoding::Json, DEFAULT_MAX_FRAME_LEN)
    {
        let again = decode_envelope(
            json_frame.slice(HEADER_LEN..),
            Encoding::Json,
            DecodeOptions::shared_default(),
        )
        .unwrap_or_else(|error| panic!("our own JSON envelope does not parse: {error}"));
        assert_eq!(again.type_name(), envelope.type_name());
        assert_eq!(again.message_id(), envelope.message_id());
        assert_eq!(again.command(), envelope.command());
    }
}

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let options = DecodeOptions::shared_default();
    if let Ok(value) = codec::decode_with(payload.clone(), Format::Amf3, options) {
        let borrowed = Envelope::from_value(&value);
        let owned = Envelope::from_owned(value.clone());
        match (&borrowed, &owned) {
            (Ok(borrowed), Ok(owned)) => {
                assert_eq!(
                    frame_of(borrowed),
                    frame_of(owned),
                    "from_value and from_owned differ"
                );
                check(owned);
            }
            (Err(borrowed), Err(owned)) => assert_eq!(borrowed, owned),
            _ => panic!("from_value gave {borrowed:?} but from_owned gave {owned:?}"),
        }
        let mut decoder = ViewDecoder::new(options.clone());
        let view = decoder
            .decode(data)
            .unwrap_or_else(|error| panic!("decodes into a Value but not a View: {error}"));
        if !view.contains_reference() {
            assert_eq!(
                EnvelopeHeader::of_view(view),
                borrowed.as_ref().ok().map(Envelope::header),
                "the header read from a View differs from the envelope's"
            );
        }
    }
    for encoding in [Encoding::Amf3, Encoding::Json] {
        match decode_envelope(payload.clone(), encoding, options) {
            Ok(envelope) => check(&envelope),
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
});
