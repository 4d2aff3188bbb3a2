//! AMF3's variable-length 29-bit unsigned integer (U29): 1 to 4 bytes, big-endian.

use bytes::BufMut;

use crate::codec::error::DecodeError;
use crate::codec::input::Input;

/// Largest value a U29 can hold.
pub(crate) const MAX: u32 = (1 << 29) - 1;
/// Smallest integer AMF3 can write as an integer; anything below is written as a double.
pub(crate) const INT_MIN: i32 = -(1 << 28);
/// Largest integer AMF3 can write as an integer; anything above is written as a double.
pub(crate) const INT_MAX: i32 = (1 << 28) - 1;

/// Reads a U29: three bytes of 7 bits with a continuation bit, then at most one byte of 8 bits.
/// Non-minimal encodings are valid. Inlined: it is on the path of every string and container.
#[inline]
pub(crate) fn read(input: &mut Input) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for _ in 0..3 {
        let byte = input.u8("a U29 integer")?;
        value = (value << 7) | u32::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    let last = input.u8("a U29 integer")?;
    Ok((value << 8) | u32::from(last))
}

/// Reads a U29 that holds a signed 29-bit integer.
pub(crate) fn read_signed(input: &mut Input) -> Result<i32, DecodeError> {
    let raw = read(input)?;
    // Sign-extend from 29 bits.
    Ok(((raw << 3) as i32) >> 3)
}

/// Writes `value` (at most `MAX`) in its shortest form.
#[inline]
pub(crate) fn write(out: &mut impl BufMut, value: u32) {
    debug_assert!(value <= MAX);
    match value {
        0..=0x7f => out.put_u8(value as u8),
        0x80..=0x3fff => out.put_slice(&[(value >> 7) as u8 | 0x80, value as u8 & 0x7f]),
        0x4000..=0x1f_ffff => out.put_slice(&[
            (value >> 14) as u8 | 0x80,
            (value >> 7) as u8 | 0x80,
            value as u8 & 0x7f,
        ]),
        _ => out.put_slice(&[
            (value >> 22) as u8 | 0x80,
            (value >> 15) as u8 | 0x80,
            (value >> 8) as u8 | 0x80,
            value as u8,
        ]),
    }
}

/// Writes a signed integer in [`INT_MIN`, `INT_MAX`] as a U29.
pub(crate) fn write_signed(out: &mut impl BufMut, value: i32) {
    write(out, (value as u32) & MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: u32) -> (u32, usize) {
        let mut out = Vec::new();
        write(&mut out, value);
        let len = out.len();
        let mut input = Input::new(&out);
        (read(&mut input).expect("decodes"), len)
    }

    #[test]
    fn boundaries_round_trip_in_shortest_form() {
        let cases = [
            (0, 1),
            (0x7f, 1),
            (0x80, 2),
            (0x3fff, 2),
            (0x4000, 3),
            (0x1f_ffff, 3),
            (0x20_0000, 4),
            (MAX, 4),
        ];
        for (value, len) in cases {
            assert_eq!(round_trip(value), (value, len), "U29 {value:#x}");
        }
    }

    #[test]
    fn signed_values_sign_extend() {
        for value in [INT_MIN, -1, 0, 1, INT_MAX] {
            let mut out = Vec::new();
            write_signed(&mut out, value);
            let mut input = Input::new(&out);
            assert_eq!(read_signed(&mut input).expect("decodes"), value);
        }
    }
}
